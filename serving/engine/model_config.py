"""Which model to serve from where, and which of its versions: what the model manager is told.

TF Serving's `config { ... }` entry of a ModelServerConfig, as a value; the flags and the config
files of `serving.protocols.tfserving` build it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelConfig:
    """One `config { ... }` entry of a ModelServerConfig."""

    name: str
    base_path: str
    policy: str = "latest"                       # latest | all | specific
    num_versions: int = 1                        # for latest
    versions: tuple[int, ...] = ()               # for specific
    labels: dict[str, int] = field(default_factory=dict)

    def aspired(self, on_disk: list[int]) -> set[int]:
        """The versions this policy wants loaded, out of those on disk."""
        if self.policy == "all":
            return set(on_disk)
        if self.policy == "specific":
            return set(self.versions) & set(on_disk)
        return set(sorted(on_disk)[-self.num_versions:])
