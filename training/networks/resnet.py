"""Residual GAN (SNGAN, Miyato et al. 2018; BigGAN's blocks without attention) for 32-128 px colour.

Generator blocks: BN-ReLU-upsample-3x3 conv-BN-ReLU-3x3 conv, plus an upsampled 1x1 shortcut.
Discriminator blocks: ReLU-3x3-ReLU-3x3-avgpool, plus a 1x1-avgpool shortcut, every conv and
the head spectrally normalized (always: it is what keeps this critic stable), global sum pooling.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from training.networks.dcgan import filters, upsampling_plan
from training.networks.layers import label_input, logits_head, to_images, upsample

SN = layers.SpectralNormalization


def _g_block(x, out_filters: int, upsampling: str):
    shortcut = upsample(x, out_filters, upsampling, kernel_size=1)
    h = layers.ReLU()(layers.BatchNormalization(synchronized=True)(x))
    h = upsample(h, out_filters, upsampling)
    h = layers.ReLU()(layers.BatchNormalization(synchronized=True)(h))
    h = layers.Conv2D(out_filters, 3, padding="same", use_bias=False)(h)
    return layers.Add()([shortcut, h])


def _d_block(x, out_filters: int, downsample: bool, first: bool):
    shortcut = SN(layers.Conv2D(out_filters, 1))(x)
    h = x if first else layers.ReLU()(x)
    h = SN(layers.Conv2D(out_filters, 3, padding="same"))(h)
    h = SN(layers.Conv2D(out_filters, 3, padding="same"))(layers.ReLU()(h))
    if downsample:
        shortcut, h = layers.AveragePooling2D(2)(shortcut), layers.AveragePooling2D(2)(h)
    return layers.Add()([shortcut, h])


@keras.saving.register_keras_serializable(package="gan")
class GlobalSumPooling(layers.Layer):
    """Sum over height and width (SNGAN's critic pools by sum, not mean)."""

    def call(self, x):
        return ops.sum(x, axis=(1, 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


def build_generator(image_size, channels, latent_dim, width, num_classes, name, upsampling) -> keras.Model:
    base, steps = upsampling_plan(image_size)
    z = keras.Input((latent_dim,), name="z")
    inputs, x = label_input(num_classes, latent_dim, z)
    x = layers.Dense(base * base * filters(width, steps), name="project")(x)
    x = layers.Reshape((base, base, filters(width, steps)))(x)
    for level in reversed(range(steps)):
        x = _g_block(x, filters(width, level), upsampling)
    x = layers.ReLU()(layers.BatchNormalization(synchronized=True)(x))
    return keras.Model(inputs, to_images(x, channels), name=name)


def build_discriminator(image_size, channels, width, num_classes, name, spectral_norm) -> keras.Model:
    _, steps = upsampling_plan(image_size)
    images = keras.Input((image_size, image_size, channels), name="images")
    x = images
    for level in range(steps):
        x = _d_block(x, filters(width, level), downsample=True, first=level == 0)
    x = _d_block(x, filters(width, steps), downsample=False, first=False)
    features = GlobalSumPooling()(layers.ReLU()(x))
    return logits_head(features, images, num_classes, True, name)
