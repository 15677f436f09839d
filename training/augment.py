"""DiffAugment (Zhao et al., 2020): differentiable augmentations for data-efficient GAN training.

The discriminator sees augmented real *and* fake images, and the generator is trained through
the same augmentations, so the critic cannot overfit a small dataset without the augmentations
leaking into the samples. Everything is `keras.ops` and differentiable in the images.

Randomness is not drawn here: each call takes `randoms`, uniform `[batch, NUM_RANDOMS]` values that
the data pipeline derives from the batch's `(seed, step)`. A sample's augmentation therefore
depends only on its position in the data stream: the same on 1 or N replicas and after a resume.
"""

from __future__ import annotations

from keras import ops

POLICIES = ("color", "translation", "cutout")
NUM_RANDOMS = 8  # brightness, saturation, contrast, shift y, shift x, cutout top, cutout left, spare
TRANSLATION_RATIO = 0.125  # shift by up to 1/8 of the image side, zero-filled
CUTOUT_RATIO = 0.5  # zero a square half the image side


def parse_policy(text: str | None) -> tuple[str, ...]:
    """`"translation,cutout"` -> `("translation", "cutout")`; empty or "none" -> `()`."""
    names = tuple(p.strip() for p in (text or "").split(",") if p.strip() and p.strip() != "none")
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"Unknown DiffAugment policy {', '.join(unknown)}; use a comma list of {', '.join(POLICIES)}.")
    return names


def diff_augment(images, randoms, policy: tuple[str, ...]):
    """Augment `[batch, H, W, C]` images in the order color -> translation -> cutout."""
    randoms = ops.cast(randoms, images.dtype)
    if "color" in policy:
        images = color(images, randoms[:, 0], randoms[:, 1], randoms[:, 2])
    if "translation" in policy:
        images = translation(images, randoms[:, 3], randoms[:, 4])
    if "cutout" in policy:
        images = cutout(images, randoms[:, 5], randoms[:, 6])
    return images


def _per_sample(u):
    return ops.reshape(u, (-1, 1, 1, 1))


def color(images, u_brightness, u_saturation, u_contrast):
    """Brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5] (DiffAugment's ranges)."""
    images = images + _per_sample(u_brightness - 0.5)
    mean = ops.mean(images, axis=-1, keepdims=True)
    images = mean + (images - mean) * _per_sample(u_saturation * 2.0)
    mean = ops.mean(images, axis=(1, 2, 3), keepdims=True)
    return mean + (images - mean) * _per_sample(u_contrast + 0.5)


def max_shift(size: int) -> int:
    return int(size * TRANSLATION_RATIO + 0.5)


def shift_amounts(u, size: int):
    """Uniform [0, 1) -> integer shifts in [-max_shift, max_shift]."""
    limit = max_shift(size)
    return ops.cast(ops.floor(u * (2 * limit + 1)), "int32") - limit


def _shift_matrix(shift, size: int, dtype):
    """`[batch, size, size]` with `m[b, i, j] = 1` where `j == i - shift[b]`: `m @ x` shifts x by
    `shift` along that axis, filling with zeros (a matmul, so it is exact and differentiable)."""
    i = ops.arange(size, dtype="int32")
    source = ops.reshape(i, (1, size, 1)) - ops.reshape(shift, (-1, 1, 1))
    return ops.cast(ops.equal(source, ops.reshape(i, (1, 1, size))), dtype)


def translation(images, u_y, u_x):
    """Shift each image by whole pixels, up to 1/8 of its side, zero-filling what moves in."""
    height, width = images.shape[1], images.shape[2]
    rows = _shift_matrix(shift_amounts(u_y, height), height, images.dtype)
    cols = _shift_matrix(shift_amounts(u_x, width), width, images.dtype)
    images = ops.einsum("bij,bjwc->biwc", rows, images)
    return ops.einsum("bkw,bhwc->bhkc", cols, images)


def cutout_size(size: int) -> int:
    return int(size * CUTOUT_RATIO + 0.5)


def cutout(images, u_top, u_left):
    """Zero one `cutout_size` square per image, placed uniformly and always inside the image."""
    height, width = images.shape[1], images.shape[2]
    masks = []
    for u, size in ((u_top, height), (u_left, width)):
        side = cutout_size(size)
        start = ops.cast(ops.floor(u * (size - side + 1)), "int32")
        index = ops.reshape(ops.arange(size, dtype="int32"), (1, size))
        start = ops.reshape(start, (-1, 1))
        masks.append(ops.logical_and(index >= start, index < start + side))
    inside = ops.logical_and(ops.expand_dims(masks[0], 2), ops.expand_dims(masks[1], 1))
    return images * ops.cast(ops.expand_dims(ops.logical_not(inside), -1), images.dtype)
