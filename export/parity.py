"""The parity gate: every artifact must reproduce the Keras generator before anything is published.

Backends compared with the Keras generator on fresh random inputs at several batch sizes:
- `tfserving_session`: the SavedModel loaded the way TF Serving loads it (`serve` tag, the
  `serving_default` signature_def, run through a session by tensor name);
- `saved_model_load`: `tf.saved_model.load(...).signatures["serving_default"]`;
- `onnxruntime`: the ONNX model on the CPU provider.
Also, each backend's batch-1 outputs must equal the same rows computed inside a batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from export import PARITY_TOLERANCE
from export.savedmodel import example_inputs
from export.signature import OUTPUT_NAME, SIGNATURE_NAME, GeneratorSpec

BATCH_SIZES = (1, 7, 64)
TOLERANCE = PARITY_TOLERANCE  # the name the exporter and the tests use


class TFServingSession:
    """TF Serving's path: a v1 session over the `serve` meta-graph, fed and fetched by tensor name."""

    def __init__(self, version_dir: Path):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        logger, level = tf.get_logger(), tf.get_logger().level
        logger.setLevel("ERROR")  # the v1 loader is deprecated for users, but it is what TF Serving runs
        try:
            with self.graph.as_default():
                meta_graph = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(version_dir))
        finally:
            logger.setLevel(level)
        self.signature = meta_graph.signature_def[SIGNATURE_NAME]

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {self.signature.inputs[name].name: value for name, value in inputs.items()}
        return self.session.run(self.signature.outputs[OUTPUT_NAME].name, feed_dict=feeds)

    def close(self):
        self.session.close()


class SavedModelLoad:
    def __init__(self, version_dir: Path):
        self.loaded = tf.saved_model.load(str(version_dir))
        self.fn = self.loaded.signatures[SIGNATURE_NAME]

    def __call__(self, inputs):
        return self.fn(**{k: tf.constant(v) for k, v in inputs.items()})[OUTPUT_NAME].numpy()

    def close(self):
        pass


class OnnxRuntime:
    def __init__(self, onnx_path: Path):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    def __call__(self, inputs):
        return self.session.run([OUTPUT_NAME], inputs)[0]

    def close(self):
        pass


@dataclass
class ParityReport:
    tolerance: float
    max_abs_diff: dict[str, dict[str, float]] = field(default_factory=dict)  # backend -> batch -> diff
    batch_consistency: dict[str, float] = field(default_factory=dict)  # backend -> diff
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def check_parity(generator: keras.Model, spec: GeneratorSpec, version_dir: Path, onnx_path: Path,
                 batch_sizes=BATCH_SIZES, tolerance: float = TOLERANCE, seed: int = 1234) -> ParityReport:
    def keras_backend(inputs):
        args = [inputs["z"], inputs["label"]] if spec.num_classes else inputs["z"]
        return keras.ops.convert_to_numpy(generator(args, training=False))

    backends = {"keras": keras_backend, "tfserving_session": TFServingSession(version_dir),
                "saved_model_load": SavedModelLoad(version_dir), "onnxruntime": OnnxRuntime(onnx_path)}
    report = ParityReport(tolerance)
    try:
        for i, batch_size in enumerate(batch_sizes):
            inputs = example_inputs(spec, batch_size, seed + i)
            reference = keras_backend(inputs)
            for name, backend in backends.items():
                if name == "keras":
                    continue
                out = backend(inputs)
                if out.shape != reference.shape or out.dtype != np.float32:
                    report.failures.append(f"{name} returned {out.dtype}{list(out.shape)} for batch {batch_size}, "
                                           f"expected float32{list(reference.shape)}")
                    continue
                diff = float(np.max(np.abs(out - reference)))
                report.max_abs_diff.setdefault(name, {})[str(batch_size)] = diff
                if not diff <= tolerance:
                    report.failures.append(f"{name} differs from Keras by {diff:.3g} at batch {batch_size} "
                                           f"(tolerance {tolerance:g})")
        inputs = example_inputs(spec, 7, seed + 100)
        for name, backend in backends.items():
            batched = backend(inputs)
            rows = np.concatenate([backend({k: v[j : j + 1] for k, v in inputs.items()}) for j in range(7)])
            diff = float(np.max(np.abs(rows - batched)))
            report.batch_consistency[name] = diff
            if not diff <= tolerance:
                report.failures.append(f"{name}: batch-1 outputs differ from the same rows in a batch by {diff:.3g}")
    finally:
        for backend in backends.values():
            getattr(backend, "close", lambda: None)()
    return report
