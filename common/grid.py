"""Sample grids: a batch of images in [-1, 1] tiled into one PNG, like the seeds' `save_imgs`.

Only numpy and the standard library (it lives in `common/`, which never imports TensorFlow, and the
server's `serve` extra, which has no Pillow, encodes its samples page's PNGs here too).
"""

from __future__ import annotations

import math
import os
import struct
import zlib

import numpy as np

from common.atomic import write_bytes_atomic
from common.signature import random_z

COLOR_TYPE = {1: 0, 3: 2}  # channels -> PNG colour type: greyscale, truecolour


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Map [-1, 1] floats to [0, 255] bytes, clipping stray values."""
    images = np.asarray(images, dtype=np.float32)
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def tile(images: np.ndarray, rows: int | None = None, padding: int = 1, columns: int | None = None,
         border: bool = True) -> np.ndarray:
    """Tile `[N, H, W, C]` images into one uint8 image, `padding` dark pixels between them and, with
    `border`, around them. Shape: `rows` (default about square) or else `columns` fixed."""
    images = to_uint8(images) if images.dtype != np.uint8 else images
    n, h, w, c = images.shape
    if columns:
        rows = int(math.ceil(n / columns))
    else:
        rows = rows or int(math.floor(math.sqrt(n)))
        columns = int(math.ceil(n / rows))
    edge = padding if border else 0
    grid = np.zeros((rows * (h + padding) - padding + 2 * edge, columns * (w + padding) - padding + 2 * edge, c),
                    np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        top, left = edge + r * (h + padding), edge + col * (w + padding)
        grid[top : top + h, left : left + w] = image
    return grid


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray, level: int = 6) -> bytes:
    """A uint8 [H, W] or [H, W, 1|3] array as PNG bytes (each row with filter type 0, none)."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in COLOR_TYPE:
        raise ValueError(f"encode_png takes uint8 [H, W, 1 or 3], got {image.dtype} {list(image.shape)}")
    height, width, channels = image.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, width * channels)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, COLOR_TYPE[channels], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
            + _chunk(b"IEND", b""))


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
        return random_z(num_samples, latent_dim, rng), rows
    per_class = max(1, -(-num_samples // num_classes))
    labels = np.repeat(np.arange(num_classes, dtype=np.int32), per_class)
    z = random_z(len(labels), latent_dim, rng)
    return [z, labels], num_classes
