"""tensorflow_model_server's command line on our server: same flag names, meanings and defaults.

    python -m serving.server --model_config_file=/models/models.config \
        --model_config_file_poll_wait_seconds=60 --enable_batching \
        --batching_parameters_file=/models/batching_parameters.txt \
        --monitoring_config_file=/models/monitoring.config

`add_tfserving_flags` adds TF Serving's flags beside ours (`--port` is `--grpc-port`,
`--rest_api_port` is `--rest-port`, ...); `resolve` turns either spelling into the list of models
to serve and reads the config files (`serving.config.ServerConfig` is built from what it returns). TF Serving's tuning flags (threads, warmup, its
TensorFlow session, TPU...) are accepted with one warning line that says what each did, so a manifest
written for tensorflow_model_server starts; those with an equivalent here set it. Flags whose absence a
client would notice (TLS, a Unix socket, CORS, the gRPC health service) are refused by name, so a
deployment never believes they took effect. The one deliberate difference: REST is on
8501 by default, as in TF Serving's Docker image (the binary's own default is 0, off).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from serving.engine.model_config import ModelConfig
from serving.protocols.tfserving.config_files import (USED_BATCHING_FIELDS, BatchingSettings, ConfigError,
                                                     read_batching_parameters, read_models_config,
                                                     read_monitoring_config)


# TF Serving flags (tensorflow_serving/model_servers/main.cc) whose absence a client would notice
# (TLS, a socket, CORS headers, a health service): refused by name, never silently dropped.
REFUSED = {
    "grpc_socket_path": "gRPC listens on --host:--port only",
    "rest_api_enable_cors_support": "put a proxy in front for CORS",
    "use_alts_credentials": "terminate TLS in a proxy",
    "ssl_config_file": "terminate TLS in a proxy",
    "enable_per_model_batching_parameters": "one --batching_parameters_file applies to every model",
    "enable_grpc_healthcheck_service": "poll REST /ready",
}
# Tuning flags: a manifest written for tensorflow_model_server keeps working. Each is accepted with
# one warning line; the ones with an equivalent here set it (unless our own flag is given too).
EQUIVALENT = {"tensorflow_intra_op_parallelism": "intra_op_threads",
              "tensorflow_session_parallelism": "intra_op_threads"}
TUNING = {
    "rest_api_num_threads": "REST runs on one asyncio event loop",
    "num_load_threads": "versions load one at a time, off the event loop",
    "num_unload_threads": "versions unload once their in-flight requests finish",
    "flush_filesystem_caches": "onnxruntime reads the model once",
    "tensorflow_session_parallelism": "--intra-op-threads",
    "tensorflow_session_config_file": "use --intra-op-threads and --device",
    "tensorflow_intra_op_parallelism": "--intra-op-threads",
    "tensorflow_inter_op_parallelism": "onnxruntime runs one graph at a time per call",
    "platform_config_file": "the platform is always onnxruntime",
    "per_process_gpu_memory_fraction": "use --device",
    "saved_model_tags": "the server loads ONNX files, not SavedModels",
    "grpc_channel_arguments": "use --max-body-bytes",
    "grpc_max_threads": "gRPC runs on the asyncio event loop",
    "enable_model_warmup": "onnxruntime sessions need no warmup replay",
    "num_request_iterations_for_warmup": "onnxruntime sessions need no warmup replay",
    "remove_unused_fields_from_bundle_metagraph": "there is no MetaGraphDef",
    "prefer_tflite_model": "the server loads ONNX files",
    "num_tflite_pools": "the server loads ONNX files",
    "num_tflite_interpreters_per_pool": "the server loads ONNX files",
    "enable_signature_method_name_check": "the one signature is serving_default",
    "xla_cpu_compilation_enabled": "onnxruntime does not use XLA",
    "xla_gpu_compilation_enabled": "onnxruntime does not use XLA",
    "enable_profiler": "use onnxruntime's own profiling",
    "thread_pool_factory_config_file": "use --num-batch-threads",
    "mixed_precision": "export a float16 variant instead",
    "skip_initialize_tpu": "there is no TPU support",
    "enable_serialization_as_tensor_content": "responses always use tensor_content",
}
# Tuning flags that are booleans: absl lets them stand alone (--enable_model_warmup); the others take a value.
BOOLEAN_TUNING = {"flush_filesystem_caches", "enable_model_warmup", "remove_unused_fields_from_bundle_metagraph",
                  "prefer_tflite_model", "enable_signature_method_name_check", "xla_cpu_compilation_enabled",
                  "xla_gpu_compilation_enabled", "enable_profiler", "skip_initialize_tpu",
                  "enable_serialization_as_tensor_content"}


def parse_bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_tfserving_flags(parser: argparse.ArgumentParser) -> None:
    """TF Serving's flags; --port/--rest_api_port/--enable_batching share our flags' settings."""
    parser.allow_abbrev = False  # TF Serving takes no abbreviations; --model_config must not mean --model_config_file
    tfs = parser.add_argument_group("TensorFlow Serving flags (tensorflow_model_server's names and defaults)")
    tfs.add_argument("--port", dest="grpc_port", type=int, default=argparse.SUPPRESS, help="gRPC port (= --grpc-port).")
    tfs.add_argument("--rest_api_port", dest="rest_port", type=int, default=argparse.SUPPRESS,
                     help="REST port (= --rest-port; 0: off).")
    tfs.add_argument("--rest_api_timeout_in_ms", type=int, default=30000, help="Timeout for REST calls.")
    tfs.add_argument("--model_name", dest="model_name", default=argparse.SUPPRESS,
                     help="Name in the API (= --model-name; TF Serving's default: 'default').")
    tfs.add_argument("--model_base_path", dest="tfs_model_base_path", default=None,
                     help="Directory of numbered versions; serves the latest one (ignored with --model_config_file).")
    tfs.add_argument("--model_config_file", default=None, help="ModelServerConfig text file: several models, "
                     "version policies, labels (--model_name and --model_base_path are then ignored).")
    tfs.add_argument("--model_config_file_poll_wait_seconds", type=int, default=0,
                     help="Re-read --model_config_file this often (0: read once at start-up).")
    tfs.add_argument("--file_system_poll_wait_seconds", type=int, default=1,
                     help="Look for new versions under each base path this often (0: only at start-up).")
    tfs.add_argument("--max_num_load_retries", type=int, default=5,
                     help="Retries of a version whose load failed; then it waits until its files change.")
    tfs.add_argument("--load_retry_interval_micros", type=int, default=60_000_000,
                     help="Wait between those retries (microseconds).")
    tfs.add_argument("--enable_batching", dest="batching", type=parse_bool, nargs="?", const=True,
                     default=argparse.SUPPRESS, help="Dynamic batching (= --batching; on by default here).")
    tfs.add_argument("--batching_parameters_file", default=None,
                     help="BatchingParameters text file: max_batch_size, batch_timeout_micros, num_batch_threads...")
    tfs.add_argument("--monitoring_config_file", default=None,
                     help="MonitoringConfig text file: prometheus_config { enable: true path: ... }.")
    tfs.add_argument("--allow_version_labels_for_unavailable_models", type=parse_bool, nargs="?", const=True,
                     default=False, help="A new label may name a version that is not loaded yet.")


def parse_labels(text: str) -> dict[str, int]:
    """Our --labels: stable=1,canary=2."""
    labels = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, version = item.partition("=")
        if not name or not version.isdigit():
            raise ValueError(f"--labels entry {item!r} must look like name=VERSION, e.g. stable=1")
        labels[name] = int(version)
    return labels


def refuse_not_applicable(argv: list[str]) -> str | None:
    """The error for the first TF Serving flag whose absence a client would notice, else None."""
    for token in argv:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0]
            if name in REFUSED:
                return (f"--{name} is a TensorFlow Serving flag that the onnxruntime server cannot honour "
                        f"({REFUSED[name]}); remove it")
    return None


def split_tuning(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """`(argv without TF Serving's tuning flags, [(name, value)] of those flags)`, in either absl
    spelling: `--name=value`, `--name value`, or a boolean standing alone."""
    rest, tuning, tokens = [], [], iter(argv)
    for token in tokens:
        name, has_value, value = token[2:].partition("=") if token.startswith("--") else ("", False, "")
        if name not in TUNING:
            rest.append(token)
        elif has_value or name in BOOLEAN_TUNING:
            tuning.append((name, value if has_value else "true"))
        else:
            tuning.append((name, next(tokens, "")))
    return rest, tuning


def apply_tuning(args: argparse.Namespace, tuning: list[tuple[str, str]]) -> str | None:
    """Set the equivalents of `tuning` on `args`; return the one warning line that says what each
    flag did (None without any)."""
    said = []
    for name, value in tuning:
        ours = EQUIVALENT.get(name)
        if ours and value.strip().isdigit() and int(value) > 0 and not getattr(args, ours):
            setattr(args, ours, int(value))
            said.append(f"--{name}={value} (as --{ours.replace('_', '-')} {value})")
        else:
            said.append(f"--{name}={value} (no effect: {TUNING[name]})")
    return ("TensorFlow Serving tuning flag(s) accepted: " + "; ".join(said)) if said else None


def resolve(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """Either spelling -> (settings that the flags imply: `models` (ModelConfigs), the batching
    parameters file's values, `prometheus_path`; the warnings to log). `args` is left as it is."""
    sources = [flag for flag, value in (("--model", args.model), ("--model-base-path", args.model_base_path),
                                        ("--model_base_path", args.tfs_model_base_path),
                                        ("--model_config_file", args.model_config_file)) if value]
    if args.model_config_file and sources == ["--model_base_path", "--model_config_file"]:
        sources = ["--model_config_file"]  # TF Serving: the config file wins over --model_base_path
    if len(sources) != 1:
        raise ConfigError("give exactly one of --model FILE.onnx, --model-base-path DIR, --model_base_path DIR or "
                          f"--model_config_file FILE (got {', '.join(sources) or 'none'})")
    labels, settings, notices = parse_labels(args.labels), {}, []
    if args.model_config_file:
        settings["models"] = read_models_config(args.model_config_file)
    elif args.tfs_model_base_path:
        settings["models"] = [ModelConfig(args.model_name or "default", args.tfs_model_base_path, "latest", 1, (),
                                          labels)]
    else:
        path = args.model or args.model_base_path
        settings["models"] = [ModelConfig(args.model_name or (Path(path).stem if args.model else Path(path).name),
                                          path, "all", 1, (), labels)]
    if args.batching_parameters_file:
        batching: BatchingSettings = read_batching_parameters(args.batching_parameters_file)
        settings.update(max_batch_size=batching.max_batch_size, batch_timeout_ms=batching.batch_timeout_micros / 1000.0,
                        num_batch_threads=batching.num_batch_threads,
                        max_enqueued_batches=batching.max_enqueued_batches)
        if batching.no_effect:  # accepted, as TF Serving accepts them, and said once
            notices.append(f"{args.batching_parameters_file}: {', '.join(batching.no_effect)} have no effect on the "
                           f"onnxruntime batcher (it uses {', '.join(USED_BATCHING_FIELDS)})")
    settings["prometheus_path"] = read_monitoring_config(args.monitoring_config_file)
    if args.max_num_load_retries < 0 or args.load_retry_interval_micros < 0:
        raise ConfigError("--max_num_load_retries and --load_retry_interval_micros must be >= 0")
    if getattr(args, "workers", 1) < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if args.grpc_port and args.grpc_port == args.rest_port:
        raise ConfigError(f"--rest_api_port cannot be the same as --port ({args.grpc_port}); use a different port")
    return settings, notices
