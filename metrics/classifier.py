"""The domain classifier whose features FID and KID are measured in, scored with onnxruntime.

Inception-v3 never saw 28x28 digits and its weights cannot be downloaded everywhere, so the project
trains a small CNN on the real data (on its labels; on predicting which of 4 rotations was applied
when it has none) once per dataset, converts it to ONNX and caches both under `GAN_SERVE_CACHE`
(default `~/.cache/gan-serve`), keyed by the data's hash, the recipe and the dtype (always float32:
a classifier trained under a mixed-precision policy would give other features). Scoring runs the
cached ONNX file with onnxruntime, so it imports no TensorFlow; Keras is imported (by
`metrics.classifier_net`) only to train a classifier that is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from common.quiet import quiet_tensorflow

RECIPE_VERSION = 2
DTYPE = "float32"


@dataclass(frozen=True)
class Recipe:
    """How the classifier is trained; part of its cache key. 90% of the data trains, 10% measures."""

    epochs: int = 30
    batch_size: int = 64
    width: int = 16
    learning_rate: float = 3e-3
    seed: int = 0


def cache_dir() -> Path:
    root = os.environ.get("GAN_SERVE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gan-serve"
    return Path(root) / "classifiers"


def to_unit_range(images_uint8: np.ndarray) -> np.ndarray:
    return images_uint8.astype(np.float32) / 127.5 - 1.0


class DomainClassifier:
    """The cached ONNX classifier: `features` (the 128-d penultimate layer) and class `probabilities`
    of images in [-1, 1], with the held-out accuracy it was measured at."""

    def __init__(self, onnx_path: Path, meta: dict):
        import onnxruntime as ort

        self.path, self.meta = onnx_path, meta
        self.task, self.num_classes, self.accuracy = meta["task"], meta["num_classes"], meta["held_out_accuracy"]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # shared CPUs: no busy-waiting
        self._session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def _run(self, images: np.ndarray, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        features, logits = [], []
        for i in range(0, len(images), batch_size):
            f, l = self._session.run(["features", "logits"], {"images": np.asarray(images[i : i + batch_size], np.float32)})
            features.append(f)
            logits.append(l)
        return np.concatenate(features), np.concatenate(logits)

    def features(self, images: np.ndarray) -> np.ndarray:
        return self._run(images)[0]

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return softmax(self._run(images)[1])

    def features_and_probabilities(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features, logits = self._run(images)
        return features, softmax(logits)

    def describe(self) -> dict:
        return {"task": self.task, "num_classes": self.num_classes, "held_out_accuracy": self.accuracy,
                "dtype": DTYPE, "num_images": self.meta.get("num_images")}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def cache_key(images_uint8: np.ndarray, labels: np.ndarray | None, recipe: Recipe) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(images_uint8).tobytes())
    digest.update(b"" if labels is None else np.asarray(labels, np.int64).tobytes())
    digest.update(json.dumps({"recipe": asdict(recipe), "version": RECIPE_VERSION, "dtype": DTYPE,
                              "shape": list(images_uint8.shape), "labelled": labels is not None}).encode())
    return digest.hexdigest()[:24]


def get_classifier(images_uint8: np.ndarray, labels: np.ndarray | None, recipe: Recipe = Recipe(),
                   verbose: int = 0) -> DomainClassifier:
    """The cached classifier for this data, or train, convert and cache it first (needs Keras)."""
    key = cache_key(images_uint8, labels, recipe)
    onnx_path, meta_path = cache_dir() / f"{key}.onnx", cache_dir() / f"{key}.json"
    if not (onnx_path.is_file() and meta_path.is_file()):
        quiet_tensorflow()
        from metrics.classifier_net import train_and_convert

        print(f"training the domain classifier on {len(images_uint8)} images (once; cached in {cache_dir()})", flush=True)
        train_and_convert(images_uint8, labels, recipe, onnx_path, meta_path, verbose)
    return DomainClassifier(onnx_path, json.loads(meta_path.read_text()))
