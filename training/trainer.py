"""The training loop: config -> data -> strategy -> GAN -> `fit` -> run directory.

Everything here is orchestration; the algorithm lives in `gan.py`, the networks in `models.py`.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from dataclasses import dataclass
from pathlib import Path

import keras

from training.callbacks import (Checkpoint, HistoryWriter, SampleGrid, Throughput, TimeBudget,
                                sample_inputs, tensorboard_callbacks)
from training.config import ConfigError, TrainConfig
from training.data import ImageData, load_data, make_pipeline
from training.gan import GAN
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
    """Build and compile the GAN; call inside `strategy.scope()`."""
    shape = dict(image_size=config.image_size, channels=config.channels, width=config.width, num_classes=num_classes)
    gan = GAN(
        generator=build_generator(latent_dim=config.latent_dim, **shape),
        discriminator=build_discriminator(**shape),
        latent_dim=config.latent_dim,
        num_classes=num_classes,
        ema_decay=config.ema_decay,
    )
    adam = dict(beta_1=config.beta_1, beta_2=config.beta_2)
    gan.compile(
        d_optimizer=keras.optimizers.Adam(config.d_lr, **adam),
        g_optimizer=keras.optimizers.Adam(config.g_lr, **adam),
        loss=get_loss(config.loss, config.label_smoothing),
        gp_weight=config.gp_weight,
        d_steps=config.resolved_d_steps,
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    return gan


def train(config: TrainConfig) -> RunResult:
    """Train per `config`, resuming from the run directory's last checkpoint when there is one."""
    started = time.time()
    config.validate()
    keras.utils.set_random_seed(config.seed)
    data = load_data(config.dataset, config.data_dir, config.image_size, config.channels, config.conditional)
    config = resolve(config, data)
    strategy = make_strategy(config.strategy)
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
    if chief:
        run.create(config, resume, data.describe(config.dataset))

    with strategy.scope():
        gan = build_gan(config, data.num_classes)
    start_step = run.restore_checkpoint(gan) if resume else 0
    if chief:
        run.truncate_history(start_step // steps_per_epoch)
    _announce(config, data, strategy, steps_per_epoch, start_step, run)

    budget = TimeBudget(config.max_minutes) if config.max_minutes else None
    inputs, rows = sample_inputs(config.latent_dim, config.num_samples, data.num_classes, config.seed)
    callbacks = [Throughput(config.batch_size)]
    if chief:
        tensorboard, writer = tensorboard_callbacks(run.tensorboard_dir)
        callbacks += [SampleGrid(run, inputs, rows, writer), tensorboard, HistoryWriter(run, steps_per_epoch),
                      Checkpoint(run, config.checkpoint_every)]
    callbacks += [budget] if budget else []

    # A resumed run first finishes its interrupted epoch, then runs whole epochs.
    step = start_step
    while step < total_steps and not (budget and budget.triggered):
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
        step = int(gan.g_optimizer.iterations)

    if chief:
        run.save_model(gan.sampler, run.generator_path)
        run.save_model(gan.discriminator, run.discriminator_path)
        print(f"Run directory: {run.root}  (generator: {run.generator_path.name}, "
              f"samples: {run.samples_dir.name}/, TensorBoard: tensorboard --logdir {run.tensorboard_dir})")
    return RunResult(run.root, step, total_steps, bool(budget and budget.triggered),
                     time.time() - started, run.read_history() if chief else [])


def _announce(config, data, strategy, steps_per_epoch, start_step, run):
    shape = f"{config.image_size}x{config.image_size}x{config.channels}"
    classes = f", {data.num_classes} classes" if data.num_classes else ""
    where = f"resuming at step {start_step}" if start_step else "new run"
    print(f"{config.dataset}: {len(data)} images {shape}{classes} | {config.loss} loss | "
          f"{strategy.num_replicas_in_sync} replica(s), global batch {config.batch_size} | "
          f"{config.epochs} epochs x {steps_per_epoch} steps | {where} in {run.root}", flush=True)
