"""Our onnxruntime server side by side with the Python model servers a user would pick instead:
KServe's ModelServer and MLServer (BentoML: see BENCHMARKS.md), on the same ONNX generator, driven by
one load generator over the same protocol (the Open Inference Protocol, v2, for all; HTTP and gRPC).

    python -m benchmarks.server_peers [--seconds 8] [--model generator.onnx] [--workers 1]
        [--load-generator h2load] [--kserve-venv /tmp/peers-kserve] [--mlserver-venv /tmp/peers-mlserver]

Each peer runs from its own virtual environment (their pins clash with each other and with ours):
    python3 -m venv /tmp/peers-kserve && /tmp/peers-kserve/bin/pip install kserve==0.21.0 onnxruntime
    python3 -m venv /tmp/peers-mlserver && /tmp/peers-mlserver/bin/pip install mlserver==1.7.1 onnxruntime
Every server gets the same onnxruntime thread settings (--threads intra-op, one inter-op) and its
own batching as its docs advise (ours: natural dynamic batching; MLServer: adaptive batching,
max_batch_size 32, max_batch_time 2 ms; KServe's ModelServer has none, its batcher is a Kubernetes
sidecar). `--workers N` gives each its own multi-process knob: ours `--workers`, KServe's
ModelServer `workers` (REST processes; its gRPC stays in one), MLServer `parallel_workers`.
Load: single-sample requests (gRPC, and HTTP with JSON tensors, which every peer reads) at 1, 8
and 32 concurrent clients on loopback, from `h2load` (C: ~0.04 ms of CPU a call, see
benchmarks/h2load.py) or tritonclient's asyncio clients (Python: 0.3-0.55 ms a call, taken from
the server's two cores). One server runs at a time; tritonclient checks each first.
The table gives requests/s, p50, p99 (ms) and errors per cell.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks import h2load
from benchmarks.common import machine, save, table
from common.ports import free_ports

CONCURRENCY = (1, 8, 32)
PROTOCOLS = ("http", "grpc")
PEERS = Path(__file__).with_name("peers")


def launch(name: str, model: Path, args, workdir: Path) -> tuple[subprocess.Popen, int, int]:
    """Start one server on free loopback ports; returns (process, http port, grpc port)."""
    http, grpc_port, metrics = free_ports(3)
    env = {**os.environ, "PEER_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads)}
    if name == "ours":
        command = [sys.executable, "-m", "serving.server", "--model", str(model), "--model-name", "generator",
                   "--rest-port", str(http), "--grpc-port", str(grpc_port), "--log-level", "error",
                   "--intra-op-threads", str(args.threads), "--workers", str(args.workers), *args.ours_args]
    elif name == "kserve":
        command = [str(Path(args.kserve_venv) / "bin" / "python"), str(PEERS / "kserve_generator.py"), str(model),
                   str(http), str(grpc_port), str(args.workers)]
    elif name == "mlserver":
        command = [str(Path(args.mlserver_venv) / "bin" / "mlserver"), "start", str(mlserver_settings(
            workdir, model, http, grpc_port, metrics, args.workers))]
        env["PYTHONPATH"] = str(PEERS)
    else:
        raise ValueError(name)
    log = open(workdir / f"{name}.log", "w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {(workdir / f'{name}.log').read_text()[-2000:]}")
        try:
            url = f"http://127.0.0.1:{http}/v2/models/generator/ready"
            if urllib.request.urlopen(url, timeout=1).status == 200:
                return proc, http, grpc_port
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{name} was not ready within 120 s: {(workdir / f'{name}.log').read_text()[-2000:]}")


def mlserver_settings(workdir: Path, model: Path, http: int, grpc_port: int, metrics: int, workers: int) -> Path:
    """MLServer's settings.json and model-settings.json: adaptive batching on, as its docs advise."""
    root = workdir / "mlserver"
    (root / "generator").mkdir(parents=True, exist_ok=True)
    (root / "settings.json").write_text(json.dumps({
        "http_port": http, "grpc_port": grpc_port, "metrics_port": metrics, "host": "127.0.0.1",
        "parallel_workers": workers, "debug": False}))
    (root / "generator" / "model-settings.json").write_text(json.dumps({
        "name": "generator", "implementation": "mlserver_generator.GeneratorRuntime",
        "max_batch_size": 32, "max_batch_time": 0.002, "parameters": {"uri": str(model)}}))
    return root


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


async def load(protocol: str, port: int, concurrency: int, seconds: float, feed: dict) -> dict:
    """`concurrency` clients sending single-sample requests back to back for `seconds`."""
    if protocol == "grpc":
        import tritonclient.grpc.aio as client_module
    else:
        import tritonclient.http.aio as client_module
    client = client_module.InferenceServerClient(f"127.0.0.1:{port}")
    inputs = []
    for name, array in feed.items():
        tensor = client_module.InferInput(name, list(array.shape), "FP32" if array.dtype == np.float32 else "INT32")
        if protocol == "http":
            tensor.set_data_from_numpy(array, binary_data=False)
        else:
            tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    outputs = [client_module.InferRequestedOutput("images", binary_data=False)] if protocol == "http" else None
    headers = {"Content-Type": "application/json"} if protocol == "http" else None  # KServe reads bytes without it
    latencies, errors = [], [0]
    deadline = time.monotonic() + seconds

    async def one_client():
        for _ in range(200_000):  # bounded in count as well as in time
            if time.monotonic() >= deadline:
                return
            start = time.perf_counter()
            try:
                await client.infer("generator", inputs, outputs=outputs, headers=headers)
                latencies.append(time.perf_counter() - start)
            except Exception:
                errors[0] += 1

    began = time.monotonic()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    elapsed = time.monotonic() - began
    await client.close()
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"rps": len(latencies) / elapsed, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": errors[0], "requests": len(latencies)}


