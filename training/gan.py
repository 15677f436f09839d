"""The GAN: a `keras.Model` that owns a generator, a discriminator and an EMA copy of the generator.

`fit` drives it; `train_step` reads like the algorithm: update the discriminator `d_steps` times
(on DiffAugmented real and fake images, with lazy R1/R2 penalties every `r1_every` steps), update the
generator through the same augmentations, move the EMA, update the trackers, return the logs.

Batches are dicts made by `training.data.make_pipeline`: `images`, optional `labels`, and the
step's randomness (`noise`, `mix`, `augment`) derived from the position in the data stream. Randomness that
comes with the batch is identical however the global batch is split across replicas, and identical
again after a resume.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from training.augment import diff_augment, parse_policy
from training.ema import ema_decay as half_life_decay
from training.ema import recalibrate_batchnorm
from training.losses import GANLoss, get_loss, gradient_penalty_from_gradients, r1_penalty_from_gradients


def read_scalar(variable) -> float | int:
    """A scalar Keras variable's value as a Python number, under any strategy (a mirrored
    variable refuses int()/float() under MultiWorkerMirroredStrategy)."""
    return tf.identity(getattr(variable, "value", variable)).numpy().item()


def _dense(grads):
    """Class-embedding gradients arrive as IndexedSlices; their cross-replica gather clashes with
    the other collectives of the step (TF aborts with "Collective instance ... expected type").
    The tables are tiny, so all-reducing them dense is both safe and cheap."""
    return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]


@keras.saving.register_keras_serializable(package="gan")
class GAN(keras.Model):
    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        ema_generator: keras.Model | None = None,
        latent_dim: int = 64,
        num_classes: int | None = None,
        ema_kimg: float = 10.0,
        ema_rampup: float | None = 0.05,
        ema_decay: float | None = None,
        **kwargs,
    ):
        """EMA: a half-life of `ema_kimg` thousand images with `ema_rampup` (see `training.ema`);
        `ema_decay`, when given, is a fixed per-step decay instead. Either 0 disables the EMA."""
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.ema_kimg, self.ema_rampup, self.ema_decay = ema_kimg, ema_rampup, ema_decay
        use_ema = bool(ema_decay if ema_decay is not None else ema_kimg)
        if use_ema and ema_generator is None:
            ema_generator = keras.models.clone_model(generator)
            ema_generator.set_weights(generator.get_weights())
        self.ema_generator = ema_generator if use_ema else None
        self._calibrated_at = None  # the step the EMA generator's BatchNorm statistics were estimated at
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_real_tracker = keras.metrics.Mean(name="d_real")
        self.d_fake_tracker = keras.metrics.Mean(name="d_fake")
        self.gp_tracker = keras.metrics.Mean(name="gp")
        self.r1_tracker = keras.metrics.Mean(name="r1")
        self.r2_tracker = keras.metrics.Mean(name="r2")
        # Train steps taken: the data position and the checkpoint step. Optimizer counters are not
        # (a loss-scaled step that overflows is skipped by the optimizer but still consumed data).
        self.global_step = self.add_weight(name="global_step", shape=(), dtype="int64", initializer="zeros",
                                           trainable=False, aggregation="only_first_replica")
        self.built = True  # the sub-models are functional models, built on creation

    @property
    def step(self) -> int:
        """Train steps taken so far, as a Python int (readable under any strategy)."""
        return int(read_scalar(self.global_step))

    @property
    def sampler(self) -> keras.Model:
        """The generator that is sampled, saved and exported: the EMA one when EMA is on, its
        BatchNorm statistics re-estimated for its weights whenever they moved since last asked."""
        if self.ema_generator is None:
            return self.generator
        if self._calibrated_at != self.step:
            recalibrate_batchnorm(self.ema_generator, self.num_classes)
            self._calibrated_at = self.step
        return self.ema_generator

    @property
    def conditional(self) -> bool:
        return bool(self.num_classes)

    def call(self, inputs, training=False):
        """`gan(z)` or `gan([z, label])` samples images from the EMA generator."""
        return self.sampler(inputs, training=training)

    def compile(
        self,
        d_optimizer: keras.optimizers.Optimizer,
        g_optimizer: keras.optimizers.Optimizer,
        loss: GANLoss | str = "bce",
        gp_weight: float = 10.0,
        d_steps: int = 1,
        augment: str | tuple[str, ...] = (),
        r1_gamma: float = 0.0,
        r1_every: int = 16,
        r2_gamma: float = 0.0,
        **kwargs,
    ):
        """`kwargs` go to `Model.compile` (`jit_compile`, `steps_per_execution`); no default optimizer.

        `augment`: DiffAugment policy (`"translation,cutout,color"`); `r1_gamma`: R1 weight
        (`gamma / 2 * E||grad D(real)||^2`), `r2_gamma`: the same on fake images (R2, as R3GAN),
        both applied every `r1_every` steps scaled by `r1_every` (1: every step)."""
        super().compile(optimizer=None, **kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = get_loss(loss) if isinstance(loss, str) else loss
        self.gp_weight = gp_weight if self.loss_fn.uses_gradient_penalty else 0.0
        self.d_steps = d_steps
        self.augment_policy = parse_policy(augment) if isinstance(augment, str) else tuple(augment)
        self.r1_gamma, self.r1_every, self.r2_gamma = r1_gamma, r1_every, r2_gamma
        # Build optimizer state now, eagerly, inside the caller's strategy scope: Adam's slots
        # created inside a traced replica step fail under a strategy (keras#23085).
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    @property
    def metrics(self):
        trackers = [self.d_loss_tracker, self.g_loss_tracker, self.d_real_tracker, self.d_fake_tracker]
        trackers += [self.gp_tracker] if getattr(self, "gp_weight", 0.0) else []
        trackers += [self.r1_tracker] if getattr(self, "r1_gamma", 0.0) else []
        return trackers + ([self.r2_tracker] if getattr(self, "r2_gamma", 0.0) else [])

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Our sub-models are built on creation. Keras's pre-fit symbolic build would pull a batch
        # from the training iterator (shifting the data position) and, under
        # MultiWorkerMirroredStrategy, reduce it across workers eagerly (keras#20585).
        if self.built:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    # -- the algorithm -------------------------------------------------------------------------

    def _generator_inputs(self, z, labels):
        return [z, labels] if self.conditional else z

    def _critic(self, images, labels):
        inputs = [images, labels] if self.conditional else images
        return self.discriminator(inputs, training=True)

    def _augment(self, images, randoms):
        return diff_augment(images, randoms, self.augment_policy) if self.augment_policy else images

    @property
    def _penalised(self) -> bool:
        return bool(self.r1_gamma or self.r2_gamma)

    def _zero_centred_penalties(self, real, fake, labels):
        """(R1, R2): E ||d D(x) / d x||^2 on real and on fake images, from one critic pass over
        both (the critic has no batch statistics, so each image's gradient is its own), through
        the weights as they are (no spectral-norm step)."""
        both = ops.concatenate([tf.identity(real), tf.identity(fake)], axis=0)  # re-made: watchable in tf.cond
        both_labels = None if labels is None else ops.concatenate([labels, labels], axis=0)
        gradients = ops.split(self.critic_input_gradients(both, both_labels, training=False), 2, axis=0)
        return r1_penalty_from_gradients(gradients[0]), r1_penalty_from_gradients(gradients[1])

    def _lazy_penalties(self, real, fake, labels, due):
        """R1 and R2 on the steps they are due (every `r1_every`), zeros in between."""
        if self.r1_every == 1:
            return self._zero_centred_penalties(real, fake, labels)
        zeros = lambda: (ops.zeros(()), ops.zeros(()))  # noqa: E731
        return tf.cond(due, lambda: self._zero_centred_penalties(real, fake, labels), zeros)

    def train_step(self, batch):
        real_images, labels = batch["images"], batch.get("labels")
        noise, mix = batch["noise"], batch["mix"]
        augment = batch.get("augment")
        penalty_due = ops.equal(self.global_step % self.r1_every, 0) if self._penalised else None
        # Replica gradients are summed, so each replica's mean loss is scaled by 1/N exactly once;
        # `scale_loss` is the identity except under mixed_float16 (LossScaleOptimizer).
        replica_scale = 1.0 / tf.distribute.get_strategy().num_replicas_in_sync

        for step in range(self.d_steps):
            fake = self.generator(self._generator_inputs(noise[:, step], labels), training=True)
            if self.augment_policy:
                real, fake = self._augment(real_images, augment[:, step, 0]), self._augment(fake, augment[:, step, 1])
            else:
                real = real_images
            with tf.GradientTape() as tape:
                # One critic pass over [real; fake]: bigger convolutions run faster than two halves,
                # and the critic has no batch statistics, so the result is the same.
                both_labels = None if labels is None else ops.concatenate([labels, labels], axis=0)
                logits = self._critic(ops.concatenate([real, fake], axis=0), both_labels)
                real_logits, fake_logits = ops.split(logits, 2, axis=0)
                d_loss = self.loss_fn.discriminator_loss(real_logits, fake_logits)
                penalty = ops.zeros(())
                if self.gp_weight:
                    penalty = self._gradient_penalty(real, fake, labels, mix[:, step])
                total = d_loss + self.gp_weight * penalty
                if self._penalised and step == 0:  # lazy: every r1_every steps, weighted up to match
                    r1, r2 = self._lazy_penalties(real, fake, labels, penalty_due)
                    total += (0.5 * self.r1_every) * (self.r1_gamma * r1 + self.r2_gamma * r2)
                scaled_d_loss = self.d_optimizer.scale_loss(total * replica_scale)
            grads = tape.gradient(scaled_d_loss, self.discriminator.trainable_variables)
            self.d_optimizer.apply(_dense(grads), self.discriminator.trainable_variables)

        with tf.GradientTape() as tape:
            fake = self.generator(self._generator_inputs(noise[:, self.d_steps], labels), training=True)
            if self.augment_policy:
                fake = self._augment(fake, augment[:, self.d_steps, 1])
            g_loss = self._generator_loss(real, fake, labels)
            scaled_g_loss = self.g_optimizer.scale_loss(g_loss * replica_scale)
        grads = tape.gradient(scaled_g_loss, self.generator.trainable_variables)
        self.g_optimizer.apply(_dense(grads), self.generator.trainable_variables)
        self.global_step.assign_add(1)
        self._update_ema(ops.shape(real_images)[0] * tf.distribute.get_strategy().num_replicas_in_sync)

        # Trackers get the unscaled per-replica means; Mean's sum-aggregated state averages them.
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.d_real_tracker.update_state(ops.mean(real_logits))
        self.d_fake_tracker.update_state(ops.mean(fake_logits))
        if self.gp_weight:
            self.gp_tracker.update_state(penalty)
        if self._penalised:
            due = ops.cast(penalty_due, "float32")
            for gamma, tracker, value in ((self.r1_gamma, self.r1_tracker, r1), (self.r2_gamma, self.r2_tracker, r2)):
                if gamma:
                    tracker.update_state(value, sample_weight=due)
        logs = {m.name: m.result() for m in self.metrics}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces multi-worker logs with a mean over axis 0, which scalars lack (keras#20585).
            logs = {k: ops.reshape(v, (1,)) for k, v in logs.items()}
        return logs

    def _generator_loss(self, real, fake, labels):
        """The generator's objective; a relativistic loss also needs the critic on the reals."""
        if not self.loss_fn.relativistic:
            return self.loss_fn.generator_loss(self._critic(fake, labels))
        both_labels = None if labels is None else ops.concatenate([labels, labels], axis=0)
        real_logits, fake_logits = ops.split(self._critic(ops.concatenate([real, fake], axis=0), both_labels), 2)
        return self.loss_fn.generator_loss(fake_logits, real_logits)

    def _gradient_penalty(self, real, fake, labels, mix):
        mix = ops.reshape(mix, (-1, 1, 1, 1))
        return gradient_penalty_from_gradients(self.critic_input_gradients(real + mix * (fake - real), labels))

    def critic_input_gradients(self, images, labels, training: bool = True):
        """d D(x_i) / d x_i for each image (the critic has no batch statistics: the gradient of the
        sum is each image's own), for the gradient penalty and R1.

        Under mixed_float16 this inner gradient runs back through float16 layers like any other and
        would underflow unscaled, so it is scaled by the discriminator optimizer's loss scale and
        unscaled right after; an overflow makes the outer gradients non-finite, and
        LossScaleOptimizer then skips the step and lowers the scale.
        """
        scale = ops.cast(self.d_optimizer.dynamic_scale, "float32") \
            if isinstance(self.d_optimizer, keras.optimizers.LossScaleOptimizer) else None
        with tf.GradientTape() as tape:
            tape.watch(images)
            scores = self.discriminator([images, labels] if self.conditional else images, training=training)
            total = ops.sum(ops.cast(scores, "float32"))
            if scale is not None:
                total = total * scale
        gradients = tape.gradient(total, images)
        return gradients if scale is None else gradients / scale

    def _update_ema(self, global_batch):
        if self.ema_generator is None:
            return
        step = ops.cast(self.global_step, "float32")
        if self.ema_decay is not None:
            # A fixed decay, with tf.train.ExponentialMovingAverage's warm-up (num_updates=step).
            decay = ops.minimum(self.ema_decay, (1.0 + step) / (10.0 + step))
        else:
            batch = ops.cast(global_batch, "float32")
            decay = half_life_decay(batch, step * batch, self.ema_kimg, self.ema_rampup)
        for ema_var, var in zip(self.ema_generator.trainable_variables, self.generator.trainable_variables):
            ema_var.assign(decay * ema_var + (1.0 - decay) * var)
        # BatchNorm statistics are not averaged: `sampler` re-estimates them for the EMA weights.

    # -- serialization ------------------------------------------------------------------------

    def get_config(self):
        return {
            **super().get_config(),
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "latent_dim": self.latent_dim,
            "num_classes": self.num_classes,
            "ema_kimg": self.ema_kimg,
            "ema_rampup": self.ema_rampup,
            "ema_decay": self.ema_decay,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("generator", "discriminator"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
