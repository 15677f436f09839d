"""SIGTERM, noted instead of obeyed, for the whole of a training command.

Schedulers send SIGTERM before they kill. A training command notes it from the moment its flags
are parsed until it returns (data loading, the evaluator's classifier, between `fit` calls, not
only inside `fit`), and stops at the next safe point: the PreemptionGuard after a step, or the
trainer between its phases. Imports nothing heavy, so `training.run` installs it before TensorFlow.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

_requested = threading.Event()
_depth = 0  # how many `noted` blocks are open


def requested() -> bool:
    """Whether a SIGTERM arrived while one of `noted`'s blocks ran (in this process)."""
    return _requested.is_set()


def _note(signum, frame) -> None:
    _requested.set()


@contextmanager
def noted() -> Iterator[threading.Event]:
    """For the block, a SIGTERM sets the flag `requested` reads (only the main thread can install
    a handler; elsewhere the block runs with the process's handler unchanged). Blocks nest."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield _requested
        return
    previous = signal.signal(signal.SIGTERM, _note)
    _depth += 1
    try:
        yield _requested
    finally:
        _depth -= 1
        signal.signal(signal.SIGTERM, previous)


def reassert() -> None:
    """Install the noting handler again inside an open `noted` block. TensorFlow's multi-worker
    runtime installs its own SIGTERM handler in C when the strategy starts, behind Python's back
    (`signal.getsignal` still names ours, but a SIGTERM no longer reaches it): call this after it."""
    if _depth and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _note)
