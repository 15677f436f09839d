"""Building blocks shared by the architectures: the projection head, sub-pixel upsampling, SN.

Upsampling is one choice for every generator (`UPSAMPLING`), measured in `benchmarks/upsampling.py`:
- `pixelshuffle`: 3x3 conv to 4x the filters, then `depth_to_space` (Shi et al., 2016). ONNX gets
  `Conv` + `DepthToSpace`, which onnxruntime's int8 quantizer and NCHWc path both handle; the
  kernel starts as ICNR (Aitken et al., 2017) so the first images have no checkerboard. Saved
  generators spell both in Keras's own layers (`training.networks.portable`).
- `transposed`: `Conv2DTranspose(4, strides=2)`, the classic DCGAN layer (ONNX `ConvTranspose`,
  left in float by the quantizer).
- `nearest`: nearest-neighbour upsampling + 3x3 conv (Keras's `UpSampling2D` exports as Tile/Gather
  chains, the slowest of the three in onnxruntime).
"""

from __future__ import annotations

import keras
from keras import layers, ops

UPSAMPLING = ("pixelshuffle", "transposed", "nearest")


@keras.saving.register_keras_serializable(package="gan")
class ProjectionHead(layers.Layer):
    """Projection-discriminator output (Miyato & Koyama, 2018): `dense(h) + <embed(y), h>`.

    The label enters as an inner product with the features, which conditions the critic far more
    stably than concatenating a one-hot label to the image.
    """

    def __init__(self, num_classes: int, spectral_norm: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.spectral_norm = spectral_norm
        self.dense = maybe_sn(layers.Dense(1, name="unconditional"), spectral_norm)
        self.embedding = None

    def build(self, input_shape):
        features_shape, _ = input_shape
        self.dense.build(features_shape)
        self.embedding = layers.Embedding(self.num_classes, features_shape[-1], name="class_embedding")
        self.embedding.build((None,))

    def call(self, inputs, training=False):
        features, labels = inputs
        projection = ops.sum(self.embedding(labels) * features, axis=-1, keepdims=True)
        dense = self.dense(features, training=training) if self.spectral_norm else self.dense(features)
        return dense + projection

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 1)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "spectral_norm": self.spectral_norm}


@keras.saving.register_keras_serializable(package="gan")
class DepthToSpace(layers.Layer):
    """`[b, h, w, 4c] -> [b, 2h, 2w, c]` via `tf.nn.depth_to_space`, which tf2onnx maps to one
    ONNX `DepthToSpace` (a keras.ops reshape/transpose would export as Reshape/Transpose chains)."""

    def __init__(self, block_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.block_size = block_size

    def call(self, x):
        import tensorflow as tf

        return tf.nn.depth_to_space(x, self.block_size)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        s = self.block_size
        return (b, None if h is None else h * s, None if w is None else w * s, c // (s * s))

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


@keras.saving.register_keras_serializable(package="gan")
class ICNR(keras.initializers.Initializer):
    """A conv kernel whose `block**2` sub-pixel outputs start identical: pixel shuffle then equals
    nearest-neighbour upsampling of one conv, so training starts without checkerboard artefacts."""

    def __init__(self, block_size: int = 2, seed: int | None = None):
        self.block_size = block_size
        self.seed = seed

    def __call__(self, shape, dtype=None):
        copies = self.block_size**2
        base = keras.initializers.GlorotUniform(self.seed)((*shape[:-1], shape[-1] // copies), dtype=dtype)
        return ops.tile(base, (1, 1, 1, copies))  # depth_to_space reads channel (block, c) as block*C + c

    def get_config(self):
        return {"block_size": self.block_size, "seed": self.seed}


def maybe_sn(layer: layers.Layer, enabled: bool) -> layers.Layer:
    return layers.SpectralNormalization(layer, name=f"sn_{layer.name}") if enabled else layer


def upsample(x, filters: int, mode: str, kernel_size: int = 3, use_bias: bool = False, name: str | None = None):
    """Double the resolution of `x` and map it to `filters` channels with the chosen method."""
    if mode == "pixelshuffle":
        x = layers.Conv2D(filters * 4, kernel_size, padding="same", use_bias=use_bias, kernel_initializer=ICNR(),
                          name=name and f"{name}_conv")(x)
        return DepthToSpace(2, name=name and f"{name}_shuffle")(x)
    if mode == "transposed":
        return layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=use_bias, name=name)(x)
    if mode == "nearest":
        x = layers.UpSampling2D(2, interpolation="nearest", name=name and f"{name}_nearest")(x)
        return layers.Conv2D(filters, kernel_size, padding="same", use_bias=use_bias, name=name and f"{name}_conv")(x)
    raise ValueError(f"Unknown upsampling {mode!r}; choose one of {', '.join(UPSAMPLING)}.")


def label_input(num_classes: int | None, latent_dim: int, z):
    """`(inputs, x)`: the generator's inputs and z, joined with a class embedding when conditional."""
    if not num_classes:
        return z, z
    label = keras.Input((), dtype="int32", name="label")
    x = layers.Concatenate(name="z_and_class")(
        [z, layers.Embedding(num_classes, latent_dim, name="class_embedding")(label)])
    return [z, label], x


def logits_head(features, images, num_classes: int | None, spectral_norm: bool, name: str) -> keras.Model:
    """Dense logit, or the projection head on `[features, label]` when conditional."""
    if num_classes:
        label = keras.Input((), dtype="int32", name="label")
        logits = ProjectionHead(num_classes, spectral_norm, dtype="float32", name="logits")([features, label])
        return keras.Model([images, label], logits, name=name)
    if spectral_norm:  # the wrapper casts its output back to the (maybe bfloat16) input dtype
        logits = layers.SpectralNormalization(layers.Dense(1, name="dense_logit"), name="sn_logit")(features)
        logits = layers.Activation("linear", dtype="float32", name="logits")(logits)
    else:
        logits = layers.Dense(1, dtype="float32", name="logits")(features)
    return keras.Model(images, logits, name=name)


def to_images(x, channels: int):
    """The output layer of every conv generator: a 3x3 conv to `channels` with tanh, in float32
    even under mixed precision, so exported models take and return float32."""
    return layers.Conv2D(channels, 3, padding="same", activation="tanh", dtype="float32", name="images")(x)