def model_feed(model: Path) -> dict:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    feed = {"z": np.random.default_rng(0).standard_normal((1, inputs["z"].shape[1])).astype(np.float32)}
    if "label" in inputs:
        feed["label"] = np.array([1], np.int32)
    return feed


def versions(args) -> dict:
    def pip_version(venv: str, package: str) -> str:
        done = subprocess.run([str(Path(venv) / "bin" / "python"), "-c", f"import importlib.metadata as m; "
                               f"print(m.version('{package}'), m.version('onnxruntime'))"], capture_output=True, text=True)
        return done.stdout.strip() or "not installed"
    import onnxruntime

    return {"ours": f"gan-serve (this commit), onnxruntime {onnxruntime.__version__}",
            "kserve": "kserve, onnxruntime: " + pip_version(args.kserve_venv, "kserve"),
            "mlserver": "mlserver, onnxruntime: " + pip_version(args.mlserver_venv, "mlserver")}


def one_cell(args, protocol: str, port: int, clients: int, feed: dict, payloads: dict | None,
             workdir: Path) -> dict:
    """One cell from the chosen load generator: h2load when `payloads` (its request bodies) are given."""
    if payloads:
        return h2load.cell(protocol, port, payloads[protocol], clients, args.seconds, workdir)
    return asyncio.run(load(protocol, port, clients, args.seconds, feed))


def run(args, model: Path, workdir: Path) -> list[dict]:
    feed, rows = model_feed(model), []
    payloads = h2load.write_payloads(feed, workdir) if args.load_generator == "h2load" else None
    for name in args.servers:
        proc, http, grpc_port = launch(name, model, args, workdir)
        try:
            for protocol in PROTOCOLS:
                port = http if protocol == "http" else grpc_port
                asyncio.run(load(protocol, port, 4, 1.0, feed))  # warm-up, and a check with a real client
                if payloads:
                    h2load.warm_up(protocol, port, payloads[protocol])
                for concurrency in CONCURRENCY:
                    cell = one_cell(args, protocol, port, concurrency, feed, payloads, workdir)
                    rows.append({"server": name, "protocol": protocol, "concurrency": concurrency, **cell})
                    print(f"{name:8s} {protocol:4s} c={concurrency:2d}: {cell['rps']:7.1f} req/s  p50 "
                          f"{cell['p50_ms']:6.2f} ms  p99 {cell['p99_ms']:6.2f} ms  errors {cell['errors']}", flush=True)
        finally:
            stop(proc)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="ONNX generator (default: export the default "
                        "architecture, untrained: speed does not depend on the weights).")
    parser.add_argument("--seconds", type=float, default=8.0, help="Length of each cell.")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads, every server "
                        "(1: the load generator needs the second core of a 2-core machine).")
    parser.add_argument("--workers", type=int, default=1, help="Worker processes, every server by its own "
                        "knob: ours --workers, KServe's ModelServer workers (REST), MLServer parallel_workers.")
    parser.add_argument("--servers", default="ours,kserve,mlserver", type=lambda s: s.split(","))
    parser.add_argument("--kserve-venv", default="/tmp/peers-kserve")
    parser.add_argument("--mlserver-venv", default="/tmp/peers-mlserver")
    parser.add_argument("--load-generator", choices=("h2load", "tritonclient"), default="h2load",
                        help="h2load (C, ~0.04 ms of CPU a call; Debian's nghttp2-client) or tritonclient's "
                        "asyncio clients (Python, 0.3-0.55 ms a call, from the cores the server runs on).")
    parser.add_argument("--ours-args", default="", type=lambda s: s.split(), help="Extra flags for our server.")
    args = parser.parse_args(argv)
    if args.load_generator == "h2load" and not h2load.available():
        parser.error("h2load is not installed: `apt-get install nghttp2-client`, or pass --load-generator tritonclient")
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from benchmarks.server import export_default

            model = export_default(Path(tmp))
        rows = run(args, Path(model), Path(tmp))
    print(table([[r["server"], r["protocol"], r["concurrency"], r["rps"], r["p50_ms"], r["p99_ms"], r["errors"]]
                 for r in rows], ["server", "protocol", "clients", "req/s", "p50 ms", "p99 ms", "errors"]))
    name = "server_peers" if args.servers == ["ours", "kserve", "mlserver"] and not args.ours_args else \
        "server_peers-" + "-".join(args.servers) + ("-variant" if args.ours_args else "")
    name += "-h2load" if args.load_generator == "h2load" else ""
    name += f"-workers{args.workers}" if args.workers > 1 else ""
    path = save(name, {"rows": rows, "ours_args": args.ours_args, "load_generator": args.load_generator,
                       "versions": versions(args), "seconds": args.seconds, "threads": args.threads,
                       "workers": args.workers, "machine_facts": machine()})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
