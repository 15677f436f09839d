"""The training loop: config -> data -> strategy -> GAN -> `fit` -> run directory.

Everything here is orchestration; the algorithm lives in `gan.py`, the networks in `models.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from training.callbacks import (Checkpoint, Evaluation, HistoryWriter, SampleGrid, Throughput, TimeBudget,
                                tensorboard_callbacks)
from training.config import ConfigError, TrainConfig
from training.data import ImageData, load_data, make_pipeline
from training.guards import DivergenceGuard, PreemptionGuard
from training.gan import GAN
from common.grid import sample_inputs
from training.losses import get_loss
from training.models import build_discriminator, build_generator
from training.rundir import RunDirectory
from training.strategy import check_batch_size, is_chief, make_strategy


@dataclass
class RunResult:
    run_dir: Path
    global_step: int
    total_steps: int
    stopped_early: bool
    wall_seconds: float
    history: list[dict]
    preempted: bool = False
    generator_digest: str = ""


def resolve(config: TrainConfig, data: ImageData) -> TrainConfig:
    """Fill in what defaults to the data (size, channels) or the loss (d_steps), and the run dir."""
    return dataclasses.replace(
        config,
        image_size=int(data.images.shape[1]),
        channels=int(data.images.shape[-1]),
        d_steps=config.resolved_d_steps,
        output_dir=config.output_dir or str(Path("runs") / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")),
    )


def build_gan(config: TrainConfig, num_classes: int | None) -> GAN:
    """Build and compile the GAN; call inside `strategy.scope()` (and the dtype policy in force)."""
    shape = dict(image_size=config.image_size, channels=config.channels, width=config.width, num_classes=num_classes)
    gan = GAN(
        generator=build_generator(latent_dim=config.latent_dim, **shape),
        discriminator=build_discriminator(**shape),
        latent_dim=config.latent_dim,
        num_classes=num_classes,
        ema_decay=config.ema_decay,
    )
    adam = dict(beta_1=config.beta_1, beta_2=config.beta_2)
    d_optimizer = keras.optimizers.Adam(config.d_lr, **adam)
    g_optimizer = keras.optimizers.Adam(config.g_lr, **adam)
    if keras.mixed_precision.global_policy().name == "mixed_float16":  # float16 gradients underflow unscaled
        d_optimizer = keras.optimizers.LossScaleOptimizer(d_optimizer)
        g_optimizer = keras.optimizers.LossScaleOptimizer(g_optimizer)
    gan.compile(
        d_optimizer=d_optimizer,
        g_optimizer=g_optimizer,
        loss=get_loss(config.loss, config.label_smoothing),
        gp_weight=config.gp_weight,
        d_steps=config.resolved_d_steps,
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    return gan


@contextlib.contextmanager
def global_dtype_policy(name: str):
    """Keras's global dtype policy set to `name` for the duration of the block."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield name
    finally:
        keras.mixed_precision.set_global_policy(previous)


def precision_policy(mixed: bool):
    """mixed_float16 on GPU, mixed_bfloat16 on CPU, float32 without --mixed-precision."""
    import tensorflow as tf

    if not mixed:
        return global_dtype_policy("float32")
    return global_dtype_policy("mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16")


def float32_generator(config: TrainConfig, num_classes: int | None, trained: keras.Model) -> keras.Model:
    """The trained weights in a float32 model: what is saved, exported and served."""
    with global_dtype_policy("float32"):
        generator = build_generator(config.image_size, config.channels, config.latent_dim, config.width, num_classes)
    generator.set_weights(trained.get_weights())
    return generator


