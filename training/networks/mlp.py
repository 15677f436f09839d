"""The seeds' tutorial GAN as an architecture: fully connected, so a user can reproduce it here.

Generator 256-512-1024 (LeakyReLU 0.2, BatchNorm momentum 0.8) to a tanh image; discriminator
512-256 (LeakyReLU 0.2) to a logit (the tutorial's sigmoid lives in the loss). `width` is ignored:
the tutorial's sizes are the point.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from training.networks.layers import label_input, logits_head, maybe_sn

GENERATOR_UNITS = (256, 512, 1024)
DISCRIMINATOR_UNITS = (512, 256)


def build_generator(image_size, channels, latent_dim, width, num_classes, name, upsampling) -> keras.Model:
    z = keras.Input((latent_dim,), name="z")
    inputs, x = label_input(num_classes, latent_dim, z)
    for units in GENERATOR_UNITS:
        x = layers.Dense(units)(x)
        x = layers.LeakyReLU(0.2)(x)
        x = layers.BatchNormalization(momentum=0.8, synchronized=True)(x)
    shape = (image_size, image_size, channels)
    x = layers.Dense(int(np.prod(shape)), activation="tanh", dtype="float32")(x)
    return keras.Model(inputs, layers.Reshape(shape, dtype="float32", name="images")(x), name=name)


def build_discriminator(image_size, channels, width, num_classes, name, spectral_norm) -> keras.Model:
    images = keras.Input((image_size, image_size, channels), name="images")
    x = layers.Flatten()(images)
    for units in DISCRIMINATOR_UNITS:
        x = maybe_sn(layers.Dense(units), spectral_norm)(x)
        x = layers.LeakyReLU(0.2)(x)
    return logits_head(x, images, num_classes, spectral_norm, name)
