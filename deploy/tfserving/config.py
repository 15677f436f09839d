"""Write the TF Serving configuration for an export, in TF Serving's text-proto formats.

    python -m deploy.tfserving.config --export-dir exports --model-name generator --stable 1 --canary 2

writes into `exports/tfserving/`: `models.config` (ModelServerConfig), `batching_parameters.txt`
(BatchingParameters, for --device cpu or gpu) and `monitoring.config` (MonitoringConfig with
Prometheus on). Run again to move labels (a roll-out or roll-back), it rewrites `models.config` and
keeps the other two files, and the container root the deployment already uses, unless --device,
--num-batch-threads or --container-root say otherwise: a roll-out never turns GPU batching back into
CPU batching. The committed copies in this directory are the same files for the defaults (and a
4-core serving host). `models.config` is built as the ModelServerConfig message and printed by
protobuf's text_format, so every name and path is escaped the way TF Serving parses it back.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from google.protobuf import text_format

from common.atomic import write_text_atomic
from serving.protos import ModelServerConfig

# Chosen for a small DCGAN generator. CPU: short timeout (the model is compute-bound, so big batches
# only add latency). GPU: large padded batches keep it busy; allowed_batch_sizes bounds the shapes
# it must run (the last one must equal max_batch_size). num_batch_threads: one per core of the
# serving host, TF Serving's advice for both; the committed files assume 4 cores (--num-batch-threads).
BATCHING = {
    "cpu": {"max_batch_size": 32, "batch_timeout_micros": 2000, "max_enqueued_batches": 100,
            "allowed_batch_sizes": [8, 16, 32]},
    "gpu": {"max_batch_size": 256, "batch_timeout_micros": 1000, "max_enqueued_batches": 1000,
            "allowed_batch_sizes": [32, 64, 128, 256]},
}
COMMITTED_BATCH_THREADS = 4
# What export.run accepts as a model name; anything else cannot name an exported base path.
MODEL_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
HERE = Path(__file__).parent


def models_config(model_name: str, base_path: str, labels: dict[str, int] | None = None) -> str:
    """ModelServerConfig text: label targets pinned as specific versions, else the latest one."""
    config = ModelServerConfig()
    model = config.model_config_list.config.add(name=model_name, base_path=base_path, model_platform="tensorflow")
    if labels:
        model.model_version_policy.specific.versions.extend(sorted(set(labels.values())))
        for label, version in sorted(labels.items()):
            model.version_labels[label] = version
    else:
        model.model_version_policy.latest.num_versions = 1
    return text_format.MessageToString(config)


def batching_parameters(device: str = "cpu", num_batch_threads: int = COMMITTED_BATCH_THREADS) -> str:
    """BatchingParameters text (scalars are wrapper messages: `max_batch_size { value: 32 }`)."""
    params = {**BATCHING[device], "num_batch_threads": num_batch_threads}
    keys = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")
    lines = [f"{key} {{ value: {params[key]} }}" for key in keys]
    lines += [f"allowed_batch_sizes: {size}" for size in params["allowed_batch_sizes"]]
    return "\n".join(lines) + "\n"


def monitoring_config() -> str:
    return f'prometheus_config {{\n  enable: true\n  path: "{PROMETHEUS_PATH}"\n}}\n'


def write_deployment(export_dir: Path, model_name: str, labels: dict[str, int] | None = None,
                     device: str | None = None, container_root: str | None = None,
                     num_batch_threads: int | None = None) -> Path:
    """Write the three files into `<export_dir>/tfserving/`, checking the name and label targets.

    None for `device`, `container_root` or `num_batch_threads` keeps what the deployment already has:
    the batching file as it is (written for the CPU and `COMMITTED_BATCH_THREADS` when missing), the
    base path's container root as `models.config` names it (else /models)."""
    if not MODEL_NAME.match(model_name):
        raise ValueError(f"--model-name {model_name!r} is not a model export.run can write: use letters, "
                         "digits, '-', '_' or '.' (no quotes, spaces or newlines), not starting with '.'.")
    for label in labels or {}:
        if not MODEL_NAME.match(label):
            raise ValueError(f"label {label!r} must be letters, digits, '-', '_' or '.'.")
    if num_batch_threads is not None and num_batch_threads < 1:
        raise ValueError(f"--num-batch-threads must be at least 1, got {num_batch_threads}.")
    target = Path(export_dir) / "tfserving"
    versions = {int(p.name) for p in (target / model_name).iterdir() if p.name.isdigit()} \
        if (target / model_name).is_dir() else set()
    if not versions:
        raise ValueError(f"{target / model_name} has no versions; run python -m export.run first.")
    missing = {k: v for k, v in (labels or {}).items() if v not in versions}
    if missing:
        raise ValueError(f"labels point at versions that were not exported: {missing} (exported: {sorted(versions)})")
    container_root = container_root or current_container_root(target / "models.config", model_name) or "/models"
    # Atomic: a server polling the config (--model_config_file_poll_wait_seconds) never reads half a file.
    write_text_atomic(target / "models.config", models_config(model_name, f"{container_root}/{model_name}", labels))
    batching = target / "batching_parameters.txt"
    if device or num_batch_threads is not None or not batching.is_file():
        write_text_atomic(batching, batching_parameters(device or "cpu", num_batch_threads or COMMITTED_BATCH_THREADS))
    if not (target / "monitoring.config").is_file():
        write_text_atomic(target / "monitoring.config", monitoring_config())
    return target


def current_container_root(path: Path, model_name: str) -> str | None:
    """The container root an existing `models.config` gives `model_name`'s base path, if any."""
    if not path.is_file():
        return None
    try:
        config = text_format.Parse(path.read_text(), ModelServerConfig())
    except text_format.ParseError:
        return None
    for model in config.model_config_list.config:
        if model.name == model_name and model.base_path.endswith(f"/{model_name}"):
            return model.base_path[: -len(model_name) - 1] or None
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy.tfserving.config", description=__doc__.split("\n\n")[0])
    parser.add_argument("--export-dir", default="exports")
    parser.add_argument("--model-name", default="generator")
    parser.add_argument("--stable", type=int, help="Version the 'stable' label points at.")
    parser.add_argument("--canary", type=int, help="Version the 'canary' label points at.")
    parser.add_argument("--device", choices=["cpu", "gpu"], default=None,
                        help="Batching parameters for this device (default: keep the deployment's; cpu for a new one).")
    parser.add_argument("--container-root", default=None, help="Where the model repository is mounted in the "
                        "container (default: keep the deployment's; /models for a new one).")
    parser.add_argument("--num-batch-threads", type=int, default=None,
                        help="Batch threads: one per core of the serving host (default: keep the deployment's; "
                             f"this machine's {os.cpu_count()} for a new one).")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    labels = {k: v for k, v in (("stable", args.stable), ("canary", args.canary)) if v is not None}
    batching = Path(args.export_dir) / "tfserving" / "batching_parameters.txt"
    rewrite = args.device or args.num_batch_threads is not None or not batching.is_file()
    threads = args.num_batch_threads if args.num_batch_threads is not None else (
        (os.cpu_count() or 1) if rewrite else None)
    try:
        target = write_deployment(Path(args.export_dir), args.model_name, labels, args.device, args.container_root,
                                  threads)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"Wrote models.config, batching_parameters.txt and monitoring.config to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
