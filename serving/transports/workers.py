"""`--workers N`: N server processes on the same REST and gRPC ports, under one supervisor.

Why processes: one server process answers at most what one Python thread can. grpc.aio's
machinery and our per-request code run under the GIL (onnxruntime does not), so one process
tops out near 1,300-1,500 gRPC req/s on the 2-core benchmark machine with part of a core idle
(BENCHMARKS.md 4b). N processes bind the same ports with SO_REUSEPORT and the kernel spreads
connections among them. Each worker loads and watches the models itself and batches its own
requests; all record metrics into one directory of prometheus_client's multiprocess files, so a
scrape answered by any worker shows the whole server.

The supervisor checks both ports first (a taken port is one line and exit 2, as with one process)
and then holds them, starts the workers, and waits until every one is ready (one that fails to
start stops the rest: exit 2 with its message). It replaces a worker that dies; past
`RESTARTS` deaths within `RESTART_WINDOW` seconds it waits before each new try (5 s, doubling to 60 s)
while the healthy workers go on serving, and gives up (exit 1) only when none is left. On SIGTERM or SIGINT it
passes SIGTERM on and waits while the workers finish their in-flight requests. A worker gets
SIGTERM when its supervisor dies, even by kill -9 (Linux's PR_SET_PDEATHSIG), so no orphan keeps
the ports. Needs Linux (SO_REUSEPORT with the kernel's load spreading).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
import time
from multiprocessing.connection import wait
from pathlib import Path

from prometheus_client import multiprocess

import serving
from serving.transports.connections import bind_socket

log = logging.getLogger("serving.transports.workers")
RESTARTS, RESTART_WINDOW = 5, 60.0
FIRST_BACKOFF, MAX_BACKOFF = 5.0, 60.0  # seconds between tries of a worker that keeps dying
STARTUP_SECONDS = 600.0  # a worker loads every model version before it is ready
METRICS_DIR, OWNED_DIR = serving.METRICS_DIR, serving.OWNED_METRICS_DIR  # see serving/__init__.py
METRICS_PREFIX = "gan-serve-metrics-"  # + the supervisor's pid + "-": a dead one's directory is stale


def supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT") and os.name == "posix"


def reserve_port(host: str, port: int, flag: str) -> socket.socket:
    """Check that `port` is free, then hold it with SO_REUSEPORT without listening: only sockets
    of this user that also set SO_REUSEPORT (our workers) can bind it now, and no connection
    is accepted before a worker listens."""
    bind_socket(host, port, flag).close()  # taken by anyone: the one-line error
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as bind_socket: past TIME_WAIT
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def die_with_parent() -> None:
    """In a worker: SIGTERM when the supervisor dies, however it dies (Linux's PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


class Supervisor:
    """Starts `count` workers running `target(config, index, reports)` and keeps them running."""

    def __init__(self, config, target, count: int):
        self.config, self.target, self.count = config, target, count
        self.context = multiprocessing.get_context("spawn")  # no fork of a process holding threads
        self.reports = self.context.Queue()  # (index, "ready" | "error", detail) from the workers
        self.workers: dict[int, multiprocessing.Process] = {}
        self.stopping = False
        self.restarts: collections.deque[float] = collections.deque()
        self.retry_at: dict[int, float] = {}  # a worker that keeps dying: when to try it again
        self.backoff = FIRST_BACKOFF

    def start(self, index: int) -> None:
        process = self.context.Process(target=self.target, args=(self.config, index, self.reports),
                                       name=f"gan-serve-worker-{index}", daemon=False)
        process.start()
        self.workers[index] = process

    def wait_ready(self) -> str | None:
        """Start every worker; None once all are ready, else why not."""
        for index in range(self.count):
            self.start(index)
        ready, deadline = set(), time.monotonic() + STARTUP_SECONDS
        while len(ready) < self.count:
            if self.stopping:
                return "stopped while starting"
            if time.monotonic() > deadline:
                return f"the workers were not ready within {STARTUP_SECONDS:.0f} s"
            with contextlib.suppress(queue.Empty):
                index, kind, detail = self.reports.get(timeout=0.2)
                if kind == "error":
                    return detail
                ready.add(index)
            for index, process in self.workers.items():
                if process.exitcode is not None and index not in ready:
                    return self._last_words() or f"worker {index} exited with code {process.exitcode} while starting"
        return None

    def _last_words(self) -> str | None:
        """The error a worker reported as it exited (its queue message may trail its exit)."""
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                _, kind, detail = self.reports.get(timeout=0.2)
            except queue.Empty:
                continue
            if kind == "error":
                return detail
        return None

    def supervise(self) -> int:
        """Replace workers that die, until a signal asks to stop (0) or none is left serving (1). One
        that keeps dying (a bad new version, a truncated model file) is tried again later, with
        backoff, while the others serve on."""
        while not self.stopping:
            # live workers only: a dead one waiting for its retry keeps its sentinel ready (a busy loop)
            wait([process.sentinel for process in self.workers.values() if process.exitcode is None], timeout=0.5)
            with contextlib.suppress(queue.Empty):
                while True:
                    index, kind, detail = self.reports.get_nowait()
                    if kind == "error":
                        log.error("worker %d could not start: %s", index, detail)
            for index, process in list(self.workers.items()):
                if process.exitcode is None or self.stopping:
                    continue
                now = time.monotonic()
                if index in self.retry_at:
                    if now >= self.retry_at[index]:
                        del self.retry_at[index]
                        log.warning("trying worker %d again", index)
                        self.start(index)
                    continue
                if self._give_up_or_wait(index, process, now):
                    return 1
        return 0

    def _give_up_or_wait(self, index: int, process, now: float) -> bool:
        """A worker just died: start another, or (dying too often) try again later; True when no
        worker is left serving."""
        forget_worker_metrics(process.pid)
        self.restarts.append(now)
        while self.restarts and self.restarts[0] < now - RESTART_WINDOW:
            self.restarts.popleft()
        if len(self.restarts) <= RESTARTS:
            log.warning("worker %d (pid %d) exited with code %s: starting another", index, process.pid,
                        process.exitcode)
            self.backoff = FIRST_BACKOFF
            self.start(index)
            return False
        serving = sum(p.exitcode is None for p in self.workers.values())
        if not serving:
            log.error("workers died %d times within %.0f s and none is left serving: stopping",
                      len(self.restarts), RESTART_WINDOW)
            return True
        log.error("workers died %d times within %.0f s; %d of %d still serving: trying worker %d again in %.0f s",
                  len(self.restarts), RESTART_WINDOW, serving, self.count, index, self.backoff)
        self.retry_at[index] = now + self.backoff
        self.backoff = min(MAX_BACKOFF, 2 * self.backoff)
        return False

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM to every worker; those still running after the grace period (plus load time) are killed."""
        for process in self.workers.values():
            if process.exitcode is None:
                with contextlib.suppress(OSError):
                    process.terminate()
        deadline = time.monotonic() + grace_seconds + 15
        for process in self.workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                log.error("worker pid %d did not stop within the grace period: killed", process.pid)
                process.kill()
                process.join(5)


def remove_stale_metrics_dirs() -> None:
    """The metrics directories of supervisors that no longer run (killed with -9: nobody removed
    theirs). Only our own names, and only when their pid is gone."""
    for path in Path(tempfile.gettempdir()).glob(f"{METRICS_PREFIX}*-*"):
        pid = path.name[len(METRICS_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or not path.is_dir() or path.is_symlink():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass  # another user's live process


def forget_worker_metrics(pid: int) -> None:
    """A dead worker's in-flight gauge no longer counts (its counters and histograms still do)."""
    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid)


