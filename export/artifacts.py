"""Load any exported artifact behind one call: `sample(z, labels)` -> images in [-1, 1].

An `.onnx` file needs only onnxruntime (no TensorFlow is imported on that path, so `export.generate`
on an ONNX model starts fast and runs where TensorFlow is not installed); a `.keras` file, a
SavedModel version directory or a TF Serving base path import TensorFlow when they are loaded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.quiet import quiet_tensorflow
from export import ExportError


class ArtifactError(ExportError):
    """The path is not an artifact this project exports (exit code 2 in the CLIs)."""


@dataclass(frozen=True)
class Sampler:
    sample: Callable
    latent_dim: int
    num_classes: int | None
    image_shape: tuple[int, ...]

    @property
    def conditional(self) -> bool:
        return bool(self.num_classes)


def load_sampler(model: str | Path) -> Sampler:
    """A .onnx file, a .keras file, a SavedModel version directory or a TF Serving base path."""
    path = Path(model)
    if not path.exists():
        raise ArtifactError(f"--model {path} does not exist.")
    if path.suffix == ".onnx":
        return _onnx(path)
    if path.suffix == ".keras":
        return _keras(path)
    if not (path / "saved_model.pb").is_file():
        versions = sorted(int(p.name) for p in path.iterdir() if p.name.isdigit()) if path.is_dir() else []
        if not versions:
            raise ArtifactError(f"--model {path} is not a .onnx, .keras, SavedModel or TF Serving base path.")
        path = path / str(versions[-1])
    return _savedmodel(path)


def _onnx(path: Path) -> Sampler:
    from serving.engine.onnx_generator import OnnxGenerator

    generator = OnnxGenerator(path)
    info = generator.info

    def sample(z, labels):
        return generator.run({"z": z, **({"label": labels} if labels is not None else {})})
    return Sampler(sample, info.latent_dim, info.num_classes, info.image_shape)


def _keras(path: Path) -> Sampler:
    quiet_tensorflow()
    import keras

    import training.models  # noqa: F401  (registers the custom layers load_model needs)
    from training.models import class_count

    generator = keras.models.load_model(path, compile=False)

    def sample(z, labels):
        inputs = [z, labels] if labels is not None else z
        return keras.ops.convert_to_numpy(generator(inputs, training=False))
    return Sampler(sample, int(generator.inputs[0].shape[-1]), class_count(generator),
                   tuple(generator.outputs[0].shape[1:]))


def _savedmodel(path: Path) -> Sampler:
    quiet_tensorflow()
    import tensorflow as tf

    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    card = path / "assets.extra" / "model_card.json"
    num_classes = json.loads(card.read_text()).get("num_classes") if card.is_file() else None
    if "label" in specs and not num_classes:
        raise ArtifactError(f"{path} is class-conditional but has no assets.extra/model_card.json to give its classes.")

    def sample(z, labels):
        inputs = {"z": tf.constant(z), **({"label": tf.constant(labels)} if labels is not None else {})}
        return fn(**inputs)["images"].numpy()
    return Sampler(sample, int(specs["z"].shape[1]), num_classes if "label" in specs else None,
                   tuple(fn.structured_outputs["images"].shape[1:]))
