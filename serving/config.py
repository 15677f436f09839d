"""The server's configuration: one frozen, typed `ServerConfig`, built once from either flag dialect.

    config = ServerConfig.from_argv(["--model", "exports/onnx/generator.onnx"])
    config = ServerConfig.from_argv(["--model_config_file=/models/models.config", "--port=8500"])

Our flags (`--rest-port`, `--model-base-path`, ...) and tensorflow_model_server's (`--rest_api_port`,
`--model_config_file`, ..., `serving.protocols.tfserving.flags`) fill the same fields; TF Serving's
config files are read here, once, so nothing downstream sees a flag or a file name it must interpret.
What a reader of the logs should know about how the flags were taken is kept in `notices`.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from common.errors import ConfigError
from serving.engine.model_config import ModelConfig
from serving.protocols.tfserving.flags import (add_tfserving_flags, apply_tuning, refuse_not_applicable, resolve,
                                               split_tuning)

DESCRIPTION = ("An onnxruntime model server that speaks TensorFlow Serving's APIs (canonical) and the Open Inference "
               "Protocol (KServe v2), on the same two ports.")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serving.server", description=DESCRIPTION,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = p.add_mutually_exclusive_group()  # or TF Serving's --model_base_path / --model_config_file
    source.add_argument("--model", help="One .onnx file, served as version 1.")
    source.add_argument("--model-base-path", help="Directory of numbered versions: <dir>/<version>/<file>.onnx.")
    p.add_argument("--model-name", default=None, help="Name in the API (default: the file or directory name).")
    p.add_argument("--labels", default="", help="Version labels, e.g. stable=1,canary=2.")
    p.add_argument("--host", default="127.0.0.1", help="Bind address; 0.0.0.0 exposes the server to the network.")
    p.add_argument("--rest-port", type=int, default=8501, help="REST port (0: off).")
    p.add_argument("--grpc-port", type=int, default=8500, help="gRPC port (0: off).")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="onnxruntime device.")
    p.add_argument("--variant", default=None, choices=["float32", "auto", "int8", "fp16"],
                   help="Serve a published ONNX variant (auto: the device's fast one, when published; default float32).")
    p.add_argument("--intra-op-threads", type=int, default=0, help="onnxruntime threads per call (0: its default).")
    p.add_argument("--batching", action=argparse.BooleanOptionalAction, default=True, help="Dynamic batching.")
    p.add_argument("--max-batch-size", type=int, default=32, help="Rows per batched onnxruntime call.")
    p.add_argument("--batch-timeout-ms", type=float, default=0.0,
                   help="Longest a batch waits for more requests once a runner is free (0: natural batching only).")
    p.add_argument("--num-batch-threads", type=int, default=2, help="Batches run at once (per worker).")
    p.add_argument("--workers", type=int, default=1,
                   help="Server processes sharing both ports (SO_REUSEPORT, Linux), under one supervisor that "
                        "restarts a worker that dies. Each loads the models and batches its own requests; metrics "
                        "show the sum over all. More than 1 pays when one process's Python is the limit and "
                        "cores are free; the kernel spreads connections, so one client connection meets one worker "
                        "(serving/transports/workers.py; BENCHMARKS.md 4b).")
    p.add_argument("--max-request-batch", type=int, default=256, help="Most rows one request may ask for.")
    p.add_argument("--max-body-bytes", type=int, default=None,
                   help="Largest request body, REST and gRPC (default: twice the largest legal request of the "
                        "served models, --max-request-batch rows of z as JSON at 25 bytes a value, and at least "
                        "1 MiB: 1 MiB for 256 rows x 64 values; a bigger body is refused unread, 413).")
    p.add_argument("--max-enqueued-batches", type=int, default=16,
                   help="Full batches that may wait per model version; beyond that requests get 429 / "
                        "RESOURCE_EXHAUSTED at once (TF Serving's max_enqueued_batches).")
    p.add_argument("--max-connections", type=int, default=None,
                   help="Open REST connections, open gRPC connections and gRPC calls waiting for their request "
                        "message, each at most; twice as many gRPC calls may run at once "
                        "(default: 1000, or fewer when the file-descriptor limit, raised to its hard limit, cannot "
                        "hold 2 per connection plus 272; a larger value is lowered to what fits). 16 more REST "
                        "connections are reserved for /healthz, /ready and metrics.")
    p.add_argument("--read-timeout-seconds", type=float, default=30.0,
                   help="Longest a client may take to send a request's headers and body (gRPC: its handshake, "
                        "and each call's request message).")
    p.add_argument("--idle-timeout-seconds", type=float, default=30.0,
                   help="Idle connections (no request in flight) are closed after this long.")
    p.add_argument("--version-settle-seconds", type=float, default=2.0,
                   help="A new version's files must be unchanged this long before it is loaded (a version "
                        "still being copied is not loaded half-written).")
    p.add_argument("--grace-seconds", type=float, default=10.0, help="Time in-flight requests get on shutdown.")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    add_tfserving_flags(p)
    return p


# Every flag's default, written once (in the parser, ours and TF Serving's): the fields below take theirs.
_FLAG_DEFAULTS = vars(build_parser().parse_args([]))


@dataclass(frozen=True)
class ServerConfig:
    """Everything a server needs to start, resolved: field names are the flags' (TF Serving's where
    only it has one); see `python -m serving.server --help` for each."""

    models: tuple[ModelConfig, ...]
    host: str = _FLAG_DEFAULTS["host"]
    rest_port: int = _FLAG_DEFAULTS["rest_port"]
    grpc_port: int = _FLAG_DEFAULTS["grpc_port"]
    device: str = _FLAG_DEFAULTS["device"]
    variant: str | None = _FLAG_DEFAULTS["variant"]
    intra_op_threads: int = _FLAG_DEFAULTS["intra_op_threads"]
    batching: bool = _FLAG_DEFAULTS["batching"]
    max_batch_size: int = _FLAG_DEFAULTS["max_batch_size"]
    batch_timeout_ms: float = _FLAG_DEFAULTS["batch_timeout_ms"]
    num_batch_threads: int = _FLAG_DEFAULTS["num_batch_threads"]
    max_enqueued_batches: int = _FLAG_DEFAULTS["max_enqueued_batches"]
    workers: int = _FLAG_DEFAULTS["workers"]
    max_request_batch: int = _FLAG_DEFAULTS["max_request_batch"]
    max_body_bytes: int | None = _FLAG_DEFAULTS["max_body_bytes"]
    # max_connections None: sized from the file-descriptor limit when the server starts
    max_connections: int | None = _FLAG_DEFAULTS["max_connections"]
    read_timeout_seconds: float = _FLAG_DEFAULTS["read_timeout_seconds"]
    idle_timeout_seconds: float = _FLAG_DEFAULTS["idle_timeout_seconds"]
    version_settle_seconds: float = _FLAG_DEFAULTS["version_settle_seconds"]
    grace_seconds: float = _FLAG_DEFAULTS["grace_seconds"]
    log_level: str = _FLAG_DEFAULTS["log_level"]
    rest_api_timeout_in_ms: int = _FLAG_DEFAULTS["rest_api_timeout_in_ms"]
    model_config_file: str | None = _FLAG_DEFAULTS["model_config_file"]
    model_config_file_poll_wait_seconds: int = _FLAG_DEFAULTS["model_config_file_poll_wait_seconds"]
    file_system_poll_wait_seconds: int = _FLAG_DEFAULTS["file_system_poll_wait_seconds"]
    max_num_load_retries: int = _FLAG_DEFAULTS["max_num_load_retries"]
    load_retry_interval_micros: int = _FLAG_DEFAULTS["load_retry_interval_micros"]
    allow_version_labels_for_unavailable_models: bool = _FLAG_DEFAULTS["allow_version_labels_for_unavailable_models"]
    prometheus_path: str | None = None
    notices: tuple[str, ...] = ()  # how the flags were taken, for the log once it is set up

    @classmethod
    def from_argv(cls, argv: list[str]) -> ServerConfig:
        """Parse a command line in either dialect; ConfigError names a flag or file that cannot be
        honoured, argparse exits 2 on a malformed one."""
        refused = refuse_not_applicable(argv)
        if refused:
            raise ConfigError(refused)
        argv, tuning = split_tuning(argv)
        args = build_parser().parse_args(argv)
        said = apply_tuning(args, tuning)
        return cls.from_args(args, (said,) if said else ())

    @classmethod
    def from_args(cls, args: argparse.Namespace, notices: tuple[str, ...] = ()) -> ServerConfig:
        """From parsed flags (`build_parser`), reading the config files they name."""
        settings, said = resolve(args)
        names = {f.name for f in dataclasses.fields(cls)}
        values = {name: getattr(args, name) for name in names if hasattr(args, name)}
        values.update(settings, models=tuple(settings["models"]), notices=(*notices, *said))
        return cls(**values)

    def replace(self, **changes) -> ServerConfig:
        return dataclasses.replace(self, **changes)
