"""Keras callbacks that turn `fit` into a run a user can watch, stop and resume.

The order they run in matters: `trainer.make_callbacks` builds the list and documents why it is
what it is (records before the checkpoint, so a crash can only make a resumed run redo work, never
skip it).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
import numpy as np

from training.gan import read_scalar
from common.grid import save_grid
from training.rundir import RunDirectory


class Throughput(keras.callbacks.Callback):
    """Adds `img_per_s` (this epoch's average so far) to the logs the progress bar prints."""

    def __init__(self, global_batch_size: int):
        super().__init__()
        self.global_batch_size = global_batch_size

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._seen, self._first_end = time.perf_counter(), 0, None

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._first_end is None:  # the first call includes tracing: leave it out of the rate
            self._first_end, self._seen = now, 0
        else:
            self._seen += 1
        if logs is not None:
            logs["img_per_s"] = self.rate(now)

    def rate(self, now: float | None = None) -> float:
        if not self._first_end or not self._seen:
            return 0.0
        elapsed = (now or time.perf_counter()) - self._first_end
        return self._seen * self.global_batch_size * self._steps_per_call() / max(elapsed, 1e-9)

    def _steps_per_call(self) -> int:
        return int(getattr(self.model, "steps_per_execution", 1) or 1)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["img_per_s"] = self.rate()


def decay_factor(kind: str, progress: float, final: float) -> float:
    """The learning-rate multiplier at `progress` (0 at the first step, 1 at the last) of a run."""
    progress = min(max(progress, 0.0), 1.0)
    if kind == "cosine":
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "linear":
        return 1.0 - (1.0 - final) * progress
    return 1.0


class LearningRateDecay(keras.callbacks.Callback):
    """Sets both optimizers' rates before each step from the global step alone (`decay_factor` of
    step / total_steps): a resumed run continues the same curve, and every worker computes the same
    rate. Each epoch's logs carry the generator's rate as `g_lr`."""

    def __init__(self, kind: str, total_steps: int, d_lr: float, g_lr: float, final: float):
        super().__init__()
        self.kind, self.last_step, self.final = kind, max(total_steps - 1, 1), final
        self.rates = {"d_optimizer": d_lr, "g_optimizer": g_lr}

    def on_train_begin(self, logs=None):
        self._step = self.model.step

    def on_train_batch_begin(self, batch, logs=None):
        factor = decay_factor(self.kind, self._step / self.last_step, self.final)
        for name, rate in self.rates.items():
            getattr(self.model, name).learning_rate.assign(rate * factor)

    def on_train_batch_end(self, batch, logs=None):
        self._step += int(getattr(self.model, "steps_per_execution", 1) or 1)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["g_lr"] = float(read_scalar(self.model.g_optimizer.learning_rate))


class SampleGrid(keras.callbacks.Callback):
    """Writes `samples/epoch_NNNN.png` from a fixed latent batch, and the same grid to TensorBoard."""

    def __init__(self, run: RunDirectory, inputs, rows: int, writer=None):
        super().__init__()
        self.run, self.inputs, self.rows, self.writer = run, inputs, rows, writer

    def on_epoch_end(self, epoch, logs=None):
        images = keras.ops.convert_to_numpy(self.model.sampler(self.inputs, training=False))
        grid = save_grid(images, self.run.sample_path(epoch + 1), rows=self.rows)
        if self.writer is not None:
            import tensorflow as tf

            with self.writer.as_default(step=epoch + 1):
                tf.summary.image("samples", grid[None], max_outputs=1)
                tf.summary.scalar("learning_rate/discriminator", read_scalar(self.model.d_optimizer.learning_rate))
                tf.summary.scalar("learning_rate/generator", read_scalar(self.model.g_optimizer.learning_rate))
            self.writer.flush()


class Evaluation(keras.callbacks.Callback):
    """Every `every` epochs: FID/KID and readable rate of the sampled generator into the logs (so
    history.json and TensorBoard get them), and `save_best(result)` when the FID is the best so far.

    `evaluator` is a `metrics.evaluator.Evaluator`, built by the trainer outside `strategy.scope()`
    and the mixed-precision policy (a float32 classifier that only the chief holds).
    """

    def __init__(self, evaluator, every: int, num_classes: int | None, latent_dim: int, run: RunDirectory, save_best):
        super().__init__()
        self.evaluator, self.every, self.num_classes, self.latent_dim = evaluator, every, num_classes, latent_dim
        self.run, self.save_best = run, save_best
        best = self.run.read_best()
        self.best_fid = best["fid"] if best else float("inf")

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        sampler = self.model.sampler

        def sample(z, labels):
            return keras.ops.convert_to_numpy(sampler([z, labels] if labels is not None else z, training=False))

        result = self.evaluator.evaluate(sample, self.latent_dim, self.num_classes)
        if logs is not None:
            logs.update({k: result[k] for k in ("fid", "kid", "readable_rate") if k in result})
        if result["fid"] < self.best_fid:
            self.best_fid = result["fid"]
            self.save_best({"epoch": epoch + 1, "global_step": self.model.step, **result})


class HistoryWriter(keras.callbacks.Callback):
    """Keeps `history.json`: one row per epoch (losses, images/s, steps, wall time), rewritten atomically.

    A row for an epoch that already has one replaces it, so a resumed epoch is never listed twice.
    """

    def __init__(self, run: RunDirectory, steps_per_epoch: int):
        super().__init__()
        self.run, self.steps_per_epoch = run, steps_per_epoch
        self._wall_start = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.time()
        self._step_at_begin = self.model.step

    def on_epoch_end(self, epoch, logs=None):
        step = self.model.step
        row = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in (logs or {}).items()}
        row.update(epoch=epoch + 1, global_step=step, steps=step - self._step_at_begin,
                   complete=step >= (epoch + 1) * self.steps_per_epoch,
                   epoch_seconds=round(time.time() - self._epoch_start, 3))
        history = [r for r in self.run.read_history() if r["epoch"] != epoch + 1] + [row]
        self.run.write_history(sorted(history, key=lambda r: r["epoch"]))


