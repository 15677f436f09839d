"""The onnxruntime server under load: dynamic batching on vs off at 1, 8 and 32 concurrent clients,
and REST vs gRPC latency for one client.

    python -m benchmarks.server [--seconds 6] [--rounds 2]

Two servers (batching on, batching off) run side by side on loopback ports with the default
architecture exported by export.run; single-image gRPC Predict requests come from asyncio clients
in this process, bounded in time. Settings alternate (off, on, off, on ...) so machine drift hits
both. Targets: batching at least doubles requests/s at 32 clients without a worse p99; one REST
client's p50 (stdlib http.client, keep-alive, the same single-image request as JSON) is within 1.5x
of one gRPC client's p50 on the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import save, table
from common.ports import free_port
from common.quiet import quiet_tensorflow

CONCURRENCY = (1, 8, 32)


def start_server(onnx_path: Path, batching: bool, extra: list[str], cwd: Path | None = None, env: dict | None = None):
    """A server on free loopback ports (from checkout `cwd` with `env`, default this one): (process, gRPC port, REST port)."""
    rest, grpc_port = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "serving.server", "--model", str(onnx_path), "--rest-port", str(rest),
                             "--grpc-port", str(grpc_port), "--log-level", "error",
                             "--batching" if batching else "--no-batching", *extra],
                            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{rest}/ready", timeout=1).status == 200:
                return proc, grpc_port, rest
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become ready")


async def load(port: int, concurrency: int, seconds: float, latent: int) -> tuple[int, list[float], int]:
    import grpc

    from serving import protos

    request = protos.PredictRequest()
    request.model_spec.name = "generator"
    request.inputs["z"].CopyFrom(protos.to_tensor_proto(np.random.default_rng(0).standard_normal((1, latent)).astype(np.float32)))
    payload = request.SerializeToString()
    latencies, errors = [], 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(protos.PREDICT_METHOD, request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
        deadline = time.monotonic() + seconds

        async def client():
            nonlocal errors
            for _ in range(100_000):  # bounded in count as well as in time
                if time.monotonic() >= deadline:
                    return
                start = time.perf_counter()
                try:
                    await call(payload, timeout=10)
                    latencies.append(time.perf_counter() - start)
                except grpc.aio.AioRpcError:
                    errors += 1
        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return len(latencies) / elapsed, latencies, errors


def load_rest(port: int, seconds: float, latent: int) -> list[float]:
    """One REST client, sequential requests on one keep-alive connection."""
    import http.client
    import json

    body = json.dumps({"instances": np.random.default_rng(0).standard_normal((1, latent)).tolist()}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies, deadline = [], time.monotonic() + seconds
    for _ in range(100_000):
        if time.monotonic() >= deadline:
            break
        start = time.perf_counter()
        connection.request("POST", "/v1/models/generator:predict", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"REST predict failed: {response.status} {payload[:200]!r}")
        latencies.append(time.perf_counter() - start)
    connection.close()
    return latencies


def export_default(tmp: Path) -> Path:
    """The default architecture (untrained: speed does not depend on the weights), float32 ONNX only."""
    import json

    import keras

    from export.exporter import export_generator
    from training.models import build_generator

    keras.utils.set_random_seed(0)
    run_dir = tmp / "run"
    run_dir.mkdir()
    build_generator().save(run_dir / "generator.keras")
    (run_dir / "config.json").write_text(json.dumps({"dataset": "mnist-sample", "data_dir": None, "width": 32}))
    return Path(export_generator(run_dir, tmp / "exports").onnx_path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="Load duration per measurement.")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout-ms", type=float, default=0.0)
    parser.add_argument("--intra-op-threads", type=int, default=1)
    args = parser.parse_args(argv)
    quiet_tensorflow()  # after parsing, so --help answers without loading TensorFlow

    extra = ["--max-batch-size", str(args.max_batch_size), "--batch-timeout-ms", str(args.batch_timeout_ms),
             "--intra-op-threads", str(args.intra_op_threads), "--num-batch-threads", "2"]
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_default(Path(tmp))
        servers = {mode: start_server(onnx_path, mode == "on", extra) for mode in ("off", "on")}
        try:
            measured = {(c, m): ([], [], 0) for c in CONCURRENCY for m in servers}
            rest_latencies, grpc_latencies = [], []
            for _ in range(args.rounds):
                for c in CONCURRENCY:
                    for mode, (_, port, _) in servers.items():
                        rps, lat, err = asyncio.run(load(port, c, args.seconds, 64))
                        rates, lats, errs = measured[(c, mode)]
                        measured[(c, mode)] = (rates + [rps], lats + lat, errs + err)
                _, grpc_port, rest_port = servers["on"]
                rest_latencies += load_rest(rest_port, args.seconds, 64)
                grpc_latencies += asyncio.run(load(grpc_port, 1, args.seconds, 64))[1]
        finally:
            for proc, _, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)
    rows = []
    for (c, mode), (rates, lats, errs) in measured.items():
        rows.append([c, mode, float(np.mean(rates)), float(np.median(lats)) * 1e3, float(np.percentile(lats, 99)) * 1e3, errs])
    print(f"single-image gRPC Predict, {args.seconds:g} s x {args.rounds} rounds per cell; server flags: {' '.join(extra)}")
    print(table(rows, ["clients", "batching", "requests/s", "p50 ms", "p99 ms", "errors"]))
    at32 = {r[1]: r for r in rows if r[0] == 32}
    gain = at32["on"][2] / at32["off"][2]
    p99_ok = at32["on"][4] <= at32["off"][4]
    print(f"target at 32 clients: throughput x{gain:.2f} (>= 2), p99 {at32['on'][4]:.1f} vs {at32['off'][4]:.1f} ms "
          f"-> {'met' if gain >= 2 and p99_ok else 'MISSED'}")
    rest_p50, grpc_p50 = float(np.median(rest_latencies)) * 1e3, float(np.median(grpc_latencies)) * 1e3
    print(f"target at 1 client: REST p50 {rest_p50:.2f} ms vs gRPC p50 {grpc_p50:.2f} ms -> x{rest_p50 / grpc_p50:.2f} "
          f"(<= 1.5) -> {'met' if rest_p50 <= 1.5 * grpc_p50 else 'MISSED'}")
    path = save("server", {"args": vars(args), "rows": rows, "rest_vs_grpc_1_client_p50_ms": [rest_p50, grpc_p50]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
