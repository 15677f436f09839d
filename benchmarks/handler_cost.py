"""Event-loop CPU per gRPC ModelInfer through our whole handler stack, without sockets: what one
server process spends of its one Python thread per request besides grpc.aio itself.

    python -m benchmarks.handler_cost --model generator.onnx [--requests 20000] [--clients 32]

The real pieces as the server wires them (flags, model manager, dynamic batcher with onnxruntime
in its threads, metrics, the v2 gRPC handler and its wrapper); `clients` coroutines call the
handler back to back. Prints the event-loop thread's CPU time per request (time.thread_time), and
wall time per request, twice (the first pass warms up).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np

from serving.engine.core import RequestCore
from serving.app import grpc_handlers
from serving.config import ServerConfig
from serving.metrics import ServerMetrics
from serving.protos import open_inference as oip
from serving.server import build_manager

METHOD = "/inference.GRPCInferenceService/ModelInfer"


class _Call:
    method, invocation_metadata = METHOD, ()


class _Context:
    """A call's context as the client-streaming handlers read it: one request message, then abort on error."""

    def __init__(self, raw: bytes):
        self.raw = raw

    async def read(self) -> bytes:
        return self.raw

    async def abort(self, code, details):
        raise RuntimeError(f"{code}: {details}")


async def measure(model: str, requests: int, clients: int) -> list[tuple[float, float]]:
    args = ServerConfig.from_argv(["--model", model, "--model-name", "generator", "--intra-op-threads", "1"])
    metrics = ServerMetrics()
    manager = build_manager(args, metrics)
    await manager.apply(args.models, initial=True)
    handler = next(h for h in (g.service(_Call()) for g in grpc_handlers(RequestCore(manager), metrics, 30.0, 1000)) if h)
    request = oip.ModelInferRequest(model_name="generator")
    request.inputs.add(name="z", datatype="FP32", shape=[1, 64])
    request.raw_input_contents.append(np.random.default_rng(0).standard_normal(64).astype(np.float32).tobytes())
    context, left, passes = _Context(request.SerializeToString()), [0], []

    async def client():
        while left[0] > 0:
            left[0] -= 1
            handler.response_serializer(await handler.stream_unary(None, context))

    for _ in range(2):
        left[0], cpu, wall = requests, time.thread_time(), time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        passes.append(((time.thread_time() - cpu) / requests * 1e6, (time.perf_counter() - wall) / requests * 1e6))
    await manager.stop()
    return passes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="ONNX generator with a 64-value z")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args(argv)
    for cpu_us, wall_us in asyncio.run(measure(args.model, args.requests, args.clients)):
        print(f"event-loop CPU {cpu_us:.1f} us/request, wall {wall_us:.1f} us/request")


if __name__ == "__main__":
    main()