class TimeBudget(keras.callbacks.Callback):
    """Stops training cleanly once `max_minutes` of wall time have passed (checked after each step)."""

    def __init__(self, max_minutes: float):
        super().__init__()
        self.deadline = time.monotonic() + 60.0 * max_minutes
        self.triggered = False

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() >= self.deadline:
            self.triggered = True
            self.model.stop_training = True


class RunProgress(keras.callbacks.Callback):
    """After each epoch, one line on the whole run: steps done, time so far and time left at this
    run's pace (the progress bar covers one epoch; a budget's deadline caps the estimate). Printed
    when the next epoch begins or training ends: Keras's progress bar ends its epoch's line after
    every other callback's on_epoch_end, so a line printed there would land inside the bar's."""

    def __init__(self, total_steps: int, current_step, budget: TimeBudget | None = None, clock=time.monotonic):
        super().__init__()
        self.total_steps, self.current_step, self.budget, self.clock = total_steps, current_step, budget, clock
        self._start, self._pending = None, None

    def on_train_begin(self, logs=None):
        if self._start is None:  # the first fit of this process (a resumed run may call fit twice)
            self._start, self._first_step = self.clock(), self.current_step()

    def on_epoch_end(self, epoch, logs=None):
        step, now = self.current_step(), self.clock()
        elapsed, done = now - self._start, step - self._first_step
        line = f"run: step {step:,} of {self.total_steps:,} ({100 * step / self.total_steps:.0f}%), {_clock(elapsed)} so far"
        if 0 < done and step < self.total_steps:
            left = elapsed / done * (self.total_steps - step)
            if self.budget is not None and self.budget.deadline - now < left:
                line += f", {_clock(max(0.0, self.budget.deadline - now))} left (--max-minutes)"
            else:
                line += f", about {_clock(left)} left"
        self._pending = line

    def on_epoch_begin(self, epoch, logs=None):
        self._print_pending()

    def on_train_end(self, logs=None):
        self._print_pending()

    def _print_pending(self):
        if self._pending:
            print(self._pending, flush=True)
            self._pending = None


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes}:{seconds:02d}"


class Checkpoint(keras.callbacks.Callback):
    """Every `every` optimizer steps and at each epoch end, write a resumable checkpoint.

    Weights are checked for NaN/Inf first: a diverged model raises instead of replacing the last
    good checkpoint. `last_saved` is the step of the newest checkpoint on disk (None before any).
    """

    def __init__(self, run: RunDirectory, every: int):
        super().__init__()
        self.run, self.every = run, every
        latest = run.latest_checkpoint()
        self.last_saved = latest[0] if latest else None

    def save(self):
        from training.guards import TrainingDiverged, divergence_message, non_finite_weights

        step = self.model.step
        if step == self.last_saved:
            return
        broken = non_finite_weights(self.model)
        if broken:
            raise TrainingDiverged(divergence_message(step, f"{len(broken)} variables hold NaN/Inf, e.g. {broken[0]}",
                                                      self.last_saved))
        self.run.save_checkpoint(self.model, step)
        self.last_saved = step

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1 this runs every few steps: compare distances, not multiples.
        if self.model.step - (self.last_saved or 0) >= self.every:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.save()


def tensorboard_callbacks(log_dir: Path):
    """Keras's TensorBoard callback for the losses and a writer of our own for grids and rates."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(log_dir / "samples"))
    return keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False), writer
