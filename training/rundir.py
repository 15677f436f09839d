"""The run directory: what a training run leaves behind, and how a later run finds its place in it.

    <run>/config.json            the fully resolved TrainConfig
    <run>/dataset.json           what was trained on: name, size, image shape, class names
    <run>/samples/epoch_NNNN.png one grid per epoch from a fixed latent batch
    <run>/tensorboard/           losses, learning rates, the sample grid
    <run>/checkpoints/           ckpt-<step>.weights.h5 (the newest two) + checkpoint.json, which
                                 names them, newest first, with each file's SHA-256
    <run>/history.json           one row per epoch
    <run>/generator.keras        the final (EMA) generator; discriminator.keras beside it
    <run>/generator_best.keras   with --eval-every: the generator with the best FID so far (best.json)

Every file is written to a temporary name and renamed, so a crash never leaves half of one, and
`checkpoint.json` is renamed into place only after the weights it points to are complete. A
checkpoint damaged later (a truncated copy, a flipped bit) fails its checksum, and the run resumes
from the one before it. Temporary files a killed process left behind are removed when a run starts.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from common.atomic import (DiskFullError, atomic_path, is_temporary, read_json, remove_stale, sha256_of,
                           write_json_atomic)
from training.config import ConfigError, TrainConfig

KEEP_CHECKPOINTS = 2  # the newest and the one before it: a damaged newest one falls back to it
CHECKPOINT_FILE = "ckpt-{step:09d}.weights.h5"
CHECKPOINT_NAME = re.compile(r"^ckpt-(\d{9})\.weights\.h5$")
CHECKPOINT_SLACK = 64 * 1024  # HDF5 metadata, and room for checkpoint.json beside the weights
EPOCH_RECORDS = 1024 * 1024  # a sample grid, history.json, TensorBoard events: generous for one epoch
# Every name a run (or export.evaluate, writing evaluation.json) puts at its top level: --overwrite
# deletes these and nothing else.
RUN_ENTRIES = frozenset({"config.json", "dataset.json", "samples", "tensorboard", "checkpoints", "history.json",
                         "generator.keras", "discriminator.keras", "generator_best.keras", "best.json",
                         "evaluation.json"})
# What a run writes inside its directories (at any depth for TensorBoard's): anything else in them is a
# user's, and --overwrite refuses rather than deleting it.
RUN_FILES_INSIDE = {"samples": re.compile(r"^epoch_\d{4,}\.png$"),
                    "checkpoints": re.compile(r"^(ckpt-\d{9}\.weights\.h5(\.damaged)?|checkpoint\.json)$"),
                    "tensorboard": re.compile(r"^events\.out\.tfevents\..+$")}


def newest_finished_run(root: str | Path = "runs") -> Path | None:
    """The run under `root` whose generator was written last (a finished or stopped run), or None:
    what `python -m export.run` exports when no --run-dir is given."""
    root = Path(root)
    if not root.is_dir():
        return None
    finished = [RunDirectory(d).generator_path for d in root.iterdir() if d.is_dir()]
    finished = [path for path in finished if path.is_file()]
    return max(finished, key=lambda path: path.stat().st_mtime).parent if finished else None


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

    def check_compatible(self, config: TrainConfig, overwrite: bool, dataset: dict | None = None) -> bool:
        """Return True when this directory holds a run of `config` on `dataset` to resume (never
        with `overwrite`). Writes nothing.

        Raises ConfigError for a path that is a file or a dangling link, a non-empty directory that
        is not a run, a run holding files a run does not write (with `overwrite`: they would be
        deleted), or a run of a different config or data (unless `overwrite`).
        """
        self._check_path()
        if not self.root.exists() or not any(self.root.iterdir()):
            return False
        if not self.config_path.is_file():
            deleted = "; --overwrite replaces only a run, so nothing was deleted" if overwrite else ""
            raise ConfigError(f"--output-dir {self.root} is not empty and is not a run directory (it holds "
                              f"{_listing(self.foreign_entries())}){deleted}. Choose a new or empty --output-dir.")
        if overwrite:
            self._check_only_ours()
            return False  # --overwrite starts over, whatever run the directory holds
        saved = self.read_config()
        differences = saved.differences(config)
        if differences:
            details = "; ".join(f"{k}: {getattr(saved, k)!r} -> {getattr(config, k)!r}" for k in differences)
            raise ConfigError(
                f"{self.root} holds a run with a different config ({details}). Use another "
                "--output-dir to start a new run, or pass --overwrite to replace this one."
            )
        if dataset is not None:
            check_same_data(self.read_dataset(), dataset, self.root)
        return True

    def foreign_entries(self) -> list[str]:
        """Paths (relative to the run) that no training run writes: a user's files, never ours to
        delete. Looks inside the run's own folders too: `samples/my_favourite.png` is the user's."""
        foreign = [p.name for p in self.root.iterdir() if p.name not in RUN_ENTRIES and not is_temporary(p.name)]
        for folder, ours in RUN_FILES_INSIDE.items():
            inside = self.root / folder
            if inside.is_symlink() or (inside.exists() and not inside.is_dir()):
                foreign.append(folder)  # a link or a file where a run keeps a folder: not ours to empty
                continue
            entries = inside.rglob("*") if folder == "tensorboard" else (inside.iterdir() if inside.is_dir() else ())
            for entry in entries:
                if entry.is_symlink() or (entry.is_file() and not (ours.match(entry.name) or is_temporary(entry.name))) \
                        or (entry.is_dir() and folder != "tensorboard" and not is_temporary(entry.name)):
                    foreign.append(str(entry.relative_to(self.root)))
        return sorted(foreign)

    def read_config(self) -> TrainConfig:
        """The run's saved config, an older schema migrated (ConfigError if it is not one)."""
        return TrainConfig.from_dict(read_json(self.config_path), source=str(self.config_path))

    def read_dataset(self) -> dict | None:
        return read_json(self.dataset_path) if self.dataset_path.is_file() else None

    def create(self, config: TrainConfig, resume: bool, dataset: dict) -> None:
        """Make the directory (emptied first unless resuming, stale temporary files removed when
        resuming); record the config and the dataset."""
        self._check_path()
        if not resume and self.root.exists():
            self._check_only_ours()
            for entry in self.root.iterdir():  # the entries, not the root: it may be a link or a mount
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        for directory in (self.root, self.samples_dir, self.checkpoints_dir):
            remove_stale(directory)  # what a killed process was writing: only files no live writer holds
        for directory in (self.samples_dir, self.tensorboard_dir, self.checkpoints_dir):
            directory.mkdir(parents=True, exist_ok=True)
        dataclasses.replace(config, overwrite=False).save(self.config_path)  # see config.ACTION_KEYS
        write_json_atomic(self.dataset_path, dataset)

    def _check_path(self) -> None:
        if self.root.is_symlink() and not self.root.exists():
            raise ConfigError(f"--output-dir {self.root} is a link to {os.readlink(self.root)}, which does not "
                              "exist; create that directory or choose another --output-dir.")
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"--output-dir {self.root} is a file; choose a directory path.")

    def _check_only_ours(self) -> None:
        foreign = self.foreign_entries()
        if foreign:
            raise ConfigError(f"--output-dir {self.root} holds files a training run does not write "
                              f"({_listing(foreign)}); --overwrite replaces only a run, so nothing was deleted. "
                              "Move them away or choose a new --output-dir.")

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

    def save_best(self, model, result: dict, rewrite=None) -> None:
        """The generator file first, then best.json: the record never points at a missing model."""
        self.save_model(model, self.best_generator_path, rewrite)
        write_json_atomic(self.best_path, result)

    def save_model(self, model, path: Path, rewrite=None) -> None:
        """`rewrite(file)`: a change to the saved file before it takes its name."""
        with atomic_path(path, suffix=".keras") as tmp:
            model.save(tmp)
            if rewrite is not None:
                rewrite(tmp)

    # -- checkpoints ------------------------------------------------------------------------------

    @property
    def checkpoint_pointer(self) -> Path:
        return self.checkpoints_dir / "checkpoint.json"

    def checkpoint_entries(self) -> list[dict]:
        """The checkpoints `checkpoint.json` lists, newest first: `{"step", "weights", "sha256"}`.

        A pointer written before checksums existed lists one entry without `sha256`. Raises
        CheckpointDamaged when the pointer itself cannot be read.
        """
        if not self.checkpoint_pointer.is_file():
            return []
        try:
            pointer = read_json(self.checkpoint_pointer)
            entries = pointer.get("checkpoints") or [  # the one-checkpoint pointer of older runs
                {k: pointer[k] for k in ("step", "weights", "sha256") if k in pointer}]
            return [{**e, "step": int(e["step"]), "weights": str(e["weights"])} for e in entries]
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            raise CheckpointDamaged(f"{self.checkpoint_pointer} cannot be read ({type(err).__name__}: {err})") from None

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        try:
            entries = self.checkpoint_entries()
        except CheckpointDamaged:
            return None
        return (entries[0]["step"], self.checkpoints_dir / entries[0]["weights"]) if entries else None

    def save_checkpoint(self, gan, step: int) -> None:
        """Weights of both models, the EMA generator and both optimizers, at optimizer step `step`.

        The weights file and its SHA-256 come first, then `checkpoint.json` naming it and the
        previous checkpoints kept (KEEP_CHECKPOINTS in all), then older files go. Refuses to start
        (DiskFullError) when the disk lacks room for one more checkpoint: HDF5 crashes the process
        when it runs out of space mid-write, so the check comes before the write.
        """
        name = CHECKPOINT_FILE.format(step=step)
        path = self.checkpoints_dir / name
        needed = self._checkpoint_size(gan)
        free = shutil.disk_usage(self.checkpoints_dir).free
        if free < needed:
            raise DiskFullError(path, needed)
        with atomic_path(path, suffix=".weights.h5") as tmp:
            gan.save_weights(tmp)
            digest = sha256_of(tmp)
        try:
            listed = self.checkpoint_entries()
        except CheckpointDamaged:  # never delete what cannot be accounted for: keep the files on disk
            listed = self._entries_on_disk()
        older = [e for e in listed if e["step"] < step and self._confined(e["weights"])]
        older = [e for e in older if (self.checkpoints_dir / e["weights"]).is_file()]
        kept = [{"step": step, "weights": name, "sha256": digest}] + older[: KEEP_CHECKPOINTS - 1]
        self._write_pointer(kept)
        names = {e["weights"] for e in kept}
        for old in self.checkpoints_dir.glob("ckpt-*.weights.h5"):
            if old.name not in names:
                old.unlink()

    def restore_checkpoint(self, gan, repair: bool = True) -> int:
        """Load the newest intact checkpoint into `gan` (built and compiled); return its step, 0 if none.

        A checkpoint whose file is missing, outside `checkpoints/`, fails its checksum or does not
        load is reported with a warning and the one before it is tried. With `repair` (the chief),
        damaged files are moved aside to `*.damaged` and `checkpoint.json` is rewritten to list only
        intact ones.
        """
        pointer_damaged = False
        try:
            entries = self.checkpoint_entries()
        except CheckpointDamaged as err:  # fall back to the files on disk, newest first, unverified
            entries, pointer_damaged = self._entries_on_disk(), True
            _warn(f"{err}; trying the checkpoint files on disk, newest first.")
        problems = []
        for index, entry in enumerate(entries):
            problem = self._verify(entry) or self._load(gan, entry)
            if problem is None:
                if (problems or pointer_damaged) and repair:  # else the next save would drop this one
                    self._set_aside(entries[:index])
                    restored = {**entry, "sha256": entry.get("sha256") or sha256_of(self.checkpoints_dir / entry["weights"])}
                    self._write_pointer([restored] + [e for e in entries[index + 1:] if "sha256" in e])
                return entry["step"]
            problems.append(problem)
            later = "trying the one before it" if index + 1 < len(entries) else "no older checkpoint is left"
            _warn(f"checkpoint {entry['weights']} (step {entry['step']}) is damaged: {problem}; {later}.")
        if problems:
            raise ConfigError(f"No intact checkpoint in {self.checkpoints_dir} ({'; '.join(problems)}). "
                              "Pass --overwrite to start this run over, or use another --output-dir.")
        return 0

    # -- checkpoint internals -------------------------------------------------------------------

    def _entries_on_disk(self) -> list[dict]:
        """The checkpoint files present, newest first, without checksums (when the pointer is unreadable)."""
        entries = [{"step": int(m.group(1)), "weights": p.name} for p in self.checkpoints_dir.glob("ckpt-*")
                   if (m := CHECKPOINT_NAME.match(p.name))]
        return sorted(entries, key=lambda e: -e["step"])

    def _confined(self, name: str) -> bool:
        """Only plain `ckpt-<step>.weights.h5` names inside `checkpoints/`: never ../ or absolute paths."""
        return bool(CHECKPOINT_NAME.match(name)) and (self.checkpoints_dir / name).resolve().parent == \
            self.checkpoints_dir.resolve()

    def _verify(self, entry: dict) -> str | None:
        name = entry["weights"]
        if not self._confined(name):
            return f"checkpoint.json names {name!r}, which is not a checkpoint file inside {self.checkpoints_dir}"
        path = self.checkpoints_dir / name
        if not path.is_file():
            return "the file is missing"
        if "sha256" in entry and sha256_of(path) != entry["sha256"]:
            return f"its SHA-256 differs from the one recorded ({path.stat().st_size} bytes)"
        return None

    def _load(self, gan, entry: dict) -> str | None:
        try:
            gan.load_weights(self.checkpoints_dir / entry["weights"])
        except Exception as err:  # h5py and Keras raise many kinds for a broken file
            return f"it does not load ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        if gan.step != entry["step"]:
            return f"it holds step {gan.step}, not the step {entry['step']} checkpoint.json records"
        return None

    def _set_aside(self, entries: list[dict]) -> None:
        for entry in entries:
            path = self.checkpoints_dir / entry["weights"]
            if self._confined(entry["weights"]) and path.is_file():
                os.replace(path, path.with_name(path.name + ".damaged"))

    def _write_pointer(self, entries: list[dict]) -> None:
        newest = entries[0] if entries else None
        if newest is None:
            self.checkpoint_pointer.unlink(missing_ok=True)
            return
        write_json_atomic(self.checkpoint_pointer, {**newest, "checkpoints": entries})

    def space_to_continue(self) -> int:
        """Free bytes a resumed run needs to get going: one more checkpoint beside the newest,
        and an epoch's samples and logs."""
        sizes = [p.stat().st_size for p in self.checkpoints_dir.glob("ckpt-*.weights.h5")]
        return int(max(sizes, default=0) * 1.1) + CHECKPOINT_SLACK + EPOCH_RECORDS

    def _checkpoint_size(self, gan) -> int:
        """Bytes one more checkpoint needs: the last one's size, else the variables' bytes, plus slack."""
        sizes = [p.stat().st_size for p in self.checkpoints_dir.glob("ckpt-*.weights.h5")]
        if sizes:
            return int(max(sizes) * 1.1) + CHECKPOINT_SLACK
        variables = list(gan.weights) + list(gan.d_optimizer.variables) + list(gan.g_optimizer.variables)
        return int(sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables) * 1.1) + CHECKPOINT_SLACK


def check_same_data(saved: dict | None, current: dict, root: Path) -> None:
    """Refuse to resume on other data than the run started with (a `dataset.json` written before
    fingerprints existed is compared on what it has: size, shape, classes)."""
    changed = [k for k in ("num_images", "image_shape", "class_names", "fingerprint")
               if saved and k in saved and saved[k] != current.get(k)]
    if changed:
        details = "; ".join(f"{k}: {saved[k]!r} -> {current.get(k)!r}" for k in changed)
        raise ConfigError(f"The training data changed since the run in {root} started ({details}). Resume with "
                          "the data it started with, or start a new run with another --output-dir.")


class CheckpointDamaged(ValueError):
    """checkpoint.json cannot be read."""



def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _listing(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
