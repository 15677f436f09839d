"""The export root shared by concurrent exports: claim a version, stage it, publish it whole.

    <out>/.export.lock                 flock held while a version is claimed or published (briefly)
    <out>/tfserving/.staging-<name>-v<version>.<pid>-<random>/   one export's work, locked by it

A version is claimed by creating its staging directory under the lock: the next export counts the
live staging directories as taken, so two exports never build the same version. Publishing renames
the SavedModel and the ONNX model of one version into place under the lock, both or neither; the
"latest" copies (`onnx/<name>.onnx`, the top-level cards, `export_report.json`) follow only when
the version is the newest one published, written beside their targets before anything is renamed,
so a full disk publishes nothing. A failed export writes `last_failed_export.json`, never
`export_report.json`. Leftovers of a killed export are removed on the next claim.
"""

from __future__ import annotations

import os
import re
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from common.atomic import (fsync_dir, locked, pending_files, remove_stale, staging_dir, staging_dirs,
                           write_json_atomic)
from export import ExportError
from serving.engine.onnx_generator import VARIANTS, variant_file


def versions_in(base: Path) -> list[int]:
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit()) if base.is_dir() else []


@dataclass
class Staged:
    """Paths inside one claimed version's staging directory."""

    version: int
    root: Path

    @property
    def savedmodel(self) -> Path:
        return self.root / "model"

    @property
    def onnx_dir(self) -> Path:
        return self.root / "onnx"

    @property
    def onnx(self) -> Path:
        return self.onnx_dir / "model.onnx"


class ExportRoot:
    def __init__(self, output_dir: Path, model_name: str):
        self.out, self.name = Path(output_dir), model_name
        self.base = self.out / "tfserving" / model_name
        self.onnx_base = self.out / "onnx-models" / model_name
        self.latest_onnx = self.out / "onnx" / f"{model_name}.onnx"

    def version_dir(self, version: int) -> Path:
        return self.base / str(version)

    def onnx_version_dir(self, version: int) -> Path:
        return self.onnx_base / str(version)

    def lock(self):
        return locked(self.out / ".export.lock")

    def _claimed(self) -> set[int]:
        pattern = re.compile(rf"^\.staging-{re.escape(self.name)}-v(\d+)\.")
        return {int(m.group(1)) for p in staging_dirs(self.base.parent) if (m := pattern.match(p.name))}

    def _taken(self) -> list[int]:
        return sorted(set(versions_in(self.base)) | set(versions_in(self.onnx_base)) | self._claimed())

    def remove_leftovers(self) -> list[Path]:
        """Temp files and staging dirs of exports that died (kill -9, power loss); live ones stay."""
        return [p for d in (self.out, self.out / "onnx", self.base.parent) for p in remove_stale(d)]

    @contextmanager
    def claim(self, requested: int | None) -> Iterator[Staged]:
        """Choose a version nobody has published or is building, and hold its staging directory."""
        with ExitStack() as stack:
            with self.lock():
                self.remove_leftovers()
                taken = self._taken()
                if requested is None:
                    version = (taken[-1] + 1) if taken else 1
                elif requested <= 0:
                    raise ExportError(f"--version must be a positive integer, got {requested}.")
                elif requested in taken:
                    raise ExportError(f"Version {requested} already exists in {self.base} (or another export is "
                                      f"building it); versions are immutable. Omit --version to publish "
                                      f"{taken[-1] + 1}, or choose a new number.")
                else:
                    version = requested
                root = stack.enter_context(staging_dir(self.base.parent, f"{self.name}-v{version}"))
            yield Staged(version, root)

    def publish(self, staged: Staged, card: dict, report: dict, variants: tuple[str, ...] = ()) -> bool:
        """Publish `staged` whole: both version directories and, when it is the newest version, the
        latest copies, cards and report, or (on any error, a full disk included) none of them.
        Returns whether it is now the latest.

        Everything that takes space is written first, beside its target; only renames follow.
        """
        with self.lock(), pending_files() as pending:
            version_dir, onnx_dir = self.version_dir(staged.version), self.onnx_version_dir(staged.version)
            if version_dir.exists() or onnx_dir.exists():  # only a hand-made directory can do this
                raise ExportError(f"{version_dir} or {onnx_dir} appeared during the export; choose another --version.")
            self.base.mkdir(parents=True, exist_ok=True)
            self.onnx_base.mkdir(parents=True, exist_ok=True)
            latest = staged.version > max(versions_in(self.base) + versions_in(self.onnx_base), default=0)
            if latest:
                self._write_latest(pending, staged, card, report, variants)
            os.rename(staged.savedmodel, version_dir)  # what a TF Serving poll sees appear
            try:
                os.rename(staged.onnx_dir, onnx_dir)
            except BaseException:
                os.rename(version_dir, staged.savedmodel)  # neither, rather than half
                raise
            fsync_dir(self.base)
            fsync_dir(self.onnx_base)
            pending.commit()
            if latest:  # the newest version's variants, and none of an older one's
                for variant in set(VARIANTS) - set(variants):
                    variant_file(self.latest_onnx, variant).unlink(missing_ok=True)
            return latest

    def _write_latest(self, pending, staged: Staged, card: dict, report: dict, variants: tuple[str, ...]) -> None:
        """The copies of the newest version, written beside their targets (renamed by the caller)."""
        pending.copy(staged.onnx, self.latest_onnx)
        for variant in variants:
            pending.copy(staged.onnx_dir / f"model.{variant}.onnx", variant_file(self.latest_onnx, variant))
        pending.write_json(self.out / "onnx" / f"{self.name}.model_card.json", card)
        pending.write_json(self.out / "model_card.json", card)
        pending.write_json(self.report_path, {"model_name": self.name, **report})

    @property
    def report_path(self) -> Path:
        return self.out / "export_report.json"

    @property
    def failure_path(self) -> Path:
        return self.out / "last_failed_export.json"

    def write_failure(self, report: dict) -> None:
        """A failed export's numbers, beside (never over) the published version's `export_report.json`."""
        with self.lock():
            write_json_atomic(self.failure_path, {"model_name": self.name, **report})
