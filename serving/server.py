"""`python -m serving.server`: an onnxruntime model server that speaks TensorFlow Serving's APIs.

    python -m serving.server --model exports/onnx/generator.onnx
    python -m serving.server --model-base-path exports/onnx-models/generator --labels stable=1,canary=2

REST on --rest-port (8501) and gRPC on --grpc-port (8500), bound to 127.0.0.1 unless --host says
otherwise. SIGTERM (or Ctrl-C) stops accepting, lets in-flight requests finish, then exits 0.
Needs numpy, onnxruntime, protobuf, grpcio, starlette, uvicorn and prometheus-client: no TensorFlow.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

import grpc
import uvicorn

from serving.batching import DynamicBatcher
from serving.grpc_api import build_handlers
from serving.metrics import ServerMetrics
from serving.repository import load_model
from serving.rest_api import create_app
from serving.service import GeneratorService

log = logging.getLogger("serving.server")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serving.server", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="One .onnx file, served as version 1.")
    source.add_argument("--model-base-path", help="Directory of numbered versions: <dir>/<version>/<file>.onnx.")
    p.add_argument("--model-name", default=None, help="Name in the API (default: the file or directory name).")
    p.add_argument("--labels", default="", help="Version labels, e.g. stable=1,canary=2.")
    p.add_argument("--host", default="127.0.0.1", help="Bind address; 0.0.0.0 exposes the server to the network.")
    p.add_argument("--rest-port", type=int, default=8501, help="REST port (0: off).")
    p.add_argument("--grpc-port", type=int, default=8500, help="gRPC port (0: off).")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="onnxruntime device.")
    p.add_argument("--intra-op-threads", type=int, default=0, help="onnxruntime threads per call (0: its default).")
    p.add_argument("--batching", action=argparse.BooleanOptionalAction, default=True, help="Dynamic batching.")
    p.add_argument("--max-batch-size", type=int, default=32, help="Rows per batched onnxruntime call.")
    p.add_argument("--batch-timeout-ms", type=float, default=0.0,
                   help="Longest a batch waits for more requests once a runner is free (0: natural batching only).")
    p.add_argument("--num-batch-threads", type=int, default=2, help="Batches run at once.")
    p.add_argument("--max-request-batch", type=int, default=256, help="Most rows one request may ask for.")
    p.add_argument("--max-body-bytes", type=int, default=16 << 20, help="Largest request body (REST and gRPC).")
    p.add_argument("--grace-seconds", type=float, default=10.0, help="Time in-flight requests get on shutdown.")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def parse_labels(text: str) -> dict[str, int]:
    labels = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, version = item.partition("=")
        if not name or not version.isdigit():
            raise ValueError(f"--labels entry {item!r} must look like name=VERSION, e.g. stable=1")
        labels[name] = int(version)
    return labels


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # signals are ours: one SIGTERM stops REST and gRPC together
        yield


async def serve(args) -> None:
    from pathlib import Path

    name = args.model_name or (Path(args.model).stem if args.model else Path(args.model_base_path).name)
    model = load_model(name, args.model, args.model_base_path, parse_labels(args.labels), device=args.device,
                       intra_op_threads=args.intra_op_threads or None)
    metrics = ServerMetrics()
    batchers = {(name, version): DynamicBatcher(generator, args.max_batch_size, args.batch_timeout_ms,
                                                args.num_batch_threads, args.batching, metrics.batch_size.observe)
                for version, generator in model.versions.items()}
    for batcher in batchers.values():
        batcher.start()
    service = GeneratorService({name: model}, batchers, args.max_request_batch)
    state = {"ready": False}

    rest = None
    if args.rest_port:
        app = create_app(service, metrics, args.max_body_bytes, readiness=lambda: state["ready"])
        rest = _Uvicorn(uvicorn.Config(app, host=args.host, port=args.rest_port, log_level=args.log_level,
                                       access_log=False, timeout_graceful_shutdown=args.grace_seconds))
    grpc_server = None
    if args.grpc_port:
        options = [("grpc.max_receive_message_length", args.max_body_bytes),
                   ("grpc.max_send_message_length", 256 << 20)]
        grpc_server = grpc.aio.server(handlers=build_handlers(service, metrics), options=options)
        address = f"[{args.host}]:{args.grpc_port}" if ":" in args.host else f"{args.host}:{args.grpc_port}"
        grpc_server.add_insecure_port(address)
        await grpc_server.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    rest_task = loop.create_task(rest.serve()) if rest else None
    while rest and not rest.started:
        if rest_task.done():  # e.g. the port is taken
            rest_task.result()
            raise RuntimeError(f"REST server failed to start on {args.host}:{args.rest_port}")
        await asyncio.sleep(0.02)
    state["ready"] = True
    versions = ", ".join(str(v) for v in sorted(model.versions))
    log.warning("Serving %s (versions %s) on %s: REST %s, gRPC %s; providers %s", name, versions, args.host,
                args.rest_port or "off", args.grpc_port or "off", next(iter(model.versions.values())).providers)

    waiters = [loop.create_task(stop.wait())] + ([rest_task] if rest_task else [])
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    state["ready"] = False
    log.warning("Shutting down: finishing in-flight requests (up to %.0fs)", args.grace_seconds)
    if grpc_server:
        await grpc_server.stop(grace=args.grace_seconds)
    if rest:
        rest.should_exit = True
        await rest_task
    for batcher in batchers.values():
        await batcher.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(args))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
