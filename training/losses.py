"""GAN objectives on raw logits, written with `keras.ops`.

Every function returns the *mean over the examples it is given* (one replica's share of the batch).
Scaling for distribution (1/num_replicas, because replica gradients are summed) is done exactly once,
in `GAN.train_step`, and never here: that keeps these functions testable on small known cases and
avoids the Keras >= 3.8 trap where built-in `Loss` objects scale themselves but hand-written means
do not.
"""

from __future__ import annotations

import keras
from keras import ops


class GANLoss:
    """A pair of objectives: what the discriminator minimises and what the generator minimises.

    `relativistic` losses compare each fake with a real one, so the generator's objective needs the
    critic's logits on real images too (`generator_loss(fake_logits, real_logits)`)."""

    name = "base"
    uses_gradient_penalty = False
    relativistic = False

    def discriminator_loss(self, real_logits, fake_logits):
        raise NotImplementedError

    def generator_loss(self, fake_logits, real_logits=None):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"name": self.name}


class NonSaturatingLoss(GANLoss):
    """Goodfellow et al.'s non-saturating BCE; `label_smoothing` softens real targets to 1 - s."""

    name = "bce"

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def discriminator_loss(self, real_logits, fake_logits):
        real_target = ops.full_like(real_logits, 1.0 - self.label_smoothing)
        real = keras.losses.binary_crossentropy(real_target, real_logits, from_logits=True)
        fake = keras.losses.binary_crossentropy(ops.zeros_like(fake_logits), fake_logits, from_logits=True)
        return ops.mean(real) + ops.mean(fake)

    def generator_loss(self, fake_logits, real_logits=None):
        return ops.mean(
            keras.losses.binary_crossentropy(ops.ones_like(fake_logits), fake_logits, from_logits=True)
        )

    def get_config(self) -> dict:
        return {"name": self.name, "label_smoothing": self.label_smoothing}


class WassersteinLoss(GANLoss):
    """WGAN critic objective; pair with `gradient_penalty` (WGAN-GP, Gulrajani et al. 2017)."""

    name = "wgan-gp"
    uses_gradient_penalty = True

    def discriminator_loss(self, real_logits, fake_logits):
        return ops.mean(fake_logits) - ops.mean(real_logits)

    def generator_loss(self, fake_logits, real_logits=None):
        return -ops.mean(fake_logits)


class HingeLoss(GANLoss):
    """Hinge loss as in SAGAN / BigGAN."""

    name = "hinge"

    def discriminator_loss(self, real_logits, fake_logits):
        return ops.mean(ops.relu(1.0 - real_logits)) + ops.mean(ops.relu(1.0 + fake_logits))

    def generator_loss(self, fake_logits, real_logits=None):
        return -ops.mean(fake_logits)


class RelativisticPairedLoss(GANLoss):
    """RpGAN (Jolicoeur-Martineau 2019; R3GAN, Huang et al. 2024): the critic scores how much more
    real each real image looks than the fake it is paired with, `softplus(-(D(x_r) - D(x_f)))`, and
    the generator the reverse. Its loss landscape has no mode-dropping local minima of the kind the
    classic loss has; with zero-centred penalties on reals *and* fakes (`--r1-gamma`, `--r2-gamma`)
    R3GAN covers all 1,000 StackedMNIST modes."""

    name = "rpgan"
    relativistic = True

    def discriminator_loss(self, real_logits, fake_logits):
        return ops.mean(ops.softplus(fake_logits - real_logits))

    def generator_loss(self, fake_logits, real_logits=None):
        if real_logits is None:
            raise ValueError("The relativistic loss pairs each fake with a real image: pass real_logits.")
        return ops.mean(ops.softplus(real_logits - fake_logits))


def gradient_penalty_from_gradients(gradients):
    """`mean((||grad||_2 - 1)^2)` over the batch, given d critic / d interpolated images."""
    squared = ops.sum(ops.square(gradients), axis=tuple(range(1, len(gradients.shape))))
    norm = ops.sqrt(squared + 1e-12)
    return ops.mean(ops.square(norm - 1.0))


def r1_penalty_from_gradients(gradients):
    """R1 (Mescheder et al., 2018): `mean(||grad||_2^2)` over the batch, given d critic / d real
    images. The caller weights it by `gamma / 2`."""
    return ops.mean(ops.sum(ops.square(gradients), axis=tuple(range(1, len(gradients.shape)))))


def get_loss(name: str, label_smoothing: float = 0.0) -> GANLoss:
    if name == "bce":
        return NonSaturatingLoss(label_smoothing)
    if name == "wgan-gp":
        return WassersteinLoss()
    if name == "hinge":
        return HingeLoss()
    if name == "rpgan":
        return RelativisticPairedLoss()
    raise ValueError(f"Unknown GAN loss {name!r}; choose bce, rpgan, wgan-gp or hinge.")
