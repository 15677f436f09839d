"""A version directory's model file, and a fixed set of loaded versions with labels.

`--model FILE.onnx` serves one file as version 1. `--model-base-path DIR` serves every numbered
subdirectory of DIR (`DIR/<version>/*.onnx`), as TF Serving does with a SavedModel base path; which
versions are loaded, and when, is `serving.model_manager`'s job. With `variant="int8"` (the
server's `--variant`) every version serves its `model.int8.onnx` instead: run one server per
variant, or name them apart with `--model-name generator-int8`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from serving.onnx_generator import VARIANTS, OnnxGenerator


class NotFound(LookupError):
    """An unknown model, version or label: 404 over REST, NOT_FOUND over gRPC."""


@dataclass
class ServedModel:
    name: str
    versions: dict[int, OnnxGenerator]
    labels: dict[str, int] = field(default_factory=dict)

    def resolve(self, version: int | None = None, label: str | None = None) -> tuple[int, OnnxGenerator]:
        if version is not None and label:
            raise ValueError("give a version or a label, not both")
        if label:
            if label not in self.labels:
                raise NotFound(f"Unknown version label '{label}' for model '{self.name}' "
                               f"(labels: {sorted(self.labels) or 'none'})")
            version = self.labels[label]
        if version is None:
            version = max(self.versions)
        if version not in self.versions:
            raise NotFound(f"Servable not found for request: Specific({self.name}, {version}) "
                           f"(versions: {sorted(self.versions)})")
        return version, self.versions[version]


def find_onnx(version_dir: Path) -> Path:
    """The version's float32 model; its variants (`*.int8.onnx`, `*.fp16.onnx`) sit beside it."""
    files = sorted(p for p in version_dir.glob("*.onnx") if p.stem.rsplit(".", 1)[-1] not in VARIANTS)
    if len(files) != 1:
        raise ValueError(f"{version_dir} must hold exactly one float32 .onnx file (variants aside), found {len(files)}")
    return files[0]
