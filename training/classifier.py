"""The domain classifier whose features FID and KID are measured in.

Inception-v3 features are the standard, but its weights cannot be downloaded everywhere and it was
never trained on 28x28 digits. So the project trains a small CNN on the real data itself: on the
class labels when the data has them, else on predicting which of 4 rotations was applied (a
self-supervised task that still needs the features to understand the images). It is trained once
per dataset, cached by the data's hash, and reported with its held-out accuracy.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

ARCHITECTURE_VERSION = 1
FEATURE_LAYER = "features"


def cache_dir() -> Path:
    root = os.environ.get("GAN_SERVE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gan-serve"
    return Path(root) / "classifiers"


def build_classifier(image_size: int, channels: int, num_classes: int, width: int = 32) -> keras.Model:
    images = keras.Input((image_size, image_size, channels), name="images")
    x = images
    for filters in (width, 2 * width, 4 * width):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    features = layers.Dense(128, activation="relu", name=FEATURE_LAYER)(x)
    logits = layers.Dense(num_classes, name="logits")(layers.Dropout(0.3)(features))
    return keras.Model(images, logits, name="domain_classifier")


@dataclass
class DomainClassifier:
    model: keras.Model
    task: str  # "classes" or "rotation"
    num_classes: int
    accuracy: float

    def __post_init__(self):
        self._features = keras.Model(self.model.input, self.model.get_layer(FEATURE_LAYER).output)

    def features(self, images: np.ndarray) -> np.ndarray:
        """Images in [-1, 1] -> 128-d features."""
        return _batched(self._features, images)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (only meaningful for task == "classes")."""
        return keras.ops.convert_to_numpy(keras.ops.softmax(_batched(self.model, images)))

    def describe(self) -> dict:
        return {"task": self.task, "num_classes": self.num_classes, "held_out_accuracy": self.accuracy}


def _batched(model: keras.Model, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    return np.concatenate([keras.ops.convert_to_numpy(model(images[i : i + batch_size], training=False))
                           for i in range(0, len(images), batch_size)])


def to_unit_range(images_uint8: np.ndarray) -> np.ndarray:
    return images_uint8.astype(np.float32) / 127.5 - 1.0


def _rotation_task(images: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    turns = rng.integers(0, 4, size=len(images))
    return np.stack([np.rot90(im, k) for im, k in zip(images, turns)]), turns.astype(np.int32)


def get_classifier(images_uint8: np.ndarray, labels: np.ndarray | None, epochs: int = 6, seed: int = 0,
                   verbose: int = 0) -> DomainClassifier:
    """Load the cached classifier for this data, or train it (90/10 split) and cache it."""
    task = "classes" if labels is not None else "rotation"
    digest = hashlib.sha256(images_uint8.tobytes())
    digest.update(b"" if labels is None else np.asarray(labels, np.int64).tobytes())
    digest.update(f"{task}-{epochs}-{seed}-{ARCHITECTURE_VERSION}-{images_uint8.shape}".encode())
    key = digest.hexdigest()[:24]
    path, meta_path = cache_dir() / f"{key}.keras", cache_dir() / f"{key}.json"
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return DomainClassifier(keras.models.load_model(path), meta["task"], meta["num_classes"], meta["held_out_accuracy"])

    images = to_unit_range(images_uint8)
    targets = np.asarray(labels, np.int32) if labels is not None else None
    if targets is None:
        images, targets = _rotation_task(images, seed)
    num_classes = int(targets.max()) + 1
    order = np.random.default_rng(seed).permutation(len(images))
    split = max(1, len(images) // 10)
    val, fit = order[:split], order[split:]
    keras.utils.set_random_seed(seed)
    model = build_classifier(images.shape[1], images.shape[-1], num_classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images[fit], targets[fit], batch_size=64, epochs=epochs, verbose=verbose, shuffle=True)
    accuracy = float(model.evaluate(images[val], targets[val], verbose=0, return_dict=True)["accuracy"])

    from common.atomic import atomic_path, write_json_atomic

    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
    write_json_atomic(meta_path, {"task": task, "num_classes": num_classes, "held_out_accuracy": accuracy,
                                  "num_images": len(images_uint8), "epochs": epochs})
    return DomainClassifier(model, task, num_classes, accuracy)
