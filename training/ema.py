"""The generator's exponential moving average: its decay rule and its BatchNorm statistics.

Decay (StyleGAN2-ADA, Karras et al. 2020): the EMA has a *half-life in images*, `ema_kimg`
thousand, so it means the same at any batch size; with ramp-up the half-life is capped at
`ema_rampup` x the images seen so far, so early weights do not linger in a short run.

BatchNorm: the EMA weights are an average the live generator never ran, so the live generator's
moving statistics do not fit them. `recalibrate_batchnorm` re-estimates them for the EMA weights
from a fixed latent batch ("precise BN"): a pure function of the weights, so a resumed run ends
bit-identical.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from common.signature import labels_in_turn, random_z

RECALIBRATION_SAMPLES = 1024
RECALIBRATION_BATCH = 256


def ema_decay(batch_size, images_seen, ema_kimg: float, ema_rampup: float | None):
    """Per-step decay `0.5 ** (batch / half_life_images)`; works on numbers and tensors alike."""
    half_life = ema_kimg * 1000.0
    if ema_rampup:
        half_life = ops.minimum(half_life, images_seen * ema_rampup)
    return ops.power(0.5, batch_size / ops.maximum(half_life, 1e-8))


def batchnorm_layers(model: keras.Model) -> list[layers.BatchNormalization]:
    return [layer for layer in model._flatten_layers() if isinstance(layer, layers.BatchNormalization)]


def recalibration_inputs(latent_dim: int, num_classes: int | None, count: int, seed: int = 0):
    return random_z(count, latent_dim, seed), labels_in_turn(count, num_classes) if num_classes else None


def recalibrate_batchnorm(generator: keras.Model, num_classes: int | None = None,
                          num_samples: int = RECALIBRATION_SAMPLES, batch_size: int = RECALIBRATION_BATCH) -> None:
    """Set every BatchNorm's moving mean/variance to the average batch statistics of the
    generator *with its current weights* over a fixed latent set (in place; no-op without BN)."""
    norms = batchnorm_layers(generator)
    if not norms:
        return
    latent_dim = int(generator.inputs[0].shape[-1])
    z, labels = recalibration_inputs(latent_dim, num_classes, num_samples)
    momenta = [bn.momentum for bn in norms]
    try:
        for i, start in enumerate(range(0, num_samples, batch_size)):
            for bn in norms:  # a cumulative average of the chunks' batch statistics
                bn.momentum = i / (i + 1)
            chunk = ops.convert_to_tensor(z[start:start + batch_size])
            inputs = [chunk, ops.convert_to_tensor(labels[start:start + batch_size])] if num_classes else chunk
            generator(inputs, training=True)
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
