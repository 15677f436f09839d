"""The one error a user's configuration raises, in training and in serving alike.

A `ConfigError` is a problem the user fixes (a flag, a config file, a server file): its message
names the problem and the fix, and each entry point prints it as one line and exits 2, never a
traceback. One class, so `except ConfigError` in a caller that drives both layers catches both.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A user-facing configuration problem; the message names the file or flag, the problem and the fix."""
