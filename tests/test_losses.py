import math

import numpy as np
import pytest
import tensorflow as tf

from training.losses import (HingeLoss, NonSaturatingLoss, RelativisticPairedLoss, WassersteinLoss, get_loss,
                             gradient_penalty_from_gradients)


def value(x):
    return float(np.asarray(x))


def test_bce_at_zero_logits_is_log_two_per_term():
    loss = NonSaturatingLoss()
    zeros = tf.zeros((4, 1))
    assert value(loss.discriminator_loss(zeros, zeros)) == pytest.approx(2 * math.log(2), rel=1e-5)
    assert value(loss.generator_loss(zeros)) == pytest.approx(math.log(2), rel=1e-5)


def test_bce_label_smoothing_softens_only_real_targets():
    real, fake = tf.constant([[3.0]]), tf.constant([[-2.0]])
    smoothed = NonSaturatingLoss(label_smoothing=0.1)
    sigmoid = 1 / (1 + math.exp(-3.0))
    expected_real = -(0.9 * math.log(sigmoid) + 0.1 * math.log(1 - sigmoid))
    expected_fake = -math.log(1 - 1 / (1 + math.exp(2.0)))
    assert value(smoothed.discriminator_loss(real, fake)) == pytest.approx(expected_real + expected_fake, rel=1e-4)
    # The generator's target stays 1: smoothing is one-sided.
    assert value(smoothed.generator_loss(fake)) == pytest.approx(value(NonSaturatingLoss().generator_loss(fake)))


def test_wasserstein_and_hinge_on_known_logits():
    real, fake = tf.constant([[2.0], [0.5]]), tf.constant([[-1.0], [0.0]])
    assert value(WassersteinLoss().discriminator_loss(real, fake)) == pytest.approx(-0.5 - 1.25)
    assert value(WassersteinLoss().generator_loss(fake)) == pytest.approx(0.5)
    # relu(1 - [2, .5]) = [0, .5] -> .25 ; relu(1 + [-1, 0]) = [0, 1] -> .5
    assert value(HingeLoss().discriminator_loss(real, fake)) == pytest.approx(0.75)
    assert value(HingeLoss().generator_loss(fake)) == pytest.approx(0.5)


def test_gradient_penalty_of_a_linear_critic():
    # critic(x) = sum(w * x) has gradient w everywhere, so the penalty is (||w|| - 1)^2.
    w = tf.constant(np.full((1, 2, 2, 1), 1.5, np.float32))  # ||w|| = 3
    x = tf.random.normal((5, 2, 2, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        scores = tf.reduce_sum(w * x, axis=[1, 2, 3])
    assert value(gradient_penalty_from_gradients(tape.gradient(scores, x))) == pytest.approx(4.0, rel=1e-5)
    unit = tf.constant(np.full((3, 2, 2, 1), 0.5, np.float32))  # norm 1: no penalty
    assert value(gradient_penalty_from_gradients(unit)) == pytest.approx(0.0, abs=1e-6)


def test_get_loss_names():
    assert isinstance(get_loss("bce", 0.2), NonSaturatingLoss) and get_loss("bce", 0.2).label_smoothing == 0.2
    assert get_loss("wgan-gp").uses_gradient_penalty
    assert isinstance(get_loss("hinge"), HingeLoss)
    assert get_loss("rpgan").relativistic and not get_loss("bce").relativistic
    with pytest.raises(ValueError, match="Unknown GAN loss"):
        get_loss("lsgan")


def test_r1_of_a_linear_critic_is_the_squared_weight_norm():
    import tensorflow as tf

    from training.losses import r1_penalty_from_gradients

    w = np.random.default_rng(0).normal(size=(1, 4, 4, 1)).astype("float32")
    real = tf.constant(np.random.default_rng(1).normal(size=(5, 4, 4, 1)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(real)
        total = tf.reduce_sum(real * w)  # D(x) = <w, x>, so grad D = w for every sample
    np.testing.assert_allclose(float(r1_penalty_from_gradients(tape.gradient(total, real))), np.sum(w**2), rtol=1e-5)


def test_rpgan_pairs_each_real_with_its_fake():
    # softplus(-(D(x_r) - D(x_f))) pair by pair: [2 - (-1), 0.5 - 0] = [3, 0.5]
    real, fake = tf.constant([[2.0], [0.5]]), tf.constant([[-1.0], [0.0]])
    softplus = lambda t: math.log1p(math.exp(t))  # noqa: E731
    loss = RelativisticPairedLoss()
    assert value(loss.discriminator_loss(real, fake)) == pytest.approx((softplus(-3) + softplus(-0.5)) / 2, rel=1e-5)
    assert value(loss.generator_loss(fake, real)) == pytest.approx((softplus(3) + softplus(0.5)) / 2, rel=1e-5)
    # Pairing, not batch means: the same logits matched differently give another loss.
    swapped = tf.constant([[0.0], [-1.0]])
    assert value(loss.discriminator_loss(real, swapped)) != pytest.approx(value(loss.discriminator_loss(real, fake)))
    with pytest.raises(ValueError, match="real_logits"):
        loss.generator_loss(fake)


def test_r1_and_r2_of_a_linear_critic_come_from_one_pass_over_reals_and_fakes():
    import keras

    from training.gan import GAN
    from training.models import build_generator

    w = np.random.default_rng(0).normal(size=(16, 1)).astype("float32")
    critic = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                               keras.layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant(w))])
    gan = GAN(build_generator(8, 1, latent_dim=4, width=2), critic, latent_dim=4, ema_kimg=0)
    gan.compile(d_optimizer=keras.optimizers.Adam(), g_optimizer=keras.optimizers.Adam(), r1_gamma=1.0, r2_gamma=1.0)
    real = tf.random.normal((3, 4, 4, 1))
    fake = 5.0 * tf.random.normal((3, 4, 4, 1))
    r1, r2 = gan._zero_centred_penalties(real, fake, None)  # grad D = w for every image, real or fake
    assert value(r1) == pytest.approx(float(np.sum(w**2)), rel=1e-5)
    assert value(r2) == pytest.approx(float(np.sum(w**2)), rel=1e-5)
    # A critic whose slope differs on fakes: D(x) = <w, x^2 / 2> has gradient w * x, image by image.
    squared = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Lambda(lambda x: 0.5 * x * x),
                                keras.layers.Flatten(), keras.layers.Dense(1, use_bias=False,
                                kernel_initializer=keras.initializers.Constant(w))])
    gan.discriminator = squared
    r1, r2 = gan._zero_centred_penalties(real, fake, None)
    flat = lambda t: tf.reshape(t, (3, 16)).numpy()  # noqa: E731
    expected = lambda x: float(np.mean(np.sum((flat(x) * w[:, 0]) ** 2, axis=1)))  # noqa: E731
    assert value(r1) == pytest.approx(expected(real), rel=1e-4)
    assert value(r2) == pytest.approx(expected(fake), rel=1e-4)
