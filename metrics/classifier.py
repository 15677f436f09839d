"""The domain classifier whose features FID and KID are measured in, scored with onnxruntime.

Inception-v3 never saw 28x28 digits and its weights cannot be downloaded everywhere, so the project
trains a small CNN on the real data (on its labels; on predicting which of 4 rotations was applied
when it has none) once per dataset, converts it to ONNX and caches both under `GAN_SERVE_CACHE`
(default `~/.cache/gan-serve`), keyed by the data's hash, the recipe and the dtype (always float32:
a classifier trained under a mixed-precision policy would give other features). Scoring runs the
cached ONNX file with onnxruntime, so it imports no TensorFlow; Keras and TensorFlow are imported
(inside the training functions below) only to train a classifier that is missing.

Training is float32 whatever the global dtype policy, and every random choice (weights, dropout,
augmentation, data order) comes from the recipe's own seed: training a classifier never touches the
global random state, so a run that trains one and a resumed run that finds it cached see the same
random numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from common.atomic import locked
from common.quiet import quiet_tensorflow

RECIPE_VERSION = 2
DTYPE = "float32"
# Classifiers the package ships, named by their cache key: the mnist-sample one, which every FID in
# the docs and BENCHMARKS.md is measured in. Shipping it means every machine scores in the same
# features (one trained on another CPU differs in rounding) and no first evaluation spends ~2 minutes
# training it. `python -m metrics.classifier --ship` retrains it; a test says when it is stale.
SHIPPED_DIR = Path(__file__).with_name("classifiers")


@dataclass(frozen=True)
class Recipe:
    """How the classifier is trained; part of its cache key. 90% of the data trains, 10% measures.

    `arch` "vgg" is the small digit CNN; "resnet" a ResNet-9-style net (two residual stages) with
    flips and shifts for photos (a bigger net than digits need; the digit CNN was not tried on photos)."""

    epochs: int = 30
    batch_size: int = 64
    width: int = 16
    learning_rate: float = 3e-3
    seed: int = 0
    arch: str = "vgg"


# Colour photos (3 channels, 32 px and up): ResNet-9 at a quarter of its width, 16 epochs. 51 s an
# epoch on the project's 2-core EPYC with AVX-512; its CIFAR-10 test accuracy is in its shipped .json.
PHOTO_RECIPE = Recipe(epochs=16, batch_size=256, width=16, learning_rate=3e-3, arch="resnet")


def recipe_for(images_uint8: np.ndarray) -> Recipe:
    """The recipe for this data's shape: the photo one for colour images of 32 px or more."""
    shape = np.shape(images_uint8)
    return PHOTO_RECIPE if shape[-1] == 3 and min(shape[1:3]) >= 32 else Recipe()


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
    fields = asdict(recipe)
    if fields["arch"] == "vgg":  # keys of recipes from before `arch` existed stay as they were
        del fields["arch"]
    digest.update(json.dumps({"recipe": fields, "version": RECIPE_VERSION, "dtype": DTYPE,
                              "shape": list(images_uint8.shape), "labelled": labels is not None}).encode())
    return digest.hexdigest()[:24]


def get_classifier(images_uint8: np.ndarray, labels: np.ndarray | None, recipe: Recipe | None = None,
                   verbose: int = 0) -> DomainClassifier:
    """The cached classifier for this data, or train, convert and cache it first (needs Keras).
    `recipe` defaults to the one for the data's shape (`recipe_for`).

    Checked, trained, written and opened under one lock per key: two runs on the same data train it
    once, and the `.onnx` and its `.json` always come from the same process.
    """
    recipe = recipe or recipe_for(images_uint8)
    key = cache_key(images_uint8, labels, recipe)
    shipped = shipped_classifier(key)
    if shipped is not None:
        return shipped
    onnx_path, meta_path = cache_dir() / f"{key}.onnx", cache_dir() / f"{key}.json"
    with locked(cache_dir() / f".{key}.lock"):
        if not (onnx_path.is_file() and meta_path.is_file()):
            quiet_tensorflow()
            print(f"training the domain classifier on {len(images_uint8)} images (once; cached in {cache_dir()})",
                  flush=True)
            train_and_convert(images_uint8, labels, recipe, onnx_path, meta_path, verbose)
        return DomainClassifier(onnx_path, json.loads(meta_path.read_text()))


