"""mixed_float16 with LossScaleOptimizer: the GPU path of --mixed-precision, run on CPU here by setting
the policy directly (the CLI picks bfloat16 on CPU)."""

from __future__ import annotations

import keras
import numpy as np

from training.config import TrainConfig
from training.precision import global_dtype_policy


def test_wgan_gp_trains_two_steps_under_mixed_float16_on_cpu():
    from training.data import load_data, make_pipeline
    from training.trainer import build_gan

    config = TrainConfig(width=4, latent_dim=8, batch_size=16, loss="wgan-gp", d_steps=2, image_size=28, channels=1)
    data = load_data("mnist-sample")
    data.images = data.images[:64]
    keras.utils.set_random_seed(0)
    with global_dtype_policy("mixed_float16"):
        gan = build_gan(config, None)
        assert isinstance(gan.d_optimizer, keras.optimizers.LossScaleOptimizer)
        assert gan.discriminator.layers[1].compute_dtype == "float16"
        before = [w.copy() for w in gan.generator.get_weights() + gan.discriminator.get_weights()]
        history = gan.fit(make_pipeline(data, 16, 8, config.d_steps, seed=0), steps_per_epoch=2, epochs=1,
                          verbose=0, shuffle=False)
    assert gan.step == 2
    for key in ("d_loss", "g_loss", "gp"):
        assert np.isfinite(history.history[key]).all(), (key, history.history[key])
    after = gan.generator.get_weights() + gan.discriminator.get_weights()
    assert all(np.isfinite(w).all() for w in after)
    moved = [float(np.abs(a.astype(np.float32) - b.astype(np.float32)).max()) for a, b in zip(after, before)]
    n_generator = len(gan.generator.get_weights())
    assert max(moved[:n_generator]) > 0 and max(moved[n_generator:]) > 0, "a loss-scaled step was skipped"


def _tiny_critic(kernel: float, dense: float) -> keras.Model:
    """A critic whose d score / d pixel is about 18 * kernel * dense: below float16's smallest
    subnormal (6e-8) for the values below, so only a loss-scaled backward pass keeps it."""
    images = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, padding="same", use_bias=False,
                            kernel_initializer=keras.initializers.Constant(kernel))(images)
    x = keras.layers.Flatten()(x)
    logits = keras.layers.Dense(1, dtype="float32", kernel_initializer=keras.initializers.Constant(dense))(x)
    return keras.Model(images, logits)


def _critic_input_gradients(policy: str, images: np.ndarray) -> np.ndarray:
    """The inner gradient of the GAN's gradient penalty, under `policy` (loss-scaled with float16)."""
    from training.gan import GAN
    from training.losses import get_loss
    from training.models import build_generator

    with global_dtype_policy(policy):
        critic = _tiny_critic(1e-5, 1e-4)
        gan = GAN(build_generator(8, 1, 4, 4), critic, latent_dim=4, ema_kimg=0.0)
        d_optimizer, g_optimizer = keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.0)
        if policy == "mixed_float16":
            d_optimizer = keras.optimizers.LossScaleOptimizer(d_optimizer)
            g_optimizer = keras.optimizers.LossScaleOptimizer(g_optimizer)
        gan.compile(d_optimizer=d_optimizer, g_optimizer=g_optimizer, loss=get_loss("wgan-gp"))
        gradients = gan.critic_input_gradients(keras.ops.convert_to_tensor(images), None)
    return keras.ops.convert_to_numpy(gradients)


def test_the_gradient_penalty_inner_gradient_is_loss_scaled_under_mixed_float16():
    images = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 1)).astype(np.float32)
    reference = _critic_input_gradients("float32", images)
    mixed = _critic_input_gradients("mixed_float16", images)
    assert 1e-9 < np.abs(reference).max() < 6e-8  # below float16's smallest subnormal: zero unscaled
    np.testing.assert_allclose(mixed, reference, rtol=0.02, atol=1e-10)
