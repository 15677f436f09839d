"""Sample grids: a batch of images in [-1, 1] tiled into one PNG, like the seeds' `save_imgs`.

Only numpy and Pillow (it lives in `common/`, which never imports TensorFlow).
"""

from __future__ import annotations

import io
import math
import os

import numpy as np
from PIL import Image

from common.atomic import write_bytes_atomic


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Map [-1, 1] floats to [0, 255] bytes, clipping stray values."""
    images = np.asarray(images, dtype=np.float32)
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def tile(images: np.ndarray, rows: int | None = None, padding: int = 1) -> np.ndarray:
    """Tile `[N, H, W, C]` images into one `[rows*H, cols*W, C]` uint8 image with a dark border."""
    images = to_uint8(images) if images.dtype != np.uint8 else images
    n, h, w, c = images.shape
    rows = rows or int(math.floor(math.sqrt(n)))
    cols = int(math.ceil(n / rows))
    grid = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding, c), np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, cols)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = image
    return grid


def encode_png(grid: np.ndarray) -> bytes:
    mode = "L" if grid.shape[-1] == 1 else "RGB"
    buffer = io.BytesIO()
    Image.fromarray(grid[..., 0] if mode == "L" else grid, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def save_grid(images: np.ndarray, path: str | os.PathLike, rows: int | None = None) -> np.ndarray:
    """Write the grid atomically to `path` and return it (uint8) for TensorBoard."""
    grid = tile(images, rows=rows)
    write_bytes_atomic(path, encode_png(grid))
    return grid


def sample_inputs(latent_dim: int, num_samples: int, num_classes: int | None, seed: int):
    """The fixed latent batch of the sample grids, and the grid's row count (one row per class)."""
    rng = np.random.default_rng(seed)
    if not num_classes:
        rows = max(1, int(np.floor(np.sqrt(num_samples))))
        return rng.standard_normal((num_samples, latent_dim)).astype(np.float32), rows
    per_class = max(1, -(-num_samples // num_classes))
    labels = np.repeat(np.arange(num_classes, dtype=np.int32), per_class)
    z = rng.standard_normal((len(labels), latent_dim)).astype(np.float32)
    return [z, labels], num_classes