def shipped_classifier(key: str) -> DomainClassifier | None:
    """The classifier the package ships for this cache key, if any."""
    onnx_path, meta_path = SHIPPED_DIR / f"{key}.onnx", SHIPPED_DIR / f"{key}.json"
    if not (onnx_path.is_file() and meta_path.is_file()):
        return None
    return DomainClassifier(onnx_path, json.loads(meta_path.read_text()))


# -- training a missing classifier (Keras and TensorFlow, imported here only) -----------------------


def build_classifier(image_size: int, channels: int, num_classes: int, width: int, seed: int, arch: str = "vgg"):
    """A small CNN (`arch` vgg: three stages of 3x3 convolutions; resnet: ResNet-9's plan), then the
    128-d `features` layer and the class logits."""
    import keras
    from keras import layers

    seeds = iter(range(seed * 1000, seed * 1000 + 1000))
    init = lambda: keras.initializers.HeNormal(seed=next(seeds))  # noqa: E731

    def conv_bn_relu(x, filters, name, pool=False):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=init(), dtype=DTYPE,
                          name=f"clf_conv{name}")(x)
        if pool:
            x = layers.MaxPooling2D(dtype=DTYPE, name=f"clf_pool{name}")(x)
        x = layers.BatchNormalization(momentum=0.9, dtype=DTYPE, name=f"clf_bn{name}")(x)
        return layers.ReLU(dtype=DTYPE, name=f"clf_relu{name}")(x)

    images = keras.Input((image_size, image_size, channels), name="images", dtype=DTYPE)
    x = images
    if arch == "resnet":  # prep, (conv-pool + residual pair), conv-pool, (conv-pool + residual pair)
        x = conv_bn_relu(x, width, "0")
        for stage, (filters, residual) in enumerate(((2 * width, True), (4 * width, False), (8 * width, True)), 1):
            x = conv_bn_relu(x, filters, f"{stage}0", pool=True)
            if residual:
                branch = conv_bn_relu(conv_bn_relu(x, filters, f"{stage}1"), filters, f"{stage}2")
                x = layers.Add(dtype=DTYPE, name=f"clf_add{stage}")([x, branch])
        x = layers.GlobalMaxPooling2D(dtype=DTYPE, name="clf_gmp")(x)
    else:
        for stage, filters in enumerate((width, 2 * width, 4 * width)):
            for j in range(2 if stage < 2 else 1):
                x = conv_bn_relu(x, filters, f"{stage}{j}")
            if stage < 2:
                x = layers.MaxPooling2D(dtype=DTYPE, name=f"clf_pool{stage}")(x)
        x = layers.GlobalAveragePooling2D(dtype=DTYPE, name="clf_gap")(x)
    features = layers.Dense(128, activation="relu", kernel_initializer=init(), dtype=DTYPE, name="features")(x)
    dropped = layers.Dropout(0.3, seed=next(seeds), dtype=DTYPE, name="clf_dropout")(features)
    logits = layers.Dense(num_classes, kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
                          dtype=DTYPE, name="logits")(dropped)
    return keras.Model(images, {"features": features, "logits": logits}, name="domain_classifier")


