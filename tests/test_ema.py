"""The EMA generator: StyleGAN2-ADA's half-life decay, and BatchNorm statistics re-estimated for
the EMA weights (not copied from the live generator)."""

import keras
import numpy as np
import pytest
from keras import ops

from training.ema import ema_decay, recalibrate_batchnorm, recalibration_inputs
from training.models import build_discriminator, build_generator


def test_decay_halves_a_weight_after_the_half_life_in_images():
    batch, kimg = 64, 10.0
    beta = float(ema_decay(batch, 10**9, kimg, None))
    steps = kimg * 1000 / batch
    assert beta**steps == pytest.approx(0.5, rel=1e-5)
    assert float(ema_decay(128, 10**9, kimg, None)) ** (steps / 2) == pytest.approx(0.5, rel=1e-5)


def test_rampup_caps_the_half_life_at_a_fraction_of_the_images_seen():
    # 2,000 images seen with ramp-up 0.05: half-life 100 images, so one batch of 64 decays by 0.5**0.64.
    assert float(ema_decay(64, 2000.0, 10.0, 0.05)) == pytest.approx(0.5**0.64, rel=1e-5)
    assert float(ema_decay(64, 10**7, 10.0, 0.05)) == pytest.approx(float(ema_decay(64, 0, 10.0, None)), rel=1e-5)


def _first_bn_input(generator, z):
    bn = next(layer for layer in generator.layers if isinstance(layer, keras.layers.BatchNormalization))
    probe = keras.Model(generator.inputs, bn.input)
    return bn, ops.convert_to_numpy(probe(z, training=True))


def test_recalibration_sets_batchnorm_to_the_batch_statistics_of_the_current_weights():
    keras.utils.set_random_seed(0)
    generator = build_generator(28, 1, latent_dim=8, width=4)
    weights = [w + 0.3 for w in generator.get_weights()]  # weights the moving statistics never saw
    generator.set_weights(weights)
    recalibrate_batchnorm(generator, num_samples=256, batch_size=256)
    z, _ = recalibration_inputs(8, None, 256)
    bn, features = _first_bn_input(generator, ops.convert_to_tensor(z))
    np.testing.assert_allclose(ops.convert_to_numpy(bn.moving_mean), features.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(bn.moving_variance), features.var(axis=(0, 1, 2)), rtol=1e-3, atol=1e-5)
    assert bn.momentum == 0.99  # restored


def test_recalibration_over_chunks_averages_their_statistics():
    keras.utils.set_random_seed(1)
    generator = build_generator(28, 1, latent_dim=8, width=4)
    recalibrate_batchnorm(generator, num_samples=128, batch_size=64)
    z, _ = recalibration_inputs(8, None, 128)
    bn = next(layer for layer in generator.layers if isinstance(layer, keras.layers.BatchNormalization))
    means = [_first_bn_input(generator, ops.convert_to_tensor(z[i:i + 64]))[1].mean(axis=(0, 1, 2)) for i in (0, 64)]
    np.testing.assert_allclose(ops.convert_to_numpy(bn.moving_mean), np.mean(means, axis=0), rtol=1e-4, atol=1e-5)


def test_one_train_step_moves_the_ema_by_the_half_life_decay_and_sampler_recalibrates():
    import tensorflow as tf

    from training.data import load_data, make_pipeline
    from training.gan import GAN

    keras.utils.set_random_seed(2)
    gan = GAN(build_generator(28, 1, 8, 4), build_discriminator(28, 1, 4), latent_dim=8, ema_kimg=0.1, ema_rampup=None)
    gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    before = [v.numpy() for v in gan.ema_generator.trainable_variables]
    data = load_data("mnist-sample")
    batch = next(iter(make_pipeline(data, 16, 8, 1, 0, 0)))
    gan.train_step(batch)
    beta = 0.5 ** (16 / 100)
    for old, ema, live in zip(before, gan.ema_generator.trainable_variables, gan.generator.trainable_variables):
        np.testing.assert_allclose(ema.numpy(), beta * old + (1 - beta) * live.numpy(), rtol=1e-5, atol=1e-6)
    sampler = gan.sampler
    live_bn = [v.numpy() for v in gan.generator.non_trainable_variables]
    ema_bn = [v.numpy() for v in sampler.non_trainable_variables]
    assert not all(np.allclose(a, b) for a, b in zip(live_bn, ema_bn)), "EMA statistics copied from the live generator"
    z, _ = recalibration_inputs(8, None, 1024)  # the default: 4 chunks of 256
    chunks = [_first_bn_input(sampler, tf.constant(z[i:i + 256])) for i in range(0, 1024, 256)]
    expected = np.mean([features.mean(axis=(0, 1, 2)) for _, features in chunks], axis=0)
    np.testing.assert_allclose(chunks[0][0].moving_mean.numpy(), expected, rtol=1e-4, atol=1e-6)
