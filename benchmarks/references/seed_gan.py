"""Reference 1: the seeds' GAN, reimplemented faithfully in Keras 3.

The classic Keras MLP GAN: generator 256-512-1024 (LeakyReLU 0.2, BatchNorm momentum 0.8) to a
tanh image, discriminator 512-256 (LeakyReLU 0.2) to a sigmoid, Adam(2e-4, beta_1=0.5) for both,
batch 32 drawn at random each step, the discriminator updated on a real batch and then on a fake
batch (two half updates, fakes made in inference mode as `generator.predict` did), and the
generator trained through the frozen discriminator. Keras 3 no longer freezes a submodel by
flipping `trainable` after compile, so "frozen" is expressed directly: the generator's update
applies gradients to the generator's variables only.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf
from keras import layers

LATENT_DIM = 100
BATCH_SIZE = 32


def build_generator(image_shape=(28, 28, 1)) -> keras.Model:
    z = keras.Input((LATENT_DIM,))
    x = z
    for units in (256, 512, 1024):
        x = layers.Dense(units)(x)
        x = layers.LeakyReLU(0.2)(x)
        x = layers.BatchNormalization(momentum=0.8)(x)
    x = layers.Dense(int(np.prod(image_shape)), activation="tanh")(x)
    return keras.Model(z, layers.Reshape(image_shape)(x), name="seed_generator")


def build_discriminator(image_shape=(28, 28, 1)) -> keras.Model:
    images = keras.Input(image_shape)
    x = layers.Flatten()(images)
    for units in (512, 256):
        x = layers.Dense(units)(x)
        x = layers.LeakyReLU(0.2)(x)
    return keras.Model(images, layers.Dense(1, activation="sigmoid")(x), name="seed_discriminator")


class SeedGAN:
    def __init__(self, seed: int = 0, image_shape=(28, 28, 1)):
        keras.utils.set_random_seed(seed)
        self.generator, self.discriminator = build_generator(image_shape), build_discriminator(image_shape)
        self.d_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)
        self.g_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)
        self.bce = keras.losses.BinaryCrossentropy()
        self.rng = np.random.default_rng(seed)

    @tf.function
    def _d_update(self, images, target):
        with tf.GradientTape() as tape:
            loss = self.bce(tf.fill((tf.shape(images)[0], 1), target), self.discriminator(images, training=True))
        variables = self.discriminator.trainable_variables
        self.d_optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    @tf.function
    def _g_update(self, z):
        with tf.GradientTape() as tape:
            fake = self.generator(z, training=True)
            loss = self.bce(tf.ones((tf.shape(z)[0], 1)), self.discriminator(fake, training=False))
        variables = self.generator.trainable_variables  # the discriminator stays frozen
        self.g_optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    @tf.function
    def _fake(self, z):
        return self.generator(z, training=False)

    def train(self, images: np.ndarray, minutes: float, max_steps: int | None = None) -> int:
        """Train for a wall-clock budget (or `max_steps`, whichever ends first) on images in [-1, 1];
        return the steps taken."""
        deadline, steps = time.monotonic() + 60 * minutes, 0
        while time.monotonic() < deadline and (max_steps is None or steps < max_steps):
            real = images[self.rng.integers(0, len(images), BATCH_SIZE)]
            z = self.rng.standard_normal((BATCH_SIZE, LATENT_DIM)).astype(np.float32)
            self._d_update(real, 1.0)
            self._d_update(self._fake(z), 0.0)
            self._g_update(self.rng.standard_normal((BATCH_SIZE, LATENT_DIM)).astype(np.float32))
            steps += 1
        return steps

    def sample(self, z, labels=None):
        return keras.ops.convert_to_numpy(self._fake(z))
