"""The run directory: what a training run leaves behind, and how a later run finds its place in it.

    <run>/config.json            the fully resolved TrainConfig
    <run>/dataset.json           what was trained on: name, size, image shape, class names
    <run>/samples/epoch_NNNN.png one grid per epoch from a fixed latent batch
    <run>/tensorboard/           losses, learning rates, the sample grid
    <run>/checkpoints/           ckpt-<step>.weights.h5 + checkpoint.json (the pointer to the latest)
    <run>/history.json           one row per epoch
    <run>/generator.keras        the final (EMA) generator; discriminator.keras beside it
    <run>/generator_best.keras   with --eval-every: the generator with the best FID so far (best.json)

Every file is written to a temporary name and renamed, so a crash never leaves half of one, and
`checkpoint.json` is renamed into place only after the weights it points to are complete.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from training.config import ConfigError, TrainConfig
from common.atomic import atomic_path, read_json, write_json_atomic

KEEP_CHECKPOINTS = 2


class RunDirectory:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.config_path = self.root / "config.json"
        self.dataset_path = self.root / "dataset.json"
        self.samples_dir = self.root / "samples"
        self.tensorboard_dir = self.root / "tensorboard"
        self.checkpoints_dir = self.root / "checkpoints"
        self.history_path = self.root / "history.json"
        self.generator_path = self.root / "generator.keras"
        self.discriminator_path = self.root / "discriminator.keras"
        self.best_generator_path = self.root / "generator_best.keras"
        self.best_path = self.root / "best.json"

    # -- creation and resumption ----------------------------------------------------------------

    def check_compatible(self, config: TrainConfig, overwrite: bool) -> bool:
        """Return True when this directory holds a run of `config` to resume. Writes nothing.

        Raises ConfigError for a path that is a file, a non-empty directory that is not a run, or
        a run of a different config (unless `overwrite`).
        """
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"--output-dir {self.root} is a file; choose a directory path.")
        if not self.root.exists() or not any(self.root.iterdir()):
            return False
        if not self.config_path.is_file():
            if overwrite:
                return False
            raise ConfigError(
                f"--output-dir {self.root} is not empty and holds no config.json, so it is not a run "
                "directory. Choose another --output-dir, or pass --overwrite to replace its contents."
            )
        saved = TrainConfig.from_dict(read_json(self.config_path), source=str(self.config_path))
        differences = saved.differences(config)
        if differences and not overwrite:
            details = "; ".join(f"{k}: {getattr(saved, k)!r} -> {getattr(config, k)!r}" for k in differences)
            raise ConfigError(
                f"{self.root} holds a run with a different config ({details}). Use another "
                "--output-dir to start a new run, or pass --overwrite to replace this one."
            )
        return not differences

    def create(self, config: TrainConfig, resume: bool, dataset: dict) -> None:
        """Make the directory (emptied first unless resuming); record the config and the dataset."""
        if not resume and self.root.exists():
            shutil.rmtree(self.root)
        for directory in (self.samples_dir, self.tensorboard_dir, self.checkpoints_dir):
            directory.mkdir(parents=True, exist_ok=True)
        config.save(self.config_path)
        write_json_atomic(self.dataset_path, dataset)

    # -- artifacts --------------------------------------------------------------------------------

    def sample_path(self, epoch: int) -> Path:
        return self.samples_dir / f"epoch_{epoch:04d}.png"

    def read_history(self) -> list[dict]:
        return read_json(self.history_path) if self.history_path.is_file() else []

    def write_history(self, rows: list[dict]) -> None:
        write_json_atomic(self.history_path, rows)

    def truncate_history(self, last_epoch: int) -> None:
        """Forget rows after `last_epoch`: they were written after the checkpoint we resume from."""
        rows = self.read_history()
        kept = [r for r in rows if r["epoch"] <= last_epoch]
        if len(kept) != len(rows):
            self.write_history(kept)

    def read_best(self) -> dict | None:
        return read_json(self.best_path) if self.best_path.is_file() else None

    def save_best(self, model, result: dict) -> None:
        """The generator file first, then best.json: the record never points at a missing model."""
        self.save_model(model, self.best_generator_path)
        write_json_atomic(self.best_path, result)

    def save_model(self, model, path: Path) -> None:
        with atomic_path(path, suffix=".keras") as tmp:
            model.save(tmp)

    # -- checkpoints ------------------------------------------------------------------------------

    @property
    def checkpoint_pointer(self) -> Path:
        return self.checkpoints_dir / "checkpoint.json"

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        if not self.checkpoint_pointer.is_file():
            return None
        pointer = read_json(self.checkpoint_pointer)
        return int(pointer["step"]), self.checkpoints_dir / pointer["weights"]

    def save_checkpoint(self, gan, step: int) -> None:
        """Weights of both models, the EMA generator and both optimizers, at optimizer step `step`."""
        name = f"ckpt-{step:09d}.weights.h5"
        with atomic_path(self.checkpoints_dir / name, suffix=".weights.h5") as tmp:
            gan.save_weights(tmp)
        write_json_atomic(self.checkpoint_pointer, {"step": step, "weights": name})
        for old in sorted(self.checkpoints_dir.glob("ckpt-*.weights.h5"))[:-KEEP_CHECKPOINTS]:
            old.unlink()

    def restore_checkpoint(self, gan) -> int:
        """Load the latest checkpoint into `gan` (built and compiled); return its step, 0 if none."""
        latest = self.latest_checkpoint()
        if latest is None:
            return 0
        step, weights = latest
        gan.load_weights(weights)
        restored = gan.step
        if restored != step:
            raise ConfigError(f"Checkpoint {weights} holds step {restored} but checkpoint.json says {step}; "
                              "the checkpoint directory is inconsistent. Delete the newer file or use --overwrite.")
        return step
