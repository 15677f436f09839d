"""The training loop: config -> data -> strategy -> GAN -> `fit` -> run directory.

Everything here is orchestration; the algorithm lives in `gan.py`, the networks in `models.py`,
dtype policies in `precision.py`. `train` reads as its steps, in the order they must happen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras

from training.callbacks import (Checkpoint, Evaluation, HistoryWriter, LearningRateDecay, RunProgress, SampleGrid,
                                Throughput, TimeBudget, tensorboard_callbacks)
from training.config import ConfigError, TrainConfig, absolute_path, default_output_dir
from training.data import ImageData, load_data, load_held_out, make_pipeline
from training.guards import DivergenceGuard, PreemptionGuard
from training.gan import GAN
from common.atomic import remove_stale, staging_dir
from common.grid import sample_inputs
from training.losses import get_loss
from training.models import discriminator_for, generator_for, rewrite_saved_file
from training.precision import float32_generator, precision_policy, weights_digest
from training import sigterm
from training.rundir import RunDirectory
from training.strategy import check_batch_size, is_chief, make_strategy, worker_agreement


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
    began: bool = True  # False: stopped (SIGTERM) before the first training step


@dataclass
class TrainingCallbacks:
    """The callbacks `fit` runs, in order, and the ones the resume loop asks whether to stop."""

    ordered: list[keras.callbacks.Callback]
    checkpoint: Checkpoint
    budget: TimeBudget | None
    preemption: PreemptionGuard | None

    @property
    def stopped(self) -> bool:
        return bool(self.budget and self.budget.triggered) or self.preempted

    @property
    def preempted(self) -> bool:
        return bool(self.preemption and self.preemption.preempted)


def train(config: TrainConfig) -> RunResult:
    """Train per `config`, resuming from the run directory's last checkpoint when there is one.
    A SIGTERM at any point stops at the next safe one (see `training.sigterm`)."""
    with sigterm.noted():
        return _train(config)


def _train(config: TrainConfig) -> RunResult:
    started = time.time()
    config.validate()
    strategy = make_strategy(config.strategy, config)  # first: multi-worker must set up collectives before TF starts
    sigterm.reassert()  # the multi-worker runtime just replaced our SIGTERM handler with its own
    seed_everything(config)
    labelled, data = load_training_data(config)
    config = resolve(config, data)
    held_out = load_held_out(config.dataset, config.eval_reference_dir, config.image_size, config.channels,
                             labelled.class_names) if config.eval_every else None  # before the run dir exists
    check_batch_size(strategy, config.batch_size)
    steps_per_epoch = plan_epoch(config, data)
    total_steps = steps_per_epoch * config.epochs

    run = RunDirectory(config.output_dir)
    if sigterm.requested() and not is_multi_worker(strategy):  # nothing written yet
        return preempted_before_training(run, started)
    dataset = data.describe(config.dataset, config.data_dir)
    resume = run.check_compatible(config, config.overwrite, dataset)  # every worker: one decision, one error
    chief = is_chief(strategy)
    agree = worker_agreement(strategy) if is_multi_worker(strategy) else None  # stop decisions, all workers
    if agree:  # a barrier: no worker still reads the directory when the chief rewrites it (else a late
        agree([False])  # worker finds it half-made, "not a run directory", or resumes a run being replaced)
    if chief:
        run.create(config, resume, dataset)

    # Outside strategy.scope() and the dtype policy: float32 models only the chief holds (no collectives).
    evaluator = None
    if chief and config.eval_every:
        with random_state_kept():  # evaluation observes: one seed, one model, with or without it
            evaluator = build_evaluator(config, labelled, held_out, data.num_classes)
    if sigterm.requested() and not agree:  # the run directory resumes from where it was
        return preempted_before_training(run, started)
    with checkpoint_directory(run, chief) as backups:
        with precision_policy(config.mixed_precision) as policy, strategy.scope():
            gan = build_gan(config, data.num_classes)
            start_step = run.restore_checkpoint(gan, repair=chief) if resume else 0
            gan.d_optimizer.learning_rate = config.d_lr  # the checkpoint restored the old rates
            gan.g_optimizer.learning_rate = config.g_lr
            if chief:
                run.truncate_history(start_step // steps_per_epoch)
            _announce(config, data, strategy, steps_per_epoch, start_step, run, policy)
            callbacks = make_callbacks(config, gan, run, backups, evaluator, steps_per_epoch, chief,
                                       agree=agree)
            step = fit_until_done(gan, data, config, steps_per_epoch, total_steps, start_step, callbacks)
        generator = float32_generator(config, data.num_classes, gan.sampler)

    if chief and not callbacks.preempted:
        save_final_models(run, generator, gan)
    if agree:  # a last all-reduce, after the chief's saving: workers leave together (a worker left
        agree([False])  # waiting at exit for a busy chief can hang in TF's coordination shutdown)
    return RunResult(run.root, step, total_steps, bool(callbacks.budget and callbacks.budget.triggered),
                     time.time() - started, run.read_history() if chief else [], callbacks.preempted,
                     weights_digest(generator))


def preempted_before_training(run: RunDirectory, started: float) -> RunResult:
    """A SIGTERM before the first step: stop with nothing half-done; a rerun starts or resumes."""
    return RunResult(run.root, 0, 0, False, time.time() - started, [], preempted=True, began=False)


# -- the steps, in the order `train` takes them -------------------------------------------------


def seed_everything(config: TrainConfig) -> None:
    """Python, NumPy and TensorFlow seeds; op determinism with --deterministic."""
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def random_state_kept():
    """Run a block without moving the seeded streams the GAN's initial weights draw from (Python's
    `random`, which Keras initialisers take their seeds from, and NumPy's): what the block builds,
    such as `--eval-every`'s evaluator and float32 generator, then cannot change the trained model."""
    import random

    import numpy as np

    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def load_training_data(config: TrainConfig) -> tuple[ImageData, ImageData]:
    """(data with labels when there are any, what training sees). Evaluation's classifier uses
    labels even when training does not: the data is loaded once and shared."""
    labelled = load_data(config.dataset, config.data_dir, config.image_size, config.channels, config.conditional,
                         keep_labels=bool(config.eval_every))
    return labelled, labelled if config.conditional else labelled.without_labels()


