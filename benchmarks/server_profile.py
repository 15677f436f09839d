"""Where our server's time goes under load: py-spy samples the server process while the
side-by-side benchmark's load generator drives it, and the stacks are summed per function.

    python -m benchmarks.server_profile [--protocol grpc] [--clients 32] [--seconds 12] [--model X.onnx]
        [--gil] [--load-generator h2load] [--py-spy /tmp/pyspy-venv/bin/py-spy]

py-spy (pip install py-spy, in any environment) attaches to the running server (as root, or with
ptrace allowed) and samples every thread, including native frames' Python callers (--idle off: only
frames on CPU). Prints the top functions by own time and by inclusive time, and the share of samples
in onnxruntime's run versus everything else (the Python overhead batching cannot remove). `--gil`
samples only the thread holding the GIL: what caps one server process (onnxruntime releases it).
One server process (--workers 1): the profile of one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import tempfile
import threading
from pathlib import Path

from benchmarks import h2load
from benchmarks.server_peers import launch, load, model_feed, one_cell, stop


def summarize(raw: Path, top: int = 25) -> str:
    """py-spy's raw (collapsed) stacks -> the heaviest functions, own and inclusive."""
    own, inclusive, total = collections.Counter(), collections.Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")" if " (" in f else f
                  for f in stack.split(";")]
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"{total} samples on CPU", "", "own time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive:"] + [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    model = sum(n for name, n in inclusive.items() if name.startswith("Session.run (onnxruntime_inference"))
    lines += ["", f"onnxruntime session.run: {100 * model / max(total, 1):.1f}% of samples on CPU"]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="ONNX generator")
    parser.add_argument("--protocol", default="grpc", choices=["grpc", "http"])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--py-spy", default="py-spy")
    parser.add_argument("--gil", action="store_true", help="Sample only the thread holding the GIL.")
    parser.add_argument("--load-generator", choices=("h2load", "tritonclient"), default="h2load")
    parser.add_argument("--ours-args", default="", type=lambda s: s.split())
    parser.add_argument("--output", type=Path, default=None,
                        help="Default: benchmarks/results/server_profile.txt (server_profile_gil.txt with --gil).")
    args = parser.parse_args(argv)
    args.workers = 1
    with tempfile.TemporaryDirectory() as tmp:
        proc, http, grpc_port = launch("ours", args.model, args, Path(tmp))
        raw = Path(tmp) / "stacks.txt"
        port = grpc_port if args.protocol == "grpc" else http
        try:
            feed = model_feed(args.model)
            asyncio.run(load(args.protocol, port, 4, 1.0, feed))
            spy = threading.Thread(target=subprocess.run, args=([args.py_spy, "record", "--pid", str(proc.pid),
                                   "--duration", str(int(args.seconds) - 2), "--rate", "250", "--format", "raw",
                                   "--output", str(raw), *(["--gil"] if args.gil else ["--nonblocking"])],),
                                   kwargs={"capture_output": True, "timeout": args.seconds + 60})
            spy.start()
            payloads = h2load.write_payloads(feed, Path(tmp)) if args.load_generator == "h2load" else None
            cell = one_cell(args, args.protocol, port, args.clients, feed, payloads, Path(tmp))
            spy.join()
        finally:
            stop(proc)
        report = f"{args.protocol}, {args.clients} clients from {args.load_generator}" \
                 f"{', GIL holder only' if args.gil else ''}: {cell['rps']:.1f} req/s, p50 {cell['p50_ms']:.2f} ms, " \
                 f"p99 {cell['p99_ms']:.2f} ms (under the profiler)\n\n" + summarize(raw)
    default = "server_profile_gil.txt" if args.gil else "server_profile.txt"
    output = args.output or Path("benchmarks/results") / default
    output.parent.mkdir(exist_ok=True)
    output.write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