def run(config, target) -> int:
    """Serve with `config.workers` processes until SIGTERM/SIGINT; the exit code."""
    if not supported():
        log.error("--workers %d needs SO_REUSEPORT (Linux); use --workers 1", config.workers)
        return 2
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if config.workers > cores:
        log.warning("--workers %d is more than the %d cores this process may use: they will take turns on them",
                    config.workers, cores)
    held = []
    try:
        for port, flag in ((config.rest_port, "--rest-port"), (config.grpc_port, "--grpc-port")):
            if port:
                held.append(reserve_port(config.host, port, flag))
    except ValueError as err:
        for sock in held:
            sock.close()
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    remove_stale_metrics_dirs()
    metrics_dir = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-")
    os.environ[METRICS_DIR] = metrics_dir  # the spawned workers inherit it before importing prometheus_client
    os.environ[OWNED_DIR] = metrics_dir  # ... and know it is their supervisor's
    supervisor = Supervisor(config, target, config.workers)

    def on_signal(signum, frame):
        supervisor.stopping = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        failure = supervisor.wait_ready()
        if supervisor.stopping:  # a signal while starting: stop, as one process would
            return 0
        if failure:
            print(f"error: {failure}", file=sys.stderr, flush=True)
            return 2
        pids = ", ".join(str(p.pid) for p in supervisor.workers.values())
        log.info("%d workers serving on REST %s and gRPC %s (pids %s)", config.workers, config.rest_port or "off",
                    config.grpc_port or "off", pids)
        return supervisor.supervise()
    finally:
        log.info("Shutting down %d workers", len(supervisor.workers))
        supervisor.stop(config.grace_seconds)
        for sock in held:
            sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.environ.pop(METRICS_DIR, None)
        os.environ.pop(OWNED_DIR, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
