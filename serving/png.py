"""PNG encoding with the standard library (zlib, struct) and numpy: the server's `serve` extra has
no Pillow, and a grid of generator samples needs only 8-bit grey or RGB, no filters to speak of."""

from __future__ import annotations

import struct
import zlib

import numpy as np

COLOR_TYPE = {1: 0, 3: 2}  # channels -> PNG colour type: greyscale, truecolour


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


def tile(images: np.ndarray, columns: int | None = None, gap: int = 2) -> np.ndarray:
    """[N, H, W, C] uint8 images as one grid image, `columns` wide (default: about square)."""
    count, height, width, channels = images.shape
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = -(-count // columns)
    grid = np.zeros((rows * (height + gap) - gap, columns * (width + gap) - gap, channels), np.uint8)
    for index, image in enumerate(images):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        grid[top:top + height, left:left + width] = image
    return grid


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Generator output in [-1, 1] as uint8 pixels."""
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
