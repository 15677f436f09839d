"""Guards that end training safely: on preemption (SIGTERM) and on divergence (NaN/Inf).

Both act between steps. Preemption writes a checkpoint and stops, so the next run resumes where
this one stopped. Divergence raises before the checkpoint callback runs, so the last good
checkpoint and `generator.keras` are never replaced by broken ones.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np

from training import sigterm


class TrainingDiverged(RuntimeError):
    """Losses or weights stopped being finite; the message says where and what to try."""


def non_finite_weights(model: keras.Model) -> list[str]:
    """Paths of the variables holding NaN or infinity (empty when all are finite)."""
    return [v.path for v in model.weights if not np.all(np.isfinite(keras.ops.convert_to_numpy(v)))]


def divergence_message(step: int, what: str, last_good: int | None) -> str:
    kept = f"The last good checkpoint (step {last_good}) is intact" if last_good is not None else \
        "No checkpoint had been written yet"
    return (f"Training diverged at step {step}: {what}. {kept}, and generator.keras was not written. "
            "Lower --d-lr/--g-lr, try --loss wgan-gp or hinge, or change --seed, then rerun "
            "(the same --output-dir resumes from that checkpoint; add --overwrite to start over).")


class DivergenceGuard(keras.callbacks.Callback):
    """Raises TrainingDiverged as soon as a logged loss is NaN or infinite."""

    def __init__(self, last_checkpoint=lambda: None):
        super().__init__()
        self.last_checkpoint = last_checkpoint

    def on_train_batch_end(self, batch, logs=None):
        for key in ("d_loss", "g_loss", "gp"):
            if logs and key in logs:
                value = float(np.asarray(logs[key]).reshape(-1)[0])
                if not math.isfinite(value):
                    step = self.model.step
                    raise TrainingDiverged(divergence_message(step, f"{key} is {value}", self.last_checkpoint()))


class PreemptionGuard(keras.callbacks.Callback):
    """On SIGTERM (what schedulers send before killing), finish the step, checkpoint, and stop.

    `checkpoint` is called with no arguments to write the backup; `preempted` tells the trainer.
    Under multi-worker, `agree` ORs flags over all workers after every step (strategy.worker_agreement):
    a SIGTERM to any one worker then stops all of them at the same step, each taking its part in
    the same checkpoint, and a `budget` (TimeBudget) is judged by the chief's clock alone, so all
    workers also stop together when the chief's --max-minutes run out.
    """

    def __init__(self, checkpoint, agree=None, budget=None, chief: bool = True, requested=sigterm.requested):
        super().__init__()
        self.checkpoint, self.agree, self.budget, self.chief = checkpoint, agree, budget, chief
        self.requested = requested  # the trainer notes SIGTERM for the whole run (training.sigterm)
        self.preempted = False

    def stop_between_fits(self) -> bool:
        """A SIGTERM noted after a `fit` returned: checkpoint (a no-op when the epoch end wrote one)
        and stop. Single-process only: workers decide together, at the next step."""
        if self.agree is None and self.requested() and not self.preempted:
            self.checkpoint()
            self.preempted = True
        return self.preempted

    def on_train_begin(self, logs=None):
        sigterm.reassert()  # in case the runtime installed its own SIGTERM handler since the run began

    def on_train_batch_end(self, batch, logs=None):
        requested = self.requested()
        expired = bool(self.budget and self.chief and time.monotonic() >= self.budget.deadline)
        if self.agree is not None:
            requested, expired = self.agree([requested, expired])
        if expired and not self.budget.triggered:
            self.budget.triggered = True
            self.model.stop_training = True
        if requested and not self.preempted:
            self.checkpoint()
            self.preempted = True
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        # A signal during the last step: one worker checkpoints here (several workers never would
        # agree on it after the last step; the run is complete and its last checkpoint written).
        if self.agree is None and self.requested() and not self.preempted:
            self.checkpoint()
            self.preempted = True
