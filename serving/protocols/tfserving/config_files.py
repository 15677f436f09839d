"""TF Serving's server files, read with its own protobuf messages: models.config, batching, monitoring.

    models = read_models_config("models.config")           # --model_config_file
    batching = read_batching_parameters("batching.txt")     # --batching_parameters_file
    prometheus_path = read_monitoring_config("monitoring.config")   # --monitoring_config_file

Each file is text-format protobuf (`ModelServerConfig`, `BatchingParameters`, `MonitoringConfig`),
so a file TF Serving accepts is accepted here and means the same. Errors are `ConfigError`s whose
message names the file and the line, never a traceback.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format

from common.errors import ConfigError  # noqa: F401 (one class for training and serving; re-exported)
from serving import protos
from serving.engine.model_config import ModelConfig

BatchingParameters = protos.message("tensorflow.serving.BatchingParameters")
MonitoringConfig = protos.message("tensorflow.serving.MonitoringConfig")
PLATFORMS = ("", "tensorflow", "onnx", "onnxruntime")  # "tensorflow": the same config TF Serving reads
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


@dataclass(frozen=True)
class BatchingSettings:
    """BatchingParameters with TF Serving's defaults for the fields a file leaves out."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple[int, ...] = ()
    no_effect: tuple[str, ...] = ()              # fields the file sets that onnxruntime has no use for


# BatchingParameters fields the onnxruntime batcher uses; the others (thread_pool_name,
# enable_large_batch_splitting, max_execution_batch_size, allowed_batch_sizes,
# pad_variable_length_inputs) are accepted, checked where TF Serving checks them, and reported.
USED_BATCHING_FIELDS = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")


def parse_text(path: str | Path, message_class, what: str):
    """Parse a text-format protobuf file; errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {what} {path}: {err}") from None
    try:
        return text_format.Parse(text, message_class()), text
    except text_format.ParseError as err:
        line, column = err.GetLine(), err.GetColumn()
        detail = re.sub(r"^\d+:\d+ : ", "", str(err))
        raise ConfigError(f"{path}:{line}:{column}: invalid {what} ({message_class.DESCRIPTOR.full_name}): "
                          f"{detail}") from None


def _line_of(text: str, pattern: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if re.search(pattern, line):
            return number
    return 1


def models_from_proto(config, path: str = "<ReloadConfigRequest>", text: str = "") -> list[ModelConfig]:
    """ModelServerConfig message -> validated ModelConfigs (used for the file and for gRPC reloads)."""
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{path}: only model_config_list is supported (custom_model_config is TF-specific)")
    models, seen = [], set()
    for entry in config.model_config_list.config:
        pattern = r'name:\s*"' + re.escape(entry.name) + '"'
        where = f"{path}:{_line_of(text, pattern) if text else 1}"
        if not entry.name:
            raise ConfigError(f"{where}: every config needs a name")
        if entry.name in seen:
            raise ConfigError(f"{where}: model '{entry.name}' is configured twice")
        seen.add(entry.name)
        if not entry.base_path:
            raise ConfigError(f"{where}: model '{entry.name}' has no base_path (the directory of <version>/ folders)")
        if entry.model_platform not in PLATFORMS:
            raise ConfigError(f"{where}: model_platform '{entry.model_platform}' of '{entry.name}' is not served by "
                              f"the onnxruntime server; use one of {[p for p in PLATFORMS if p]}")
        policy = entry.model_version_policy.WhichOneof("policy_choice") or "latest"
        num = entry.model_version_policy.latest.num_versions if policy == "latest" else 1
        specific = tuple(sorted(entry.model_version_policy.specific.versions))
        if policy == "specific" and not specific:
            raise ConfigError(f"{where}: model '{entry.name}' has a specific version policy with no versions")
        models.append(ModelConfig(entry.name, entry.base_path, policy, max(num, 1), specific,
                                  dict(entry.version_labels)))
    return models


def read_models_config(path: str | Path) -> list[ModelConfig]:
    config, text = parse_text(path, protos.ModelServerConfig, "model config file")
    return models_from_proto(config, str(path), text)


def read_batching_parameters(path: str | Path | None) -> BatchingSettings:
    if not path:
        return BatchingSettings()
    params, _ = parse_text(path, BatchingParameters, "batching parameters file")
    defaults = BatchingSettings()
    values = {name: getattr(params, name).value if params.HasField(name) else getattr(defaults, name)
              for name in USED_BATCHING_FIELDS}
    allowed = tuple(params.allowed_batch_sizes)
    if min(values.values()) < 0 or values["max_batch_size"] < 1 or values["num_batch_threads"] < 1:
        raise ConfigError(f"{path}: max_batch_size and num_batch_threads must be >= 1, other values >= 0")
    splitting = params.HasField("enable_large_batch_splitting") and params.enable_large_batch_splitting.value
    largest, largest_name = (params.max_execution_batch_size.value, "max_execution_batch_size") \
        if splitting and params.HasField("max_execution_batch_size") else (values["max_batch_size"], "max_batch_size")
    if largest > values["max_batch_size"]:
        raise ConfigError(f"{path}: max_execution_batch_size ({largest}) must not exceed max_batch_size "
                          f"({values['max_batch_size']}), as TF Serving requires")
    if allowed and (list(allowed) != sorted(set(allowed)) or allowed[-1] != largest):
        raise ConfigError(f"{path}: allowed_batch_sizes must increase and end with {largest_name} "
                          f"({largest}), as TF Serving requires; got {list(allowed)}")
    no_effect = tuple(f.name for f, _ in params.ListFields() if f.name not in USED_BATCHING_FIELDS)
    return BatchingSettings(**values, allowed_batch_sizes=allowed, no_effect=no_effect)


def read_monitoring_config(path: str | Path | None) -> str | None:
    """The Prometheus path when the file enables it, else None."""
    if not path:
        return None
    config, _ = parse_text(path, MonitoringConfig, "monitoring config file")
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    if prometheus.path and not prometheus.path.startswith("/"):
        raise ConfigError(f"{path}: prometheus_config.path must start with '/', got {prometheus.path!r}")
    return prometheus.path or DEFAULT_PROMETHEUS_PATH
