"""`python -m serving.server`: an onnxruntime model server that speaks TensorFlow Serving's APIs
(canonical) and the Open Inference Protocol (KServe v2), on the same two ports.

    python -m serving.server --model exports/onnx/generator.onnx
    python -m serving.server --model-base-path exports/onnx-models/generator --labels stable=1,canary=2
    python -m serving.server --model_config_file=models.config --model_config_file_poll_wait_seconds=60

TF Serving's flags work too (serving/flags.py), with their meanings and defaults; new versions under
a base path are picked up every --file_system_poll_wait_seconds (serving/model_manager.py).

REST on --rest-port (8501) and gRPC on --grpc-port (8500), bound to 127.0.0.1 unless --host says
otherwise; a taken port is refused with one line and exit code 2. SIGTERM (or Ctrl-C) stops
accepting on both protocols at once, lets in-flight requests finish within --grace-seconds, then
exits 0. Slow, idle and excess clients are bounded by --read-timeout-seconds, --idle-timeout-seconds,
--max-connections and --max-enqueued-batches.
What is served where: `serving.frontends` (one module per protocol over `serving.core`).
Needs numpy, onnxruntime, protobuf, grpcio, starlette, uvicorn and prometheus-client: no TensorFlow.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys

import grpc
import uvicorn

from serving import workers
from serving.batching import DynamicBatcher
from serving.connections import bind_socket, connection_cap, guarded_h11_protocol, raise_fd_limit
from serving.core import RequestCore
from serving.flags import add_tfserving_flags, apply_tuning, refuse_not_applicable, resolve, split_tuning
from serving.frontends.grpc_app import build_handlers
from serving.frontends.rest_app import create_app
from serving.frontends.rest_common import RestContext
import serving
from serving.metrics import ServerMetrics
from serving.model_manager import ModelManager, poll_forever
from serving.onnx_generator import OnnxGenerator
from serving.rest_intake import default_body_limit
from serving.server_config import read_models_config
from serving.version_watch import LoadGate

log = logging.getLogger("serving.server")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serving.server", description=__doc__.split("\n\n")[0],
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
                        "(serving/workers.py; BENCHMARKS.md 4b).")
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


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # signals are ours: one SIGTERM stops REST and gRPC together
        yield


def build_rest(app, sock: socket.socket, metrics, args) -> _Uvicorn:
    closed = lambda reason: metrics.connections_closed.labels(reason).inc()  # noqa: E731
    return _Uvicorn(uvicorn.Config(
        app, log_level=args.log_level, access_log=False, timeout_graceful_shutdown=args.grace_seconds,
        timeout_keep_alive=max(1, round(args.idle_timeout_seconds)),
        http=guarded_h11_protocol(args.read_timeout_seconds, args.max_connections, closed)))


def bind_grpc(args, max_message_bytes: int, share: bool = False) -> grpc.aio.Server:
    """A gRPC server bound to --grpc-port (handlers are added before it starts); `share`: one of
    the workers of --workers N, which share the port."""
    ms = lambda seconds: int(seconds * 1000)  # noqa: E731
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", 256 << 20),
               ("grpc.so_reuseport", int(share)),  # else a second server silently shares (steals from) the port
               ("grpc.max_allowed_incoming_connections", args.max_connections),
               ("grpc.max_concurrent_streams", 100),
               ("grpc.server_handshake_timeout_ms", ms(args.read_timeout_seconds)),
               ("grpc.max_connection_idle_ms", ms(args.idle_timeout_seconds)),
               ("grpc.keepalive_time_ms", ms(max(args.idle_timeout_seconds, 10))),
               ("grpc.keepalive_timeout_ms", ms(args.read_timeout_seconds))]
    # Calls waiting for their message are at most --max-connections (serving.frontends.grpc_common.
    # MessageWait), so as many slots again always remain for calls that sent theirs.
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=2 * args.max_connections)
    address = f"[{args.host}]:{args.grpc_port}" if ":" in args.host else f"{args.host}:{args.grpc_port}"
    if not share:  # a taken port: one line, before gRPC's own logs (the supervisor checked a shared one)
        bind_socket(args.host, args.grpc_port, "--grpc-port").close()
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if bound != args.grpc_port:
        raise ValueError(f"cannot listen for gRPC on {address}: the port is taken; "
                         "stop the other server or pick another --grpc-port")
    return server


def size_connections(args) -> None:
    """--max-connections from the file-descriptor limit: a cap the process cannot hold is no cap."""
    fd_limit = raise_fd_limit()
    cap = connection_cap(fd_limit, args.max_connections)
    if args.max_connections and cap < args.max_connections:
        log.warning("--max-connections %d lowered to %d: the file-descriptor limit is %d", args.max_connections,
                    cap, fd_limit)
    args.max_connections = cap


def build_manager(args, metrics: ServerMetrics) -> ModelManager:
    """The model manager: each version loads into an OnnxGenerator with its own dynamic batcher."""
    def new_batcher(generator) -> DynamicBatcher:
        batcher = DynamicBatcher(generator, args.max_batch_size, args.batch_timeout_ms, args.num_batch_threads,
                                 args.batching, metrics.batch_size.observe, args.max_enqueued_batches)
        batcher.start()
        return batcher

    gate = LoadGate(args.version_settle_seconds, args.max_num_load_retries, args.load_retry_interval_micros / 1e6)
    return ModelManager(lambda path: OnnxGenerator(path, device=args.device, variant=args.variant,
                                                   intra_op_threads=args.intra_op_threads or None),
                        new_batcher, args.allow_version_labels_for_unavailable_models, gate)


def log_serving(manager: ModelManager, args, body_limit: int) -> None:
    served = "; ".join(f"{m.name} (versions {', '.join(map(str, m.versions))})" for m in manager.models.values())
    first = next(iter(next(iter(manager.models.values())).versions.values()))
    log.warning("Serving %s on %s: REST %s (TF Serving /v1, Open Inference Protocol /v2, samples page /samples), "
                "gRPC %s; %s; bodies up to %d bytes", served, args.host, args.rest_port or "off",
                args.grpc_port or "off", first.description, body_limit)


async def serve(args, worker: tuple[int, object] | None = None) -> None:
    """Serve until SIGTERM/SIGINT. `worker`: (index, report queue) for one of --workers N, which
    shares both ports and reports to its supervisor once ready."""
    size_connections(args)
    share = worker is not None
    # Bind both ports first: a clash is refused in one line, before the model loads or anything serves.
    # A worker's supervisor checked them; it listens once its models are loaded, so no connection
    # waits in the backlog of a worker that is still loading.
    rest_socket = bind_socket(args.host, args.rest_port) if args.rest_port and not share else None
    if args.grpc_port and not share:
        bind_socket(args.host, args.grpc_port, "--grpc-port").close()

    metrics = ServerMetrics()
    manager = build_manager(args, metrics)
    metrics.is_served = manager.models.__contains__  # the models of the config, loaded or not
    await manager.apply(args.models, initial=True)
    if args.rest_port and share:
        rest_socket = bind_socket(args.host, args.rest_port, share=True)
    state = {"ready": False}
    core = RequestCore(manager, args.max_request_batch, readiness=lambda: state["ready"], workers=args.workers)

    def body_limit() -> int:  # follows the served models: a new version with a wider z raises it
        dims = [g.info.latent_dim for m in manager.models.values() for g in m.versions.values()]
        return args.max_body_bytes or default_body_limit(args.max_request_batch, dims)

    grpc_server = bind_grpc(args, body_limit(), share) if args.grpc_port else None
    rest = None
    if rest_socket:
        timeout = args.rest_api_timeout_in_ms / 1000 if args.rest_api_timeout_in_ms > 0 else None
        context = RestContext(core, metrics, body_limit, args.read_timeout_seconds, timeout)
        rest = build_rest(create_app(context, args.prometheus_path), rest_socket, metrics, args)
    if grpc_server:
        grpc_server.add_generic_rpc_handlers(build_handlers(core, metrics, args.read_timeout_seconds,
                                                            args.max_connections))
        await grpc_server.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    rest_task = await _start_rest(rest, rest_socket, args) if rest else None
    state["ready"] = True
    poller = loop.create_task(poll_forever(manager, args.file_system_poll_wait_seconds, args.model_config_file,
                                           args.model_config_file_poll_wait_seconds, read_models_config))
    if worker is None or worker[0] == 0:
        log_serving(manager, args, body_limit())
    if worker is not None:
        worker[1].put((worker[0], "ready", os.getpid()))

    waiters = [loop.create_task(stop.wait())] + ([rest_task] if rest_task else [])
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    state["ready"] = False
    poller.cancel()
    await _shut_down(args, manager, grpc_server, rest, rest_task)


async def _start_rest(rest: _Uvicorn, sock: socket.socket, args) -> asyncio.Task:
    task = asyncio.get_running_loop().create_task(rest.serve(sockets=[sock]))
    while not rest.started:
        if task.done():
            task.result()
            raise RuntimeError(f"REST server failed to start on {args.host}:{args.rest_port}")
        await asyncio.sleep(0.02)
    return task


async def _shut_down(args, manager: ModelManager, grpc_server, rest, rest_task) -> None:
    """Both protocols stop accepting at once; in-flight requests get --grace-seconds."""
    log.warning("Shutting down: finishing in-flight requests (up to %.0fs)", args.grace_seconds)
    for batcher in list(manager.batchers.values()):
        batcher.flush()
    await asyncio.gather(*([grpc_server.stop(grace=args.grace_seconds)] if grpc_server else []),
                         *([_stop_rest(rest, rest_task)] if rest else []))
    await manager.stop()


async def _stop_rest(rest: _Uvicorn, task: asyncio.Task) -> None:
    """uvicorn closes its listener at once, then waits up to --grace-seconds for in-flight requests."""
    rest.should_exit = True
    await task


def worker_main(args, index: int, reports) -> None:
    """One process of --workers N (started by `serving.workers`): serve until SIGTERM."""
    workers.die_with_parent()
    logging.basicConfig(level=args.log_level.upper(),
                        format=f"%(asctime)s %(levelname)s worker {index} %(name)s: %(message)s")
    try:
        asyncio.run(serve(args, worker=(index, reports)))
    except (ValueError, FileNotFoundError) as err:
        reports.put((index, "error", str(err)))
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    refused = refuse_not_applicable(argv)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    if "--version" in argv or any(a.startswith("--version=") for a in argv):  # TF Serving's --version
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"gan-serve {version('gan-serve')} (the onnxruntime server; TensorFlow Serving's APIs)")
        except PackageNotFoundError:
            print("gan-serve (not installed as a package)")
        return 0
    argv, tuning = split_tuning(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    said = apply_tuning(args, tuning)
    if said:
        logging.getLogger("serving.server").warning("%s", said)
    if serving.IGNORED_METRICS_DIR:
        logging.getLogger("serving.server").warning(
            "ignoring PROMETHEUS_MULTIPROC_DIR=%s from the environment: this server keeps its own metrics "
            "(with --workers, in a directory its supervisor makes)", serving.IGNORED_METRICS_DIR)
    try:
        resolve(args)
        if args.workers > 1:
            return workers.run(args, worker_main)
        asyncio.run(serve(args))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
