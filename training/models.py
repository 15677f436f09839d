"""DCGAN-family generator and discriminator builders.

Plain functions that return functional `keras.Model`s, so that the saved `.keras` files reload with
`keras.models.load_model` after `import training` (which registers the one custom layer below).

The generator projects z to a small `base x base` map and doubles the resolution with
`Conv2DTranspose` + BatchNorm + ReLU until it reaches `image_size`; the discriminator mirrors it
with strided convolutions and LeakyReLU. BatchNorm is `synchronized=True`, so batch statistics are
computed over the *global* batch: the same step gives the same weights on 1 or N replicas.
"""

from __future__ import annotations

import keras
from keras import layers, ops

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


def _filters(width: int, level: int) -> int:
    return width * min(2**level, MAX_WIDTH_MULTIPLIER)


@keras.saving.register_keras_serializable(package="gan")
class ProjectionHead(layers.Layer):
    """Projection-discriminator output (Miyato & Koyama, 2018): `dense(h) + <embed(y), h>`.

    The label enters as an inner product with the features, which conditions the critic far more
    stably than concatenating a one-hot label to the image.
    """

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.dense = layers.Dense(1, name="unconditional")
        self.embedding = None

    def build(self, input_shape):
        features_shape, _ = input_shape
        self.dense.build(features_shape)
        self.embedding = layers.Embedding(self.num_classes, features_shape[-1], name="class_embedding")
        self.embedding.build((None,))

    def call(self, inputs):
        features, labels = inputs
        projection = ops.sum(self.embedding(labels) * features, axis=-1, keepdims=True)
        return self.dense(features) + projection

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 1)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


def build_generator(
    image_size: int = 28,
    channels: int = 1,
    latent_dim: int = 64,
    width: int = 32,
    num_classes: int | None = None,
    name: str = "generator",
) -> keras.Model:
    """z `[batch, latent_dim]` (and label `[batch]` int32 if conditional) -> images in [-1, 1]."""
    base, steps = upsampling_plan(image_size)
    z = keras.Input((latent_dim,), name="z")
    inputs, x = [z], z
    if num_classes:
        label = keras.Input((), dtype="int32", name="label")
        inputs.append(label)
        x = layers.Concatenate(name="z_and_class")(
            [z, layers.Embedding(num_classes, latent_dim, name="class_embedding")(label)]
        )
    x = layers.Dense(base * base * _filters(width, steps), use_bias=False, name="project")(x)
    x = layers.Reshape((base, base, _filters(width, steps)))(x)
    x = layers.BatchNormalization(synchronized=True)(x)
    x = layers.ReLU()(x)
    for level in reversed(range(steps)):
        x = layers.Conv2DTranspose(_filters(width, level), 4, strides=2, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(synchronized=True)(x)
        x = layers.ReLU()(x)
    # Outputs stay float32 under mixed precision: exported models take and return float32.
    images = layers.Conv2D(channels, 3, padding="same", activation="tanh", dtype="float32", name="images")(x)
    return keras.Model(inputs if num_classes else z, images, name=name)


def build_discriminator(
    image_size: int = 28,
    channels: int = 1,
    width: int = 32,
    num_classes: int | None = None,
    name: str = "discriminator",
) -> keras.Model:
    """Images `[batch, H, W, C]` (and label if conditional) -> one unbounded logit per image."""
    _, steps = upsampling_plan(image_size)
    images = keras.Input((image_size, image_size, channels), name="images")
    x = images
    for level in range(steps):
        x = layers.Conv2D(_filters(width, level), 4, strides=2, padding="same")(x)
        x = layers.LeakyReLU(0.2)(x)
    x = layers.Conv2D(_filters(width, steps), 3, padding="same")(x)
    x = layers.LeakyReLU(0.2)(x)
    features = layers.Flatten()(x)
    if num_classes:
        label = keras.Input((), dtype="int32", name="label")
        logits = ProjectionHead(num_classes, dtype="float32", name="logits")([features, label])
        return keras.Model([images, label], logits, name=name)
    logits = layers.Dense(1, dtype="float32", name="logits")(features)
    return keras.Model(images, logits, name=name)


def class_count(generator: keras.Model) -> int | None:
    """Classes of a conditional generator (its class embedding's rows); None when unconditional."""
    if len(generator.inputs) < 2:
        return None
    for layer in generator.layers:
        if isinstance(layer, layers.Embedding):
            return int(layer.input_dim)
    raise ValueError(f"{generator.name} takes two inputs but has no class embedding: not one of ours")