def augmentation(seed: int, rotate: bool, photos: bool = False):
    """One affine warp per image: small rotations (labelled data only), zooms and shifts; for
    `photos`, whole-pixel shifts of up to 4 px with reflected borders and, for labelled data only,
    left-right flips instead (a flip would make the rotation task's 90 and 270 degrees one class)."""
    import keras

    class RandomAffine(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(dtype=DTYPE, name="clf_augment", **kwargs)
            self.seed_generator = keras.random.SeedGenerator(seed)

        def call(self, images, training=False):
            if not training:
                return images
            ops, uniform = keras.ops, keras.random.uniform
            n, h, w = ops.shape(images)[0], images.shape[1], images.shape[2]
            cx, cy = (w - 1) / 2.0, (h - 1) / 2.0  # output pixel -> input pixel, about the centre
            if photos:
                flip = ops.where(uniform((n,), seed=self.seed_generator) < (0.5 if rotate else 0.0), -1.0, 1.0)
                shift_x = ops.round(uniform((n,), -4.5, 4.5, seed=self.seed_generator))
                shift_y = ops.round(uniform((n,), -4.5, 4.5, seed=self.seed_generator))
                zeros = ops.zeros((n,))
                transform = ops.stack([flip, zeros, cx - flip * cx + shift_x, zeros, zeros + 1.0, shift_y,
                                       zeros, zeros], axis=1)
                return ops.image.affine_transform(images, transform, interpolation="nearest", fill_mode="reflect")
            angle = uniform((n,), -0.2, 0.2, seed=self.seed_generator) if rotate else ops.zeros((n,))
            zoom = uniform((n,), 0.9, 1.1, seed=self.seed_generator)
            shift_x = uniform((n,), -0.1, 0.1, seed=self.seed_generator) * w
            shift_y = uniform((n,), -0.1, 0.1, seed=self.seed_generator) * h
            cos, sin = ops.cos(angle) / zoom, ops.sin(angle) / zoom
            transform = ops.stack([cos, -sin, cx - cos * cx + sin * cy + shift_x,
                                   sin, cos, cy - sin * cx - cos * cy + shift_y,
                                   ops.zeros((n,)), ops.zeros((n,))], axis=1)
            return ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="constant",
                                              fill_value=-1.0)

    return RandomAffine()


