"""A finished training run, read-only: what export and evaluation may read of a run directory.

`RunDirectory` owns a run's file names and writes them; readers above training (export, evaluation,
the TFX components) open a run through `FinishedRun.open` instead of by file name, and get the typed
config, the dataset record and the history, with one clear error for a directory that is not a
finished run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.config import ConfigError, TrainConfig
from training.rundir import RunDirectory


class NotARunError(ValueError):
    """The path is not a finished run directory: the message says what is missing and what to do."""


@dataclass(frozen=True)
class FinishedRun:
    root: Path
    config: TrainConfig | None  # None: a generator without the record of how it was trained
    dataset: dict | None  # what the run trained on (dataset.json): its fingerprint and class names
    history: list[dict]   # one record per finished epoch
    generator_path: Path  # the float32 (EMA) generator, generator.keras

    @classmethod
    def open(cls, run_dir: str | Path, flag: str = "--run-dir") -> FinishedRun:
        run = RunDirectory(run_dir)
        if not run.root.is_dir():
            raise NotARunError(f"{flag} {run.root} does not exist; point it at a directory written by training.run.")
        if not run.generator_path.is_file():
            raise NotARunError(f"{run.root} has no {run.generator_path.name}: the run has not finished. Train it to "
                               "the end (or with --max-minutes) first.")
        config = None
        if run.config_path.is_file():
            try:
                config = run.read_config()
            except (ConfigError, ValueError, TypeError) as err:
                raise NotARunError(f"{run.config_path} cannot be read as a training config ({err}).") from None
        return cls(run.root, config, run.read_dataset(), run.read_history(), run.generator_path)

    def require_config(self, why: str) -> TrainConfig:
        """The config, or NotARunError saying that `why` needs the config.json this run lacks."""
        if self.config is None:
            raise NotARunError(f"{why} needs the run's config.json, which {self.root} does not have; use a run "
                               "directory written by training.run.")
        return self.config

    @property
    def final_metrics(self) -> dict | None:
        return self.history[-1] if self.history else None
