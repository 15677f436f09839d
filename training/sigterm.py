"""SIGTERM and a first Ctrl-C, noted instead of obeyed, for the whole of a training command.

Schedulers send SIGTERM before they kill. A training command notes it from the moment its flags
are parsed until it returns (data loading, the evaluator's classifier, between `fit` calls, not
only inside `fit`), and stops at the next safe point: the PreemptionGuard after a step, or the
trainer between its phases. Ctrl-C (SIGINT) does the same, so an interrupted run keeps its last
steps in a checkpoint; a second Ctrl-C stops at once (KeyboardInterrupt). Imports nothing heavy, so
`training.run` installs it before TensorFlow.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

_requested = threading.Event()
_interrupted = threading.Event()  # the request came from Ctrl-C
_depth = 0  # how many `noted` blocks are open


def requested() -> bool:
    """Whether a SIGTERM arrived while one of `noted`'s blocks ran (in this process)."""
    return _requested.is_set()


def interrupted() -> bool:
    """Whether the stop `requested` reports came from Ctrl-C (SIGINT) rather than SIGTERM."""
    return _interrupted.is_set()


def _note(signum, frame) -> None:
    _requested.set()


def _note_interrupt(signum, frame) -> None:
    if _interrupted.is_set():
        raise KeyboardInterrupt  # the second Ctrl-C: stop now
    _interrupted.set()
    _requested.set()
    print("\nCtrl-C: stopping after this step, with a checkpoint (Ctrl-C again to stop at once)",
          file=sys.stderr, flush=True)


@contextmanager
def noted() -> Iterator[threading.Event]:
    """For the block, a SIGTERM sets the flag `requested` reads (only the main thread can install
    a handler; elsewhere the block runs with the process's handler unchanged). Blocks nest."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield _requested
        return
    previous = signal.signal(signal.SIGTERM, _note)
    # Ctrl-C too, unless someone else (not Python's default) already handles it
    previous_int = signal.getsignal(signal.SIGINT)
    takes_int = previous_int in (signal.default_int_handler, _note_interrupt)
    if takes_int:
        signal.signal(signal.SIGINT, _note_interrupt)
    _depth += 1
    try:
        yield _requested
    finally:
        _depth -= 1
        signal.signal(signal.SIGTERM, previous)
        if takes_int:
            signal.signal(signal.SIGINT, previous_int)


def reassert() -> None:
    """Install the noting handler again inside an open `noted` block. TensorFlow's multi-worker
    runtime installs its own SIGTERM handler in C when the strategy starts, behind Python's back
    (`signal.getsignal` still names ours, but a SIGTERM no longer reaches it): call this after it."""
    if _depth and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _note)