def _rotation_task(images: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    turns = np.random.default_rng(seed).integers(0, 4, size=len(images))
    return np.stack([np.rot90(im, k) for im, k in zip(images, turns)]), turns.astype(np.int32)


def train_and_convert(images_uint8, labels, recipe, onnx_path, meta_path, verbose: int = 0) -> None:
    """Train per `recipe` on 90% of the data, write the ONNX file, measure it on the other 10%, write the meta."""
    import keras
    import tensorflow as tf

    from common.atomic import atomic_path, write_json_atomic

    if tf.distribute.has_strategy() and tf.distribute.in_cross_replica_context():
        raise RuntimeError("Build the evaluator outside strategy.scope(): only one worker trains the classifier.")
    images = to_unit_range(images_uint8)
    task = "classes" if labels is not None else "rotation"
    targets = np.asarray(labels, np.int32) if labels is not None else None
    if targets is None:
        images, targets = _rotation_task(images, recipe.seed)
    num_classes = int(targets.max()) + 1
    rng = np.random.default_rng(recipe.seed)
    order = rng.permutation(len(images))
    split = max(1, len(images) // 10)
    val, fit = order[:split], order[split:]

    classifier = build_classifier(images.shape[1], images.shape[-1], num_classes, recipe.width, recipe.seed,
                                  recipe.arch)
    augment = augmentation(recipe.seed, rotate=task == "classes", photos=recipe.arch == "resnet")
    inputs = keras.Input(images.shape[1:], dtype=DTYPE, name="clf_train_images")
    trainer = keras.Model(inputs, classifier(augment(inputs))["logits"], name="clf_trainer")
    steps_per_epoch = max(1, len(fit) // recipe.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, recipe.epochs * steps_per_epoch, alpha=0.0,
                                                      warmup_target=recipe.learning_rate, warmup_steps=steps_per_epoch)
    trainer.compile(optimizer=keras.optimizers.Adam(schedule, name="clf_adam"),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for epoch in range(recipe.epochs):  # data order from our own generator, not the global one
        batch = fit[rng.permutation(len(fit))][: steps_per_epoch * recipe.batch_size]
        trainer.fit(images[batch], targets[batch], batch_size=recipe.batch_size, epochs=epoch + 1,
                    initial_epoch=epoch, shuffle=False, verbose=verbose)

    with atomic_path(onnx_path, suffix=".onnx") as tmp:
        write_onnx(classifier, images.shape[1:], tmp)
    scored = DomainClassifier(onnx_path, {"task": task, "num_classes": num_classes, "held_out_accuracy": 0.0})
    accuracy = float(np.mean(scored.probabilities(images[val]).argmax(axis=1) == targets[val]))
    write_json_atomic(meta_path, {"task": task, "num_classes": num_classes, "held_out_accuracy": accuracy,
                                  "held_out_images": int(split), "num_images": len(images_uint8), "dtype": DTYPE,
                                  "recipe": {k: getattr(recipe, k) for k in recipe.__dataclass_fields__}})


def write_onnx(classifier, image_shape, path) -> None:
    import onnx
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec((None, *image_shape), tf.float32, name="images")]

    @tf.function(input_signature=spec)
    def serve(images):
        outputs = classifier(images, training=False)
        return {"features": tf.identity(outputs["features"], name="features"),
                "logits": tf.identity(outputs["logits"], name="logits")}

    model, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=17)
    onnx.save(model, str(path))


SHIPPABLE = ("mnist-sample", "cifar10")


def ship(directory: Path = SHIPPED_DIR, dataset: str = "mnist-sample", data_dir: str | None = None) -> Path:
    """Train the classifier for `dataset` (its recipe for the data's shape) into `directory`, named by
    its cache key, with where and how it was trained in its `.json`; returns the `.onnx` path.

    mnist-sample needs nothing; cifar10 needs `data_dir` holding the `train/<class>/` and
    `test/<class>/` image folders: it trains on train/ and records its accuracy on test/."""
    import datetime

    from common.atomic import write_json_atomic
    from common.cpu import cpu_model

    test_images = None
    if dataset == "mnist-sample":
        from common.realdata import read_mnist_sample

        images, labels = read_mnist_sample()
    else:
        from common.realdata import fingerprint, read_image_folder

        images, labels, class_names = read_image_folder(Path(data_dir) / "train", 32, 3, labelled=True)
        test_images, test_labels, _ = read_image_folder(Path(data_dir) / "test", 32, 3, labelled=True)
    recipe = recipe_for(images)
    key = cache_key(images, labels, recipe)
    directory.mkdir(parents=True, exist_ok=True)
    onnx_path, meta_path = directory / f"{key}.onnx", directory / f"{key}.json"
    photos = test_images is not None
    train_and_convert(images, labels, recipe, onnx_path, meta_path, verbose=2 if photos else 0)
    meta = json.loads(meta_path.read_text())
    meta["trained"] = {"command": f"python -m metrics.classifier --ship{' ' + dataset if photos else ''}",
                       "dataset": dataset, "date": datetime.date.today().isoformat(), **cpu_model()}
    if photos:
        scored = DomainClassifier(onnx_path, meta)
        predicted = scored.probabilities(to_unit_range(test_images)).argmax(axis=1)
        meta.update(test_accuracy=float(np.mean(predicted == test_labels)), test_images=len(test_images),
                    class_names=class_names, test_fingerprint=fingerprint(test_images, test_labels))
    write_json_atomic(meta_path, meta)
    return onnx_path


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="The domain classifier FID/KID are measured in.")
    parser.add_argument("--ship", nargs="?", const="mnist-sample", choices=SHIPPABLE, metavar="DATASET",
                        help=f"Retrain a shipped classifier into {SHIPPED_DIR}: mnist-sample (the default; about 2 "
                        "minutes on 2 cores) or cifar10 (with --data-dir; about 15 minutes); delete the old files "
                        "there yourself once the new ones are in.")
    parser.add_argument("--data-dir", help="cifar10: the folder holding train/<class>/ and test/<class>/ images.")
    args = parser.parse_args(argv)
    if not args.ship:
        parser.print_help()
        return
    if args.ship == "cifar10" and not (args.data_dir and (Path(args.data_dir) / "train").is_dir()):
        parser.error("--ship cifar10 needs --data-dir holding train/<class>/ and test/<class>/ image folders.")
    quiet_tensorflow()
    print(f"wrote {ship(dataset=args.ship, data_dir=args.data_dir)}")


if __name__ == "__main__":
    main()
