"""Export a trained generator as a TF Serving SavedModel and an ONNX model, checked for parity."""

# Max |difference| allowed between each exported artifact and the Keras generator, on images in [-1, 1].
PARITY_TOLERANCE = 1e-4


class ExportError(ValueError):
    """Bad export input (missing or corrupt generator, bad paths, taken version): exit code 2."""


class ParityError(RuntimeError):
    """The exported artifacts do not reproduce the Keras generator: exit code 1, nothing published."""