def weights_digest(model: keras.Model) -> str:
    """SHA-256 over a model's weights: equal digests mean bit-identical models."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


def train(config: TrainConfig) -> RunResult:
    """Train per `config`, resuming from the run directory's last checkpoint when there is one."""
    import tensorflow as tf

    started = time.time()
    config.validate()
    strategy = make_strategy(config.strategy)  # first: multi-worker must set up collectives before TF starts
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    # Evaluation's classifier uses labels even when training does not: load once, keep them if any.
    labelled = load_data(config.dataset, config.data_dir, config.image_size, config.channels, config.conditional,
                         keep_labels=bool(config.eval_every))
    data = labelled if config.conditional else labelled.without_labels()
    config = resolve(config, data)
    check_batch_size(strategy, config.batch_size)
    steps_per_epoch = config.steps_per_epoch or len(data) // config.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"--batch-size {config.batch_size} is larger than the dataset ({len(data)} images); "
            "lower --batch-size or set --steps-per-epoch."
        )
    total_steps = steps_per_epoch * config.epochs

    run = RunDirectory(config.output_dir)
    resume = run.check_compatible(config, config.overwrite)
    chief = is_chief(strategy)
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    if chief:
        run.create(config, resume, data.describe(config.dataset))
    # Non-chief workers take part in every checkpoint write (as the multi-worker guide prescribes)
    # but into a private temporary directory, removed at the end.
    backups = run if chief else RunDirectory(tempfile.mkdtemp(prefix="gan-worker-backup-"))
    backups.checkpoints_dir.mkdir(parents=True, exist_ok=True)

    try:
        with precision_policy(config.mixed_precision) as policy, strategy.scope():
            gan = build_gan(config, data.num_classes)
            start_step = run.restore_checkpoint(gan) if resume else 0
            gan.d_optimizer.learning_rate = config.d_lr  # the checkpoint restored the old rates
            gan.g_optimizer.learning_rate = config.g_lr
            if chief:
                run.truncate_history(start_step // steps_per_epoch)
            _announce(config, data, strategy, steps_per_epoch, start_step, run, policy)

            checkpoint = Checkpoint(backups, config.checkpoint_every)
            budget = TimeBudget(config.max_minutes) if config.max_minutes else None
            preemption = None if multi_worker else PreemptionGuard(checkpoint.save)
            inputs, rows = sample_inputs(config.latent_dim, config.num_samples, data.num_classes, config.seed)
            callbacks = [Throughput(config.batch_size), DivergenceGuard(lambda: checkpoint.last_saved)]
            if chief:
                tensorboard, writer = tensorboard_callbacks(run.tensorboard_dir)
                if config.eval_every:
                    callbacks.append(_evaluation(config, labelled, gan, run))
                callbacks += [SampleGrid(run, inputs, rows, writer), tensorboard, HistoryWriter(run, steps_per_epoch)]
            callbacks += [checkpoint] + [c for c in (budget, preemption) if c]

            # A resumed run first finishes its interrupted epoch, then runs whole epochs.
            step = start_step
            while step < total_steps and not (budget and budget.triggered) and not (preemption and preemption.preempted):
                epoch, offset = divmod(step, steps_per_epoch)
                dataset = make_pipeline(data, config.batch_size, config.latent_dim, config.d_steps, config.seed, step)
                gan.fit(
                    dataset,
                    initial_epoch=epoch,
                    epochs=epoch + 1 if offset else config.epochs,
                    steps_per_epoch=steps_per_epoch - offset if offset else steps_per_epoch,
                    callbacks=callbacks,
                    shuffle=False,  # the pipeline shuffles, deterministically per (seed, step)
                    verbose=config.verbose,
                )
                step = gan.step
        generator = float32_generator(config, data.num_classes, gan.sampler)
    finally:
        if not chief:
            shutil.rmtree(backups.root, ignore_errors=True)

    preempted = bool(preemption and preemption.preempted)
    if chief and not preempted:
        run.save_model(generator, run.generator_path)
        run.save_model(gan.discriminator, run.discriminator_path)
        print(f"Run directory: {run.root}  (generator: {run.generator_path.name}, "
              f"samples: {run.samples_dir.name}/, TensorBoard: tensorboard --logdir {run.tensorboard_dir})")
    return RunResult(run.root, step, total_steps, bool(budget and budget.triggered), time.time() - started,
                     run.read_history() if chief else [], preempted, weights_digest(generator))


def _evaluation(config: TrainConfig, real: ImageData, gan: GAN, run: RunDirectory):
    """FID/KID during training against the run's own data (with its labels, when it has any)."""
    from training.evaluate import Evaluator

    evaluator = Evaluator(real, config.eval_samples, config.seed)
    print(f"evaluation: FID/KID every {config.eval_every} epoch(s) on {evaluator.num_samples} samples; "
          f"real-vs-real FID {evaluator.floor['fid']:.3f}; classifier {evaluator.classifier.describe()}", flush=True)

    def save_best(result):
        run.save_best(float32_generator(config, gan.num_classes, gan.sampler), result)
    return Evaluation(evaluator, config.eval_every, gan.conditional, config.latent_dim, run, save_best)


def _announce(config, data, strategy, steps_per_epoch, start_step, run, policy):
    shape = f"{config.image_size}x{config.image_size}x{config.channels}"
    classes = f", {data.num_classes} classes" if data.num_classes else ""
    where = f"resuming at step {start_step}" if start_step else "new run"
    print(f"{config.dataset}: {len(data)} images {shape}{classes} | {config.loss} loss | "
          f"{strategy.num_replicas_in_sync} replica(s), global batch {config.batch_size} | "
          f"{config.epochs} epochs x {steps_per_epoch} steps | {policy} | {where} in {run.root}", flush=True)
