"""Quiet TensorFlow's start-up: its C++ and absl log lines (CUDA probing on CPU-only machines,
grappler's remapper) read like errors to a user who did nothing wrong. Importing this module
imports no TensorFlow; calling `quiet_tensorflow` does."""

from __future__ import annotations

import os
import sys


def quiet_tensorflow(show: bool = False) -> None:
    """Call before TensorFlow is imported. Hidden by default: TensorFlow's C++ log lines (CUDA probing,
    grappler's remapper) and absl's; the lines TensorFlow prints before its logging is set up go too,
    by importing it with stderr pointed at a buffer that is replayed only if the import fails."""
    if show:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if "tensorflow" in sys.modules:
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as buffer:
        os.dup2(buffer.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            buffer.seek(0)
            sys.stderr.write(buffer.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
