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


def requested() -> bool:
    """Whether a SIGTERM arrived while one of `noted`'s blocks ran (in this process)."""
    return _requested.is_set()


@contextmanager
def noted() -> Iterator[threading.Event]:
    """For the block, a SIGTERM sets the flag `requested` reads (only the main thread can install
    a handler; elsewhere the block runs with the process's handler unchanged). Blocks nest."""
    if threading.current_thread() is not threading.main_thread():
        yield _requested
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: _requested.set())
    try:
        yield _requested
    finally:
        signal.signal(signal.SIGTERM, previous)