def resolve(config: TrainConfig, data: ImageData) -> TrainConfig:
    """Fill in what defaults to the data (size, channels) or the loss (d_steps), and the run dir;
    data paths become absolute, so export and evaluation find the data from any directory."""
    return dataclasses.replace(
        config,
        data_dir=absolute_path(config.data_dir),
        eval_reference_dir=absolute_path(config.eval_reference_dir),
        image_size=int(data.images.shape[1]),
        channels=int(data.images.shape[-1]),
        d_steps=config.resolved_d_steps,
        output_dir=config.output_dir or default_output_dir(),
    )


def plan_epoch(config: TrainConfig, data: ImageData) -> int:
    """Steps per epoch: --steps-per-epoch, else as many whole batches as the data holds."""
    steps_per_epoch = config.steps_per_epoch or len(data) // config.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"--batch-size {config.batch_size} is larger than the dataset ({len(data)} images); "
            "lower --batch-size or set --steps-per-epoch."
        )
    return steps_per_epoch


def is_multi_worker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


@contextlib.contextmanager
def checkpoint_directory(run: RunDirectory, chief: bool):
    """Where this process writes checkpoints: the run directory on the chief. Non-chief workers
    take part in every checkpoint write (as the multi-worker guide prescribes) but into a private
    temporary directory, removed at the end (or, after a kill -9, by the next worker to start)."""
    if chief:
        yield run
        return
    remove_stale(tempfile.gettempdir())  # the private directories of workers killed earlier
    with staging_dir(tempfile.gettempdir(), "gan-worker-backup") as private:
        backups = RunDirectory(private)
        backups.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        yield backups


