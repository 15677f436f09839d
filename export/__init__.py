"""Export a trained generator as a TF Serving SavedModel and an ONNX model, checked for parity."""


class ExportError(ValueError):
    """Bad export input (missing or corrupt generator, bad paths, taken version): exit code 2."""


class ParityError(RuntimeError):
    """The exported artifacts do not reproduce the Keras generator: exit code 1, nothing published."""
