"""Reference 2: the keras-io "DCGAN overriding train_step" recipe, adapted from 64x64 RGB to 28x28x1 or 32x32x3.

As in the example: a `keras.Model` whose `train_step` generates fakes, concatenates them with the
real batch, trains the discriminator on labels 1 = fake / 0 = real with 0.05 uniform label noise,
then trains the generator against "real" labels with fresh noise; Adam(1e-4) for both, BCE on
sigmoid outputs, images in [0, 1], latent size 128, and Keras's default `jit_compile="auto"`.
Architecture: discriminator Conv 64-128-128 (4x4, stride 2, LeakyReLU 0.2), Dropout 0.2, Dense;
generator Dense to (size/4)x(size/4)x128 (7x7 for digits; 8x8 for 32 px, as in the original),
Conv2DTranspose 128 and 256 (stride 2, LeakyReLU 0.2; the original's third 512 block would overshoot
28 or 32 pixels), Conv2D 5x5 sigmoid to the data's channels.
"""

from __future__ import annotations

import time

import keras
import numpy as np
from keras import layers, ops

LATENT_DIM = 128
BATCH_SIZE = 32


def build_discriminator(image_shape=(28, 28, 1), sigmoid: bool = True) -> keras.Model:
    x = images = keras.Input(image_shape)
    for filters in (64, 128, 128):
        x = layers.Conv2D(filters, 4, strides=2, padding="same")(x)
        x = layers.LeakyReLU(0.2)(x)
    x = layers.Dropout(0.2)(layers.Flatten()(x))
    return keras.Model(images, layers.Dense(1, activation="sigmoid" if sigmoid else None)(x), name="kio_discriminator")


def build_generator(latent_dim: int = LATENT_DIM, channels: int = 1, activation: str = "sigmoid",
                    image_size: int = 28) -> keras.Model:
    z = keras.Input((latent_dim,))
    base = image_size // 4
    x = layers.Reshape((base, base, 128))(layers.Dense(base * base * 128)(z))
    for filters in (128, 256):
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same")(x)
        x = layers.LeakyReLU(0.2)(x)
    return keras.Model(z, layers.Conv2D(channels, 5, padding="same", activation=activation)(x), name="kio_generator")


class KerasIoGAN(keras.Model):
    def __init__(self, discriminator, generator, latent_dim=LATENT_DIM, seed=0):
        super().__init__()
        self.discriminator, self.generator, self.latent_dim = discriminator, generator, latent_dim
        self.seed_generator = keras.random.SeedGenerator(seed)

    def compile(self, d_optimizer, g_optimizer, loss_fn, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer, self.g_optimizer, self.loss_fn = d_optimizer, g_optimizer, loss_fn
        self.d_loss_metric = keras.metrics.Mean(name="d_loss")
        self.g_loss_metric = keras.metrics.Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_loss_metric, self.g_loss_metric]

    def train_step(self, real_images):
        import tensorflow as tf

        batch_size = ops.shape(real_images)[0]
        z = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        combined = ops.concatenate([self.generator(z), real_images], axis=0)
        labels = ops.concatenate([ops.ones((batch_size, 1)), ops.zeros((batch_size, 1))], axis=0)
        labels += 0.05 * keras.random.uniform(ops.shape(labels), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            d_loss = self.loss_fn(labels, self.discriminator(combined))
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
        z = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        misleading = ops.zeros((batch_size, 1))
        with tf.GradientTape() as tape:
            g_loss = self.loss_fn(misleading, self.discriminator(self.generator(z)))
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        self.d_loss_metric.update_state(d_loss)
        self.g_loss_metric.update_state(g_loss)
        return {"d_loss": self.d_loss_metric.result(), "g_loss": self.g_loss_metric.result()}


def make(seed: int = 0, batch_size: int = BATCH_SIZE, discriminator=None, generator=None, image_shape=(28, 28, 1),
         **compile_kwargs) -> KerasIoGAN:
    keras.utils.set_random_seed(seed)
    gan = KerasIoGAN(discriminator or build_discriminator(image_shape),
                     generator or build_generator(channels=image_shape[-1], image_size=image_shape[0]), seed=seed)
    gan.compile(d_optimizer=keras.optimizers.Adam(1e-4), g_optimizer=keras.optimizers.Adam(1e-4),
                loss_fn=keras.losses.BinaryCrossentropy(), **compile_kwargs)
    return gan


def dataset(images_unit: np.ndarray, batch_size: int, seed: int = 0):
    """Images in [0, 1], shuffled and batched as the example does."""
    import tensorflow as tf

    return (tf.data.Dataset.from_tensor_slices(images_unit).shuffle(len(images_unit), seed=seed).repeat()
            .batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


class TimeLimit(keras.callbacks.Callback):
    def __init__(self, minutes, max_steps=None):
        super().__init__()
        self.deadline, self.steps, self.max_steps = time.monotonic() + 60 * minutes, 0, max_steps

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if time.monotonic() >= self.deadline or (self.max_steps and self.steps >= self.max_steps):
            self.model.stop_training = True


def train(images_pm1: np.ndarray, minutes: float, seed: int = 0, batch_size: int = BATCH_SIZE,
          max_steps: int | None = None):
    """Train for a wall-clock budget (or `max_steps`) on images in [-1, 1]; return (sampler in [-1, 1], steps)."""
    gan = make(seed, batch_size, image_shape=images_pm1.shape[1:])
    limit = TimeLimit(minutes, max_steps)
    gan.fit(dataset((images_pm1 + 1) / 2, batch_size, seed), epochs=10**6, steps_per_epoch=50,
            callbacks=[limit], verbose=0)

    def sample(z, labels=None):  # z: [n, LATENT_DIM]
        return keras.ops.convert_to_numpy(gan.generator(z, training=False)) * 2 - 1
    return sample, limit.steps
