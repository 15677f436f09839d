"""A load generator written in C (nghttp2's `h2load`) for `benchmarks.server_peers`.

On a 2-core machine the Python load generator (tritonclient's asyncio clients) takes CPU from the
server it measures: 0.31 ms per gRPC call and 0.55 ms per HTTP call at 32 clients (0.3-0.6 of a
core at ~1,000 req/s, measured with getrusage). `h2load` drives the same requests for ~0.04 ms a
call (0.33 s of CPU in 6 s at ~1,400 req/s). It speaks HTTP/1.1 (`--h1`) for the v2 REST endpoint and HTTP/2 for
gRPC: a gRPC call is an HTTP/2 POST whose body is a 5-byte length prefix and the protobuf message.

    apt-get install nghttp2-client      # Debian's package for h2load

Errors: REST errors are non-2xx status codes. gRPC answers errors with HTTP 200 and a
`grpc-status` trailer and no message, so a gRPC call counts as an error when its response lacks the
bytes of a good one (`ok_bytes`, measured on one checked call before the cell).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np

GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
REST_HEADERS = ("content-type: application/json",)
IMAGE_BYTES = 28 * 28 * 4  # one float32 MNIST image: the least a good response carries


def available() -> bool:
    return shutil.which("h2load") is not None


def write_payloads(feed: dict[str, np.ndarray], workdir: Path, model: str = "generator") -> dict[str, Path]:
    """The request bodies, one file per protocol: v2 JSON tensors, and a framed ModelInferRequest."""
    from serving.protos.open_inference import ModelInferRequest

    request = ModelInferRequest(model_name=model)
    for name, array in feed.items():
        tensor = request.inputs.add(name=name, datatype="FP32" if array.dtype == np.float32 else "INT32")
        tensor.shape.extend(array.shape)
        request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    message = request.SerializeToString()
    grpc = workdir / "request.grpc"
    grpc.write_bytes(b"\x00" + struct.pack(">I", len(message)) + message)
    rest = workdir / "request.json"
    rest.write_text(json.dumps({
        "inputs": [{"name": name, "shape": list(array.shape), "datatype": "FP32" if array.dtype == np.float32
                    else "INT32", "data": array.ravel().tolist()} for name, array in feed.items()],
        "outputs": [{"name": "images", "parameters": {"binary_data": False}}]}))
    return {"grpc": grpc, "http": rest}


def command(protocol: str, port: int, payload: Path, clients: int, *limit: str) -> list[str]:
    """One connection per client, one request in flight on each: `clients` independent callers."""
    base = ["h2load", "-c", str(clients), "-m", "1", "-d", str(payload), *limit]
    if protocol == "grpc":
        headers = [f"--header={h}" for h in GRPC_HEADERS]
        return base + headers + [f"http://127.0.0.1:{port}{GRPC_PATH}"]
    headers = [f"--header={h}" for h in REST_HEADERS]
    return base + ["--h1"] + headers + [f"http://127.0.0.1:{port}/v2/models/generator/infer"]


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"h2load failed ({done.returncode}): {done.stderr[-1000:] or done.stdout[-1000:]}")
    return done.stdout


def counters(output: str) -> dict[str, int]:
    """The request, status and byte counts from h2load's summary."""
    requests = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                         r"(\d+) errored, (\d+) timeout", output)
    statuses = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output)
    data = re.search(r"traffic: .*\((\d+)\) data", output)
    if not (requests and statuses and data):
        raise RuntimeError(f"h2load printed no summary:\n{output[-1000:]}")
    done, succeeded, failed, errored, timeout = (int(requests.group(i)) for i in (3, 4, 5, 6, 7))
    return {"done": done, "succeeded": succeeded, "failed": failed + errored + timeout,
            "non_2xx": sum(int(statuses.group(i)) for i in (2, 3, 4)), "data_bytes": int(data.group(1))}


def ok_bytes(protocol: str, port: int, payload: Path) -> int:
    """The response bytes of one good call; raises when the call is not good."""
    counts = counters(_run(command(protocol, port, payload, 1, "-n", "1")))
    if counts["succeeded"] != 1 or counts["non_2xx"] or counts["data_bytes"] < IMAGE_BYTES:
        raise RuntimeError(f"the server did not answer a good {protocol} request: {counts}")
    return counts["data_bytes"]


def warm_up(protocol: str, port: int, payload: Path, seconds: float = 3.0) -> None:
    """32 connections for a few seconds: every worker process of a multi-process server gets some."""
    ok_bytes(protocol, port, payload)
    _run(command(protocol, port, payload, 32, "-D", f"{round(seconds * 1000)}ms"))


def cell(protocol: str, port: int, payload: Path, clients: int, seconds: float, workdir: Path) -> dict:
    """`clients` callers back to back for `seconds` after a two-second warm-up: req/s, p50, p99, errors."""
    good = ok_bytes(protocol, port, payload)
    _run(command(protocol, port, payload, clients, "-D", "2"))  # warm-up: these connections, first batches
    log = workdir / f"h2load-{protocol}-{clients}.log"
    counts = counters(_run(command(protocol, port, payload, clients, "-D", f"{round(seconds * 1000)}ms",
                                   f"--log-file={log}")))
    # The log has one line per finished request: start (us since the epoch), status, duration (us).
    durations_us = np.loadtxt(log, dtype=np.int64, ndmin=2)[:, 2]
    log.unlink()
    return summarize(protocol, counts, durations_us, seconds, good)


def summarize(protocol: str, counts: dict[str, int], durations_us: np.ndarray, seconds: float, good: int) -> dict:
    """req/s, p50 and p99 (ms) and errors of one cell. A gRPC call whose response lacks the bytes
    of a good one was an error (grpc-status in its trailers, no message)."""
    ms = durations_us / 1000 if len(durations_us) else np.array([np.nan])
    errors = counts["failed"] + counts["non_2xx"]
    if protocol == "grpc":
        errors += max(0, counts["succeeded"] - counts["data_bytes"] // good)
    return {"rps": counts["done"] / seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": errors, "requests": counts["done"]}
