"""The onnxruntime model server as a subprocess on free loopback ports (from `common.ports`), and
the readiness wait every test that starts a server uses."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import httpx

from common.ports import free_port
from tests.conftest import REPO


def wait_until_ready(url: str, proc: subprocess.Popen, output, timeout: float = 60) -> None:
    """Poll `url`/ready until it answers 200. If the server exits first, or the time runs out (then
    it is killed), fail with `output()`: what it printed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with status {proc.returncode}:\n{output()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    proc.kill()
    proc.wait(timeout=30)
    raise TimeoutError(f"the server was not ready after {timeout:.0f} s:\n{output()}")


def wait_for(condition, timeout: float = 60, what: str = "the condition"):
    """Poll `condition` until it holds (a generous bound for a loaded 2-core machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")


class Server:
    def __init__(self, args, log_path, rest_port: int | None = None, grpc_port: int | None = None, cwd=REPO,
                 env: dict | None = None):
        self.rest_port, self.grpc_port = rest_port or free_port(), grpc_port or free_port()
        self.url = f"http://127.0.0.1:{self.rest_port}"
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "serving.server", *args, "--rest-port", str(self.rest_port),
                                      "--grpc-port", str(self.grpc_port), "--log-level", "info"],
                                     cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **env} if env else None)
        wait_until_ready(self.url, self.proc, lambda: open(log_path).read())

    def metrics(self) -> dict[str, float]:
        """The server's Prometheus samples, e.g. {'gan_serving_batch_size_sum': 12.0, ...}."""
        text = httpx.get(self.url + "/metrics", timeout=10).text
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("gan_")}

    def rss_kib(self) -> int:
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.log.close()
        return code
