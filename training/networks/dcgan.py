"""DCGAN (Radford et al., 2016): conv generator doubling a small map, strided-conv discriminator.

The generator projects z to a `base x base` map and doubles it with the chosen upsampling +
BatchNorm + ReLU up to `image_size`; the discriminator mirrors it with strided convolutions and
LeakyReLU, optionally spectrally normalized. BatchNorm is `synchronized=True`, so batch statistics
are computed over the *global* batch: the same step gives the same weights on 1 or N replicas.
"""

from __future__ import annotations

import keras
from keras import layers

from training.networks.layers import label_input, logits_head, maybe_sn, to_images, upsample

MAX_WIDTH_MULTIPLIER = 8


def upsampling_plan(image_size: int) -> tuple[int, int]:
    """Return `(base, num_upsamplings)`: halve `image_size` while it stays even and >= 4.

    28 -> (7, 2), 32 -> (4, 3), 64 -> (4, 4), 48 -> (6, 3).
    """
    if image_size % 4 or image_size < 8:
        raise ValueError(f"image_size must be a multiple of 4 and >= 8, got {image_size}")
    base, steps = image_size, 0
    while base % 2 == 0 and base // 2 >= 4:
        base, steps = base // 2, steps + 1
    return base, steps


def filters(width: int, level: int) -> int:
    return width * min(2**level, MAX_WIDTH_MULTIPLIER)


def build_generator(image_size, channels, latent_dim, width, num_classes, name, upsampling) -> keras.Model:
    base, steps = upsampling_plan(image_size)
    z = keras.Input((latent_dim,), name="z")
    inputs, x = label_input(num_classes, latent_dim, z)
    x = layers.Dense(base * base * filters(width, steps), use_bias=False, name="project")(x)
    x = layers.Reshape((base, base, filters(width, steps)))(x)
    x = layers.BatchNormalization(synchronized=True)(x)
    x = layers.ReLU()(x)
    for level in reversed(range(steps)):
        x = upsample(x, filters(width, level), upsampling)
        x = layers.BatchNormalization(synchronized=True)(x)
        x = layers.ReLU()(x)
    return keras.Model(inputs, to_images(x, channels), name=name)


def build_discriminator(image_size, channels, width, num_classes, name, spectral_norm) -> keras.Model:
    _, steps = upsampling_plan(image_size)
    images = keras.Input((image_size, image_size, channels), name="images")
    x = images
    for level in range(steps):
        x = maybe_sn(layers.Conv2D(filters(width, level), 4, strides=2, padding="same"), spectral_norm)(x)
        x = layers.LeakyReLU(0.2)(x)
    x = maybe_sn(layers.Conv2D(filters(width, steps), 3, padding="same"), spectral_norm)(x)
    x = layers.LeakyReLU(0.2)(x)
    return logits_head(layers.Flatten()(x), images, num_classes, spectral_norm, name)
