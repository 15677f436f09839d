"""Which version directories on disk may be loaded now: their files have settled, and a failed load
is retried a bounded number of times.

A version directory that is still being written (a plain `cp`, an rsync without temp names) is not
loaded until its files stop changing: their sizes and times must be the same as at the previous
look and none may be newer than `settle_seconds`. A failed load is retried `max_retries` times,
`retry_interval` seconds apart (TF Serving's --max_num_load_retries and
--load_retry_interval_micros), then not again until the version's files change, so a broken
version costs a handful of log lines, not one per poll forever.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from serving.engine.onnx_generator import VARIANTS

log = logging.getLogger("serving.engine.model_manager")


def find_onnx(version_dir: Path) -> Path:
    """The version's float32 model; its variants (`*.int8.onnx`, `*.fp16.onnx`) sit beside it."""
    files = sorted(p for p in version_dir.glob("*.onnx") if p.stem.rsplit(".", 1)[-1] not in VARIANTS)
    if len(files) != 1:
        raise ValueError(f"{version_dir} must hold exactly one float32 .onnx file (variants aside), found {len(files)}")
    return files[0]


def versions_on_disk(base_path: str, reported: set | None = None) -> dict[int, Path]:
    """Numbered version directories that hold one .onnx file (a single .onnx file is version 1).
    A directory that cannot be served is reported once per reason (`reported` remembers), not per poll."""
    base = Path(base_path)
    if base.is_file() and base.suffix == ".onnx":
        return {1: base}
    found = {}
    for child in base.iterdir() if base.is_dir() else ():
        if child.is_dir() and child.name.isdigit():
            try:
                found[int(child.name)] = find_onnx(child)
            except ValueError as err:
                if reported is None or (str(child), str(err)) not in reported:
                    log.warning("skipping version %s: %s", child, err)
                    if reported is not None:
                        reported.add((str(child), str(err)))
    return found


def fingerprint(model_file: Path) -> tuple:
    """(name, size, mtime) of every file of a version: its directory's files, or the one file."""
    root = Path(model_file)
    files = [root] if root.parent.name and not root.parent.name.isdigit() else \
        [p for p in root.parent.rglob("*") if p.is_file()]
    return tuple(sorted((str(p.relative_to(root.parent)), st.st_size, st.st_mtime_ns)
                        for p, st in ((p, p.stat()) for p in files)))


@dataclass
class _Record:
    fingerprint: tuple
    failures: int = 0
    next_try: float = 0.0


class LoadGate:
    """Decides, per (model, version), whether a load may be attempted now."""

    def __init__(self, settle_seconds: float = 2.0, max_retries: int = 5, retry_interval: float = 60.0,
                 clock=time.monotonic, wall_clock=time.time):
        self.settle_seconds, self.max_retries, self.retry_interval = settle_seconds, max_retries, retry_interval
        self.clock, self.wall_clock = clock, wall_clock
        self._records: dict[tuple[str, int], _Record] = {}

    def may_load(self, key: tuple[str, int], model_file: Path, at_once: bool = False) -> bool:
        """True when the files have settled (`at_once`: no matter) and no retry wait is pending."""
        try:
            current = fingerprint(model_file)
        except OSError:
            return False  # vanished or unreadable mid-look: try at the next poll
        record = self._records.get(key)
        changed = record is not None and record.fingerprint != current
        if record is None or changed:  # new files: earlier failures no longer count
            record = self._records[key] = _Record(current)
        if not at_once:
            newest = max((entry[2] for entry in current), default=0) / 1e9
            if changed or newest > self.wall_clock() - self.settle_seconds:
                return False  # still being written: wait until a later look sees it unchanged
        return self.clock() >= record.next_try

    def failed(self, key: tuple[str, int]) -> tuple[str, bool]:
        """Count a failed load; returns what happens next, for the one log line of this attempt, and
        whether that was the last attempt (an operator's ERROR; a retry is a WARNING)."""
        record = self._records[key]
        record.failures += 1
        attempt = f"attempt {record.failures} of {self.max_retries + 1}"
        if record.failures > self.max_retries:
            record.next_try = math.inf
            return f"{attempt}; not retried until its files change", True
        record.next_try = self.clock() + self.retry_interval
        return f"{attempt}; retried in {self.retry_interval:g} s", False

    def loaded(self, key: tuple[str, int]) -> None:
        self._records.pop(key, None)
