import math

import numpy as np
import pytest
import tensorflow as tf

from training.losses import HingeLoss, NonSaturatingLoss, WassersteinLoss, get_loss, gradient_penalty_from_gradients


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
