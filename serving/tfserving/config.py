"""Write the TF Serving configuration for an export, in TF Serving's text-proto formats.

    python -m serving.tfserving.config --export-dir exports --model-name generator --stable 1 --canary 2

writes into `exports/tfserving/`: `models.config` (ModelServerConfig), `batching_parameters.txt`
(BatchingParameters, for --device cpu or gpu) and `monitoring.config` (MonitoringConfig with
Prometheus on). The committed copies in this directory are the same files for the defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Chosen for a small DCGAN generator. CPU: one batch per core, short timeout (the model is
# compute-bound, so big batches only add latency). GPU: large padded batches keep it busy;
# allowed_batch_sizes bounds the shapes it must run (the last one must equal max_batch_size).
BATCHING = {
    "cpu": {"max_batch_size": 32, "batch_timeout_micros": 2000, "max_enqueued_batches": 100,
            "num_batch_threads": 4, "allowed_batch_sizes": [8, 16, 32]},
    "gpu": {"max_batch_size": 256, "batch_timeout_micros": 1000, "max_enqueued_batches": 1000,
            "num_batch_threads": 4, "allowed_batch_sizes": [32, 64, 128, 256]},
}
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
HERE = Path(__file__).parent


def models_config(model_name: str, base_path: str, labels: dict[str, int] | None = None) -> str:
    """ModelServerConfig text: label targets pinned as specific versions, else the latest one."""
    labels = labels or {}
    lines = ["model_config_list {", "  config {", f'    name: "{model_name}"', f'    base_path: "{base_path}"',
             '    model_platform: "tensorflow"']
    if labels:
        versions = " ".join(f"versions: {v}" for v in sorted(set(labels.values())))
        lines.append(f"    model_version_policy {{ specific {{ {versions} }} }}")
        lines += [f'    version_labels {{ key: "{k}" value: {v} }}' for k, v in sorted(labels.items())]
    else:
        lines.append("    model_version_policy { latest { num_versions: 1 } }")
    return "\n".join(lines + ["  }", "}", ""])


def batching_parameters(device: str = "cpu") -> str:
    """BatchingParameters text (scalars are wrapper messages: `max_batch_size { value: 32 }`)."""
    params = BATCHING[device]
    lines = [f"{key} {{ value: {value} }}" for key, value in params.items() if key != "allowed_batch_sizes"]
    lines += [f"allowed_batch_sizes: {size}" for size in params["allowed_batch_sizes"]]
    return "\n".join(lines) + "\n"


def monitoring_config() -> str:
    return f'prometheus_config {{\n  enable: true\n  path: "{PROMETHEUS_PATH}"\n}}\n'


def write_deployment(export_dir: Path, model_name: str, labels: dict[str, int] | None = None,
                     device: str = "cpu", container_root: str = "/models") -> Path:
    """Write the three files into `<export_dir>/tfserving/`, checking label targets exist."""
    target = Path(export_dir) / "tfserving"
    versions = {int(p.name) for p in (target / model_name).iterdir() if p.name.isdigit()} \
        if (target / model_name).is_dir() else set()
    if not versions:
        raise ValueError(f"{target / model_name} has no versions; run python -m export.run first.")
    missing = {k: v for k, v in (labels or {}).items() if v not in versions}
    if missing:
        raise ValueError(f"labels point at versions that were not exported: {missing} (exported: {sorted(versions)})")
    _write_text_atomic(target / "models.config", models_config(model_name, f"{container_root}/{model_name}", labels))
    _write_text_atomic(target / "batching_parameters.txt", batching_parameters(device))
    _write_text_atomic(target / "monitoring.config", monitoring_config())
    return target


def _write_text_atomic(path: Path, text: str) -> None:
    """A server polling the config (--model_config_file_poll_wait_seconds) never reads half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.tfserving.config", description=__doc__.split("\n\n")[0])
    parser.add_argument("--export-dir", default="exports")
    parser.add_argument("--model-name", default="generator")
    parser.add_argument("--stable", type=int, help="Version the 'stable' label points at.")
    parser.add_argument("--canary", type=int, help="Version the 'canary' label points at.")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="Batching parameters for this device.")
    parser.add_argument("--container-root", default="/models", help="Where the model repository is mounted in the container.")
    args = parser.parse_args(argv)
    labels = {k: v for k, v in (("stable", args.stable), ("canary", args.canary)) if v is not None}
    try:
        target = write_deployment(Path(args.export_dir), args.model_name, labels, args.device, args.container_root)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"Wrote models.config, batching_parameters.txt and monitoring.config to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
