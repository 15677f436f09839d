"""`python -m serving.server`: an onnxruntime model server that speaks TensorFlow Serving's APIs
(canonical) and the Open Inference Protocol (KServe v2), on the same two ports.

    python -m serving.server --model exports/onnx/generator.onnx
    python -m serving.server --model-base-path exports/onnx-models/generator --labels stable=1,canary=2
    python -m serving.server --model_config_file=models.config --model_config_file_poll_wait_seconds=60

In Python, the same server: `Server(ServerConfig.from_argv([...])).run()`.

REST on --rest-port (8501) and gRPC on --grpc-port (8500), bound to 127.0.0.1 unless --host says
otherwise; a taken port is refused with one line and exit code 2. SIGTERM (or Ctrl-C) stops
accepting on both protocols at once, lets in-flight requests finish within --grace-seconds, then
exits 0. Slow, idle and excess clients are bounded by --read-timeout-seconds, --idle-timeout-seconds,
--max-connections and --max-enqueued-batches.

How it is built (docs/development.md, "How the code is laid out"): `serving.config` (the typed
configuration) and this module (the `Server`) on top; `serving.app` mounts each protocol
(`serving.protocols.tfserving`, `serving.protocols.open_inference`) and the samples page on its
transport (`serving.transports`: HTTP, gRPC, the connection policy, worker processes); below them,
the engine (`serving.engine`: request core, model manager, batcher, validation, the onnxruntime
generator, version watching) and the control plane that changes what it serves (`serving.model_control`).
Needs numpy, onnxruntime, protobuf, grpcio, starlette, uvicorn and prometheus-client: no TensorFlow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys

import grpc
import uvicorn

import serving
from serving.app import create_app, grpc_handlers
from serving.config import ServerConfig
from serving.engine.batching import DynamicBatcher
from serving.engine.core import RequestCore
from serving.engine.model_manager import ModelManager
from serving.engine.onnx_generator import OnnxGenerator
from serving.engine.version_watch import LoadGate
from serving.metrics import ServerMetrics
from serving.model_control import ModelControl
from serving.protocols.tfserving.config_files import read_models_config
from serving.protocols.tfserving.flags import refuse_not_applicable
from serving.transports import workers
from serving.transports.connections import bind_socket, connection_cap, guarded_h11_protocol, raise_fd_limit
from serving.transports.json_bodies import default_body_limit
from serving.transports.rest_common import RestContext

log = logging.getLogger("serving.server")


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # signals are ours: one SIGTERM stops REST and gRPC together
        yield


def build_rest(app, metrics, config: ServerConfig) -> _Uvicorn:
    closed = lambda reason: metrics.connections_closed.labels(reason).inc()  # noqa: E731
    return _Uvicorn(uvicorn.Config(
        app, log_level=config.log_level, access_log=False, timeout_graceful_shutdown=config.grace_seconds,
        timeout_keep_alive=max(1, round(config.idle_timeout_seconds)),
        http=guarded_h11_protocol(config.read_timeout_seconds, config.max_connections, closed)))


def bind_grpc(config: ServerConfig, max_message_bytes: int, share: bool = False) -> grpc.aio.Server:
    """A gRPC server bound to --grpc-port (handlers are added before it starts); `share`: one of
    the workers of --workers N, which share the port."""
    ms = lambda seconds: int(seconds * 1000)  # noqa: E731
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", 256 << 20),
               ("grpc.so_reuseport", int(share)),  # else a second server silently shares (steals from) the port
               ("grpc.max_allowed_incoming_connections", config.max_connections),
               ("grpc.max_concurrent_streams", 100),
               ("grpc.server_handshake_timeout_ms", ms(config.read_timeout_seconds)),
               ("grpc.max_connection_idle_ms", ms(config.idle_timeout_seconds)),
               ("grpc.keepalive_time_ms", ms(max(config.idle_timeout_seconds, 10))),
               ("grpc.keepalive_timeout_ms", ms(config.read_timeout_seconds))]
    # Calls waiting for their message are at most --max-connections (serving.transports.grpc_common.
    # MessageWait), so as many slots again always remain for calls that sent theirs.
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=2 * config.max_connections)
    address = f"[{config.host}]:{config.grpc_port}" if ":" in config.host else f"{config.host}:{config.grpc_port}"
    if not share:  # a taken port: one line, before gRPC's own logs (the supervisor checked a shared one)
        bind_socket(config.host, config.grpc_port, "--grpc-port").close()
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if bound != config.grpc_port:
        raise ValueError(f"cannot listen for gRPC on {address}: the port is taken; "
                         "stop the other server or pick another --grpc-port")
    return server


def size_connections(config: ServerConfig) -> int:
    """--max-connections from the file-descriptor limit: a cap the process cannot hold is no cap."""
    fd_limit = raise_fd_limit()
    cap = connection_cap(fd_limit, config.max_connections)
    if config.max_connections and cap < config.max_connections:
        log.warning("--max-connections %d lowered to %d: the file-descriptor limit is %d", config.max_connections,
                    cap, fd_limit)
    return cap


def build_manager(config: ServerConfig, metrics: ServerMetrics) -> ModelManager:
    """The model manager: each version loads into an OnnxGenerator with its own dynamic batcher."""
    def new_batcher(generator) -> DynamicBatcher:
        batcher = DynamicBatcher(generator, config.max_batch_size, config.batch_timeout_ms, config.num_batch_threads,
                                 config.batching, metrics.batch_size.observe, config.max_enqueued_batches)
        batcher.start()
        return batcher

    gate = LoadGate(config.version_settle_seconds, config.max_num_load_retries, config.load_retry_interval_micros / 1e6)
    return ModelManager(lambda path: OnnxGenerator(path, device=config.device, variant=config.variant,
                                                   intra_op_threads=config.intra_op_threads or None),
                        new_batcher, config.allow_version_labels_for_unavailable_models, gate)


class Server:
    """One server process: binds both ports, loads the models, serves REST and gRPC until told to stop.

    `run()` blocks until SIGTERM/SIGINT (with `config.workers` > 1, as that many processes under a
    supervisor); in an event loop, `start()`, then `stop()`. `worker`: (index, report queue) when
    this is one of --workers N, which shares both ports and reports to its supervisor once ready.
    """

    def __init__(self, config: ServerConfig, worker: tuple[int, object] | None = None):
        self.config, self.worker = config, worker
        self.ready = False  # true from the moment both ports answer until shutdown begins
        self.metrics = self.manager = self.control = self.core = None
        self._rest = self._rest_task = self._grpc = self._poller = None
        self._stopping: asyncio.Event | None = None

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit code."""
        if self.config.workers > 1 and self.worker is None:
            return workers.run(self.config, worker_main)
        asyncio.run(self.serve())
        return 0

    async def serve(self) -> None:
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        await self.start()
        waiters = [loop.create_task(self._stopping.wait())] + ([self._rest_task] if self._rest_task else [])
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        await self.stop()

    def request_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def start(self) -> None:
        """Bind both ports first, so a clash is refused in one line before the model loads or
        anything serves; a worker's supervisor checked them, and a worker listens only once its
        models are loaded, so no connection waits in the backlog of a worker that is still loading."""
        config = self.config = self.config.replace(max_connections=size_connections(self.config))
        share = self.worker is not None
        rest_socket = bind_socket(config.host, config.rest_port) if config.rest_port and not share else None
        if config.grpc_port and not share:
            bind_socket(config.host, config.grpc_port, "--grpc-port").close()
        self.metrics = ServerMetrics()
        self.manager = build_manager(config, self.metrics)
        self.metrics.is_served = self.manager.models.__contains__  # the models of the config, loaded or not
        self.control = ModelControl(self.manager, list(config.models), workers=config.workers,
                                    file_system_poll_seconds=config.file_system_poll_wait_seconds,
                                    config_file=config.model_config_file,
                                    config_poll_seconds=config.model_config_file_poll_wait_seconds,
                                    read_config=read_models_config)
        await self.control.start()
        if config.rest_port and share:
            rest_socket = bind_socket(config.host, config.rest_port, share=True)
        self.core = RequestCore(self.manager, config.max_request_batch, readiness=lambda: self.ready)
        await self._start_grpc(share)
        if rest_socket:
            await self._start_rest(rest_socket)
        self.ready = True
        self._poller = asyncio.get_running_loop().create_task(self.control.poll_forever())
        if self.worker is None or self.worker[0] == 0:
            self._log_serving()
        if self.worker is not None:
            self.worker[1].put((self.worker[0], "ready", os.getpid()))

    def body_limit(self) -> int:
        """Follows the served models: a new version with a wider z raises it."""
        dims = [g.info.latent_dim for m in self.manager.models.values() for g in m.versions.values()]
        return self.config.max_body_bytes or default_body_limit(self.config.max_request_batch, dims)

    async def _start_grpc(self, share: bool) -> None:
        if not self.config.grpc_port:
            return
        self._grpc = bind_grpc(self.config, self.body_limit(), share)
        self._grpc.add_generic_rpc_handlers(grpc_handlers(self.core, self.metrics, self.config.read_timeout_seconds,
                                                          self.config.max_connections, self.control))
        await self._grpc.start()

    async def _start_rest(self, sock: socket.socket) -> None:
        config = self.config
        timeout = config.rest_api_timeout_in_ms / 1000 if config.rest_api_timeout_in_ms > 0 else None
        context = RestContext(self.core, self.metrics, self.body_limit, config.read_timeout_seconds, timeout)
        self._rest = build_rest(create_app(context, config.prometheus_path), self.metrics, config)
        self._rest_task = asyncio.get_running_loop().create_task(self._rest.serve(sockets=[sock]))
        while not self._rest.started:
            if self._rest_task.done():
                self._rest_task.result()
                raise RuntimeError(f"REST server failed to start on {config.host}:{config.rest_port}")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Both protocols stop accepting at once; in-flight requests get --grace-seconds."""
        self.ready = False
        if self._poller is not None:
            self._poller.cancel()
        grace = self.config.grace_seconds
        log.info("Shutting down: finishing in-flight requests (up to %.0fs)", grace)
        for batcher in list(self.manager.batchers.values()):
            batcher.flush()
        await asyncio.gather(*([self._grpc.stop(grace=grace)] if self._grpc else []),
                             *([self._stop_rest()] if self._rest else []))
        await self.manager.stop()

    async def _stop_rest(self) -> None:
        """uvicorn closes its listener at once, then waits up to --grace-seconds for in-flight requests."""
        self._rest.should_exit = True
        await self._rest_task

    def _log_serving(self) -> None:
        config, models = self.config, self.manager.models
        served = "; ".join(f"{m.name} (versions {', '.join(map(str, m.versions))})" for m in models.values())
        first = next(iter(next(iter(models.values())).versions.values()))
        log.info("Serving %s on %s: REST %s (TF Serving /v1, Open Inference Protocol /v2, samples page /samples), "
                    "gRPC %s; %s; bodies up to %d bytes", served, config.host, config.rest_port or "off",
                    config.grpc_port or "off", first.description, self.body_limit())


def worker_main(config: ServerConfig, index: int, reports) -> None:
    """One process of --workers N (started by `serving.transports.workers`): serve until SIGTERM."""
    workers.die_with_parent()
    logging.basicConfig(level=config.log_level.upper(),
                        format=f"%(asctime)s %(levelname)s worker {index} %(name)s: %(message)s")
    try:
        asyncio.run(Server(config, worker=(index, reports)).serve())
    except (ValueError, FileNotFoundError) as err:
        reports.put((index, "error", str(err)))
        sys.exit(2)


def print_version() -> None:
    """TF Serving's --version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        print(f"gan-serve {version('gan-serve')} (the onnxruntime server; TensorFlow Serving's APIs)")
    except PackageNotFoundError:
        print("gan-serve (not installed as a package)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    refused = refuse_not_applicable(argv)  # before anything else, --version included
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    if "--version" in argv or any(a.startswith("--version=") for a in argv):
        print_version()
        return 0
    try:
        config = ServerConfig.from_argv(argv)
        logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        for notice in config.notices:
            log.warning("%s", notice)
        if serving.IGNORED_METRICS_DIR:
            log.warning("ignoring PROMETHEUS_MULTIPROC_DIR=%s from the environment: this server keeps its own metrics "
                        "(with --workers, in a directory its supervisor makes)", serving.IGNORED_METRICS_DIR)
        return Server(config).run()
    except (ValueError, FileNotFoundError) as err:  # ConfigError included
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
