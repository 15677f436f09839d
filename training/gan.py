"""The GAN: a `keras.Model` that owns a generator, a discriminator and an EMA copy of the generator.

`fit` drives it; `train_step` reads like the algorithm: update the discriminator `d_steps` times,
update the generator, move the EMA, update the trackers, return the logs.

Batches are dicts made by `training.data.make_pipeline`: `images`, optional `labels`, and the
step's randomness (`noise`, `mix`) derived from the position in the data stream. Randomness that
comes with the batch is identical however the global batch is split across replicas, and identical
again after a resume.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from training.losses import GANLoss, get_loss, gradient_penalty_from_gradients


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
        ema_decay: float = 0.999,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.ema_decay = ema_decay
        if ema_decay and ema_generator is None:
            ema_generator = keras.models.clone_model(generator)
            ema_generator.set_weights(generator.get_weights())
        self.ema_generator = ema_generator if ema_decay else None
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_real_tracker = keras.metrics.Mean(name="d_real")
        self.d_fake_tracker = keras.metrics.Mean(name="d_fake")
        self.gp_tracker = keras.metrics.Mean(name="gp")
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
        """The generator that is sampled, saved and exported: the EMA one when EMA is on."""
        return self.ema_generator if self.ema_generator is not None else self.generator

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
        **kwargs,
    ):
        """`kwargs` go to `Model.compile` (`jit_compile`, `steps_per_execution`); no default optimizer."""
        super().compile(optimizer=None, **kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = get_loss(loss) if isinstance(loss, str) else loss
        self.gp_weight = gp_weight if self.loss_fn.uses_gradient_penalty else 0.0
        self.d_steps = d_steps
        # Build optimizer state now, eagerly, inside the caller's strategy scope: Adam's slots
        # created inside a traced replica step fail under a strategy (keras#23085).
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    @property
    def metrics(self):
        trackers = [self.d_loss_tracker, self.g_loss_tracker, self.d_real_tracker, self.d_fake_tracker]
        return trackers + ([self.gp_tracker] if getattr(self, "gp_weight", 0.0) else [])

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

    def train_step(self, batch):
        real, labels = batch["images"], batch.get("labels")
        noise, mix = batch["noise"], batch["mix"]
        # Replica gradients are summed, so each replica's mean loss is scaled by 1/N exactly once;
        # `scale_loss` is the identity except under mixed_float16 (LossScaleOptimizer).
        replica_scale = 1.0 / tf.distribute.get_strategy().num_replicas_in_sync

        for step in range(self.d_steps):
            fake = self.generator(self._generator_inputs(noise[:, step], labels), training=True)
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
                scaled_d_loss = self.d_optimizer.scale_loss((d_loss + self.gp_weight * penalty) * replica_scale)
            grads = tape.gradient(scaled_d_loss, self.discriminator.trainable_variables)
            self.d_optimizer.apply(_dense(grads), self.discriminator.trainable_variables)

        with tf.GradientTape() as tape:
            fake = self.generator(self._generator_inputs(noise[:, self.d_steps], labels), training=True)
            g_loss = self.loss_fn.generator_loss(self._critic(fake, labels))
            scaled_g_loss = self.g_optimizer.scale_loss(g_loss * replica_scale)
        grads = tape.gradient(scaled_g_loss, self.generator.trainable_variables)
        self.g_optimizer.apply(_dense(grads), self.generator.trainable_variables)
        self.global_step.assign_add(1)
        self._update_ema()

        # Trackers get the unscaled per-replica means; Mean's sum-aggregated state averages them.
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.d_real_tracker.update_state(ops.mean(real_logits))
        self.d_fake_tracker.update_state(ops.mean(fake_logits))
        if self.gp_weight:
            self.gp_tracker.update_state(penalty)
        logs = {m.name: m.result() for m in self.metrics}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces multi-worker logs with a mean over axis 0, which scalars lack (keras#20585).
            logs = {k: ops.reshape(v, (1,)) for k, v in logs.items()}
        return logs

    def _gradient_penalty(self, real, fake, labels, mix):
        mix = ops.reshape(mix, (-1, 1, 1, 1))
        interpolated = real + mix * (fake - real)
        with tf.GradientTape() as tape:
            tape.watch(interpolated)
            scores = self._critic(interpolated, labels)
        return gradient_penalty_from_gradients(tape.gradient(scores, interpolated))

    def _update_ema(self):
        if self.ema_generator is None:
            return
        # Warm-up as in tf.train.ExponentialMovingAverage(num_updates=...): short runs are not
        # dominated by the random initial weights.
        step = ops.cast(self.global_step, "float32")
        decay = ops.minimum(self.ema_decay, (1.0 + step) / (10.0 + step))
        for ema_var, var in zip(self.ema_generator.trainable_variables, self.generator.trainable_variables):
            ema_var.assign(decay * ema_var + (1.0 - decay) * var)
        # BatchNorm moving statistics are copied, not averaged.
        for ema_var, var in zip(self.ema_generator.non_trainable_variables,
                                self.generator.non_trainable_variables):
            ema_var.assign(var)

    # -- serialization ------------------------------------------------------------------------

    def get_config(self):
        return {
            **super().get_config(),
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "latent_dim": self.latent_dim,
            "num_classes": self.num_classes,
            "ema_decay": self.ema_decay,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("generator", "discriminator"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