def build_gan(config: TrainConfig, num_classes: int | None) -> GAN:
    """Build and compile the GAN; call inside `strategy.scope()` (and the dtype policy in force)."""
    gan = GAN(
        generator=generator_for(config, num_classes),
        discriminator=discriminator_for(config, num_classes),
        latent_dim=config.latent_dim,
        num_classes=num_classes,
        ema_kimg=config.ema_kimg,
        ema_rampup=config.ema_rampup,
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
        augment=config.diffaugment,
        r1_gamma=config.r1_gamma,
        r1_every=config.r1_every,
        r2_gamma=config.r2_gamma,
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    return gan


def make_callbacks(config: TrainConfig, gan: GAN, run: RunDirectory, backups: RunDirectory, evaluator,
                   steps_per_epoch: int, chief: bool, agree=None) -> TrainingCallbacks:
    """The callbacks, in the order Keras runs them at each step and epoch end:

    0. (--lr-decay) LearningRateDecay sets the step's rates, and logs the epoch's `g_lr`;
    1. Throughput      adds img/s to the logs before anything reads them;
    2. DivergenceGuard raises on a NaN/Inf loss before anything is written from it;
    3. (chief) Evaluation, SampleGrid, TensorBoard, HistoryWriter, RunProgress: the epoch's records, which read
       the logs (Evaluation adds FID/KID to them, so it comes before the writers);
    4. Checkpoint      after the records: a crash between them makes a resumed run redo an epoch's
       records, never skip them;
    5. TimeBudget, PreemptionGuard: they stop the run, after the step's checkpoint decision.
    """
    checkpoint = Checkpoint(backups, config.checkpoint_every)
    budget = TimeBudget(config.max_minutes) if config.max_minutes else None
    # Multi-worker: the guard stops all workers at one agreed step, for SIGTERM and the chief's budget.
    preemption = PreemptionGuard(checkpoint.save, agree, budget if agree else None, chief)
    ordered = [Throughput(config.batch_size), DivergenceGuard(lambda: checkpoint.last_saved)]
    if config.lr_decay != "none":  # first, so that the epoch's logs carry the rate the writers record
        ordered.insert(0, LearningRateDecay(config.lr_decay, steps_per_epoch * config.epochs, config.d_lr,
                                            config.g_lr, config.lr_final))
    if chief:
        inputs, rows = sample_inputs(config.latent_dim, config.num_samples, gan.num_classes, config.seed)
        tensorboard, writer = tensorboard_callbacks(run.tensorboard_dir)
        if evaluator is not None:
            ordered.append(_evaluation(config, evaluator, gan, run))
        ordered += [SampleGrid(run, inputs, rows, writer), tensorboard, HistoryWriter(run, steps_per_epoch)]
        if config.verbose:
            ordered.append(RunProgress(steps_per_epoch * config.epochs, lambda: gan.step, budget))
    ordered += [checkpoint] + [c for c in (None if agree else budget, preemption) if c]
    return TrainingCallbacks(ordered, checkpoint, budget, preemption)


def fit_until_done(gan: GAN, data: ImageData, config: TrainConfig, steps_per_epoch: int, total_steps: int,
                   start_step: int, callbacks: TrainingCallbacks) -> int:
    """Run `fit` from `start_step` to `total_steps` (or until a callback stops it); return the step.

    A resumed run first finishes its interrupted epoch, then runs whole epochs; each `fit` gets a
    pipeline that starts exactly at the step it resumes from.
    """
    step = start_step
    while step < total_steps and not callbacks.stopped:
        if step != start_step and callbacks.preemption and callbacks.preemption.stop_between_fits():
            break
        epoch, offset = divmod(step, steps_per_epoch)
        dataset = make_pipeline(data, config.batch_size, config.latent_dim, config.d_steps, config.seed, step)
        gan.fit(
            dataset,
            initial_epoch=epoch,
            epochs=epoch + 1 if offset else config.epochs,
            steps_per_epoch=steps_per_epoch - offset if offset else steps_per_epoch,
            callbacks=callbacks.ordered,
            shuffle=False,  # the pipeline shuffles, deterministically per (seed, step)
            verbose=config.verbose,
        )
        step = gan.step
    return step


def save_final_models(run: RunDirectory, generator: keras.Model, gan: GAN) -> None:
    """The float32 (EMA) generator and the discriminator, for export and for fine-tuning."""
    run.save_model(generator, run.generator_path, rewrite_saved_file)  # loads with keras.models.load_model alone
    run.save_model(gan.discriminator, run.discriminator_path)
    print(f"Run directory: {run.root}  (generator: {run.generator_path.name}, "
          f"samples: {run.samples_dir.name}/, TensorBoard: tensorboard --logdir {run.tensorboard_dir})")


def build_evaluator(config: TrainConfig, real: ImageData, held_out: ImageData | None, num_classes: int | None):
    """`--eval-every`'s scorer and the float32 generator that keeps the best weights. The classifier
    learns from the run's own data; FID/KID compare with `held_out` when there is one, else with the
    training images (the evaluator says so in its warnings). Both are built here, outside
    strategy.scope(): a model built by the chief alone inside it would start a collective the other
    workers never join."""
    from metrics.evaluator import Evaluator
    from training.precision import global_dtype_policy

    reference = {} if held_out is None else {"reference_images": held_out.images, "reference_labels": held_out.labels}
    evaluator = Evaluator(real.images, real.labels, num_samples=config.eval_samples, seed=config.seed, **reference)
    against = (f"{evaluator.num_reference} held-out images" if held_out is not None
               else "the training images (no held-out set: see --eval-reference-dir)")
    print(f"evaluation: FID/KID every {config.eval_every} epoch(s) on {evaluator.num_samples} samples against "
          f"{against}; real-vs-real FID {evaluator.floor['fid']:.3f}; classifier {evaluator.classifier.describe()}",
          flush=True)
    for warning in evaluator.warnings(evaluator.num_samples):
        print(f"evaluation warning: {warning}", flush=True)
    with global_dtype_policy("float32"):
        best = generator_for(config, num_classes)
    return evaluator, best


def _evaluation(config: TrainConfig, evaluation, gan: GAN, run: RunDirectory):
    evaluator, best = evaluation

    def save_best(result):
        best.set_weights(gan.sampler.get_weights())
        run.save_best(best, result, rewrite_saved_file)
    return Evaluation(evaluator, config.eval_every, gan.num_classes, config.latent_dim, run, save_best)


def _announce(config, data, strategy, steps_per_epoch, start_step, run, policy):
    shape = f"{config.image_size}x{config.image_size}x{config.channels}"
    classes = f", {data.num_classes} classes" if data.num_classes else ""
    where = f"resuming at step {start_step}" if start_step else "new run"
    print(f"{config.dataset}: {len(data)} images {shape}{classes} | {config.loss} loss | "
          f"{strategy.num_replicas_in_sync} replica(s), global batch {config.batch_size} | "
          f"{config.epochs} epochs x {steps_per_epoch} steps | {policy} | {where} in {run.root}", flush=True)
