"""Lockout attacks on the model server, and what other clients get meanwhile; several checkouts side by side.

    python -m benchmarks.attacks --model exports/onnx/generator.onnx
    python -m benchmarks.attacks --model M.onnx --checkout before=/tmp/old-checkout --checkout after=.

Each checkout's server runs alone on loopback ports (`python -m serving.server --model M.onnx`, its
defaults: 1000 connections, 30 s read timeout), and each attack runs `--seconds` against it:

- `grpc-stalled`: 12 connections keep 100 Predict calls each open that never send their message,
  opening a new one whenever the server ends one;
- `rest-dribble`: 1,030 connections (30 over the cap) each send a predict request's headers and then
  one body byte every 0.5 s, reconnecting whenever the server closes them.

Meanwhile one well-behaved client, every 0.25 s in turn, sends a one-row gRPC Predict, a one-row REST
predict, and GETs /healthz and /ready, each with a 10 s deadline. The table shows how many of each
succeeded and the slowest success. Attacker, server and client share the machine, so latencies are
upper bounds. Writes benchmarks/results/attacks.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.common import save, table

ATTACKS = ("grpc-stalled", "rest-dribble")
PROBES = ("grpc predict", "rest predict", "/healthz", "/ready")


def start_checkout_server(checkout: Path, model: Path) -> tuple[subprocess.Popen, int, int]:
    """`checkout`'s server on its defaults: (process, REST port, gRPC port)."""
    from benchmarks.server import start_server

    proc, grpc_port, rest = start_server(model.resolve(), True, [], cwd=checkout,
                                         env=dict(os.environ, PYTHONPATH=str(checkout)))
    return proc, rest, grpc_port


async def stalled_grpc(port: int, stop: threading.Event, connections: int = 12, per_connection: int = 100,
                       ended: list | None = None):
    """Keep `per_connection` Predict calls open on each of `connections` connections, none of which
    ever sends its message; note in `ended` the status of each the server ends, and open another."""
    import grpc

    never = asyncio.Event()

    async def silent():
        await never.wait()
        yield b""

    async def call(channel):
        try:
            await channel.stream_unary("/tensorflow.serving.PredictionService/Predict")(silent(), timeout=3600)
        except grpc.aio.AioRpcError as err:
            if ended is not None and err.code() != grpc.StatusCode.CANCELLED:
                ended.append(err.code())

    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(connections)]
    live = {channel: set() for channel in channels}
    while not stop.is_set():
        for channel, tasks in live.items():
            tasks -= {t for t in tasks if t.done()}
            tasks |= {asyncio.ensure_future(call(channel)) for _ in range(per_connection - len(tasks))}
        await asyncio.sleep(0.05)
    for tasks in live.values():
        for task in tasks:
            task.cancel()
    for channel in channels:
        await channel.close(grace=0)


def dribble_rest(port: int, stop: threading.Event, count: int = 1030, every: float = 0.5,
                 content_length: int = 2000) -> None:
    """Keep `count` connections each sending a predict request's headers, then one body byte every
    `every` seconds; reconnect whenever the server answers or closes one."""
    import select

    head = (b"POST /v1/models/generator:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n{" % content_length)
    socks: list = [None] * count
    while not stop.wait(every):
        live = [s for s in socks if s is not None]
        readable = set(select.select(live, [], [], 0)[0]) if live else set()
        for i, sock in enumerate(socks):
            try:
                if sock is None:
                    sock = socks[i] = socket.create_connection(("127.0.0.1", port), timeout=1)
                    sock.setblocking(False)
                    sock.send(head)
                elif sock in readable:
                    raise ConnectionResetError
                else:
                    sock.send(b"1")
            except OSError:
                if sock is not None:
                    sock.close()
                socks[i] = None
    for sock in socks:
        if sock is not None:
            sock.close()


def good_client(rest: int, grpc_port: int, seconds: float, latent_dim: int) -> dict[str, list[float | None]]:
    """Each probe in turn every 0.25 s: its latency in seconds, or None when it failed."""
    import grpc
    import httpx

    from serving import protos

    request = protos.PredictRequest()
    request.model_spec.name = "generator"
    request.inputs["z"].CopyFrom(protos.to_tensor_proto(np.zeros((1, latent_dim), np.float32)))
    stub = grpc.insecure_channel(f"127.0.0.1:{grpc_port}").unary_unary(
        "/tensorflow.serving.PredictionService/Predict", request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=lambda b: b)
    body = json.dumps({"instances": [[0.0] * latent_dim]})
    base = f"http://127.0.0.1:{rest}"
    calls = {"grpc predict": lambda: stub(request, timeout=10),
             "rest predict": lambda: httpx.post(base + "/v1/models/generator:predict", content=body,
                                                timeout=10).raise_for_status(),
             "/healthz": lambda: httpx.get(base + "/healthz", timeout=10).raise_for_status(),
             "/ready": lambda: httpx.get(base + "/ready", timeout=10).raise_for_status()}
    results: dict[str, list[float | None]] = {name: [] for name in calls}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, call in calls.items():
            started = time.monotonic()
            try:
                call()
                results[name].append(time.monotonic() - started)
            except Exception:
                results[name].append(None)
            time.sleep(0.25)
    return results


def run_attack(attack: str, rest: int, grpc_port: int, seconds: float, latent_dim: int) -> dict:
    stop = threading.Event()
    target = ((lambda: asyncio.run(stalled_grpc(grpc_port, stop))) if attack == "grpc-stalled"
              else (lambda: dribble_rest(rest, stop)))
    attacker = threading.Thread(target=target, daemon=True)
    attacker.start()
    time.sleep(3)  # the attack is in place
    try:
        return good_client(rest, grpc_port, seconds, latent_dim)
    finally:
        stop.set()
        attacker.join(timeout=30)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="An exported ONNX generator (python -m export.run writes one).")
    parser.add_argument("--checkout", action="append", default=[], metavar="NAME=DIR",
                        help="A checkout whose server to attack (repeatable; default: this one, as 'this').")
    parser.add_argument("--seconds", type=float, default=20.0, help="How long each attack runs while probed.")
    parser.add_argument("--attacks", default=",".join(ATTACKS), help=f"Comma list of: {', '.join(ATTACKS)}.")
    args = parser.parse_args(argv)
    checkouts = [c.split("=", 1) for c in args.checkout] or [["this", str(Path(__file__).resolve().parents[1])]]
    if any(len(c) != 2 or not Path(c[1], "serving").is_dir() for c in checkouts):
        parser.error("--checkout takes NAME=DIR, DIR a checkout holding serving/")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1,030 attacking sockets and the clients'
    from serving.engine.onnx_generator import OnnxGenerator

    latent_dim = OnnxGenerator(args.model).info.latent_dim
    rows, raw = [], {}
    for attack in args.attacks.split(","):
        for name, directory in checkouts:
            proc, rest, grpc_port = start_checkout_server(Path(directory), Path(args.model))
            try:
                results = run_attack(attack, rest, grpc_port, args.seconds, latent_dim)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            raw[f"{name} {attack}"] = results
            cells = []
            for probe in PROBES:
                ok = [t for t in results[probe] if t is not None]
                cells.append(f"{len(ok)}/{len(results[probe])}" + (f" (max {max(ok) * 1000:.0f} ms)" if ok else ""))
            rows.append([name, attack, *cells])
            print(rows[-1], flush=True)
    print(table(rows, ["server", "attack", *PROBES]))
    save("attacks", {"args": vars(args), "rows": rows, "raw": raw})


if __name__ == "__main__":
    main()
