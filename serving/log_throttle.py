"""At most one log line per interval for a repeated failure, with the count of the ones left out.

A client can send the same unexpected input thousands of times a second; one ERROR line per request
would bury the log (and cost the event loop). The first failure is logged at once, later ones within
`interval` seconds are counted, and the next line that is logged says how many were left out.
"""

from __future__ import annotations

import logging
import threading
import time


class ThrottledLog:
    def __init__(self, logger: logging.Logger, interval: float = 10.0):
        self.logger, self.interval = logger, interval
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._suppressed = 0

    def error(self, message: str, *args) -> bool:
        """Log `message % args` at ERROR unless one was logged in the last `interval` seconds;
        returns whether it was logged."""
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval:
                self._suppressed += 1
                return False
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        if suppressed:
            message += f" (and {suppressed} more like it in the last {self.interval:g} s)"
        self.logger.error(message, *args)
        return True
