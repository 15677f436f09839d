"""The REST connection policy: slow, stalled and excess clients cannot lock others out.

uvicorn's h11 protocol plus what it lacks. A request's headers must arrive within the read timeout
of its first byte (or of the connection opening). At most `max_connections` connections are open
at once, sized from the file-descriptor limit (`connection_cap`). When a new one arrives at the cap,
room is made by closing the connection least likely to be a working client: first the slowest one
still sending its request after `GRACE_SECONDS` (under `MIN_BYTES_PER_SECOND` on average, or silent
for `STALLED_SECONDS`: a body dribbled a byte at a time is slow however regular its bytes), then the
one quiet longest (no request in flight: kept alive between requests, or opened and silent so far).
A connection whose request arrived whole and is being answered is never closed for room.
When no connection qualifies, the newcomer takes one of `reserve` extra slots on probation: once its
headers arrive it tries again to make room, and if there is still none it may only ask for health
and metrics (anything else gets 503 and Retry-After), so /healthz, /ready and /metrics answer at the
cap. A full reserve makes room by closing the probation connection that has waited longest for its
headers. `bind_socket` opens the listeners themselves: a taken port is one clear line.
"""

from __future__ import annotations

import logging
import resource
import socket

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("serving.transports.connections")
PROBATION = "gan_serve_probation"   # marks a reserve-slot connection's requests (ASGI scope["state"])
PROBATION_SECONDS = 2.0
GRACE_SECONDS = 0.25                # a request younger than this is never judged slow
MIN_BYTES_PER_SECOND = 4096         # slower than this on average, a request can be closed at the cap
STALLED_SECONDS = 1.0               # no new byte for this long: closable at the cap whatever the average
RESERVE = 16
FDS_PER_CONNECTION = 2              # a REST connection and a gRPC one may each be open per client
FDS_KEPT = 256                      # models, logs, thread wake-up pipes, the listeners, headroom
DEFAULT_CAP = 1000


def raise_fd_limit() -> int:
    """Raise the soft file-descriptor limit to the hard one (as servers commonly do); the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(fd_limit: int, wanted: int | None = None, reserve: int = RESERVE) -> int:
    """Connections per protocol that the descriptors allow (never fewer than 8): `wanted` when it fits,
    else the most that fits; by default at most DEFAULT_CAP."""
    fits = max(8, (fd_limit - FDS_KEPT - reserve) // FDS_PER_CONNECTION)
    return min(wanted if wanted else DEFAULT_CAP, fits)


def guarded_h11_protocol(read_timeout: float, max_connections: int, on_close=lambda reason: None,
                         reserve: int = RESERVE):
    """The h11 protocol class for uvicorn with the policy above; `on_close(reason)` counts closings."""

    class GuardedH11Protocol(H11Protocol):
        _header_timer = None
        _probation = False
        _request_started = None  # when the first byte of the request being received arrived
        _request_bytes = 0

        def connection_made(self, transport):
            super().connection_made(transport)
            self._opened = self._last_data = self.loop.time()
            if len(self.connections) > max_connections and not self._make_room():
                if sum(c._probation for c in self._others()) >= reserve and not self._close_oldest_probation():
                    on_close("over_capacity")
                    self.transport.close()
                    return
                self._probation = True  # a reserve slot: health and metrics only, unless room appears
                self.app_state = {**self.app_state, PROBATION: True}
            self._arm(min(read_timeout, PROBATION_SECONDS) if self._probation else read_timeout)

        def _others(self) -> list:
            return [c for c in self.connections if c is not self and getattr(c, "_opened", None) is not None
                    and not c.transport.is_closing()]

        def _make_room(self) -> bool:
            """Close the slowest sender, else the connection quiet longest; False if none qualifies."""
            now = self.loop.time()
            others = [c for c in self._others() if not c._probation]
            slow = [c for c in others if c._slow(now)]
            quiet = [c for c in others if c._quiet()]
            victim = min(slow, key=lambda c: c._rate(now)) if slow else \
                min(quiet, key=lambda c: c._last_data) if quiet else None
            if victim is None:
                return False
            on_close("over_capacity")
            victim.transport.close()
            return True

        def _close_oldest_probation(self) -> bool:
            waiting = [c for c in self._others() if c._probation and c._between_requests()]
            if not waiting:
                return False
            on_close("over_capacity")
            min(waiting, key=lambda c: c._opened).transport.close()
            return True

        def data_received(self, data: bytes) -> None:
            now = self._last_data = self.loop.time()
            awaiting_headers = self._between_requests()
            if self._request_started is None and awaiting_headers:
                self._request_started, self._request_bytes = now, 0
            self._request_bytes += len(data)
            if self._header_timer is None and awaiting_headers:
                self._arm(read_timeout)
            super().data_received(data)
            if awaiting_headers and not self._between_requests():  # headers complete: the app's body timeout
                self._disarm()                                     # takes over
                if self._probation and self._make_room():  # room now: a full connection after all
                    self._probation = False
                    self.app_state = {k: v for k, v in self.app_state.items() if k != PROBATION}
                    self.cycle.scope["state"].pop(PROBATION, None)  # its app task has not run yet
            if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
                self._request_started = None  # the request is in whole: answering it is our part

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _rate(self, now: float) -> float:
            return self._request_bytes / max(now - self._request_started, 1e-6)

        def _slow(self, now: float) -> bool:
            """Still sending its request, past the grace, and too slowly or not at all."""
            return self._request_started is not None and now - self._request_started >= GRACE_SECONDS and (
                self._rate(now) < MIN_BYTES_PER_SECOND or now - self._last_data >= STALLED_SECONDS)

        def _quiet(self) -> bool:
            """No request in flight: kept alive after one, or opened and silent so far."""
            return self._request_started is None and self._between_requests()

        def _arm(self, seconds: float):
            self._header_timer = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self):
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self):
            self._header_timer = None
            if self._between_requests() and not self.transport.is_closing():
                on_close("read_timeout")
                self.transport.close()

    return GuardedH11Protocol


class ProbationGate:
    """ASGI wrapper: a request on a reserve-slot connection gets health and metrics, nothing else."""

    def __init__(self, app, allowed_paths: set[str]):
        self.app, self.allowed_paths = app, allowed_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("state", {}).get(PROBATION) and scope["path"] not in self.allowed_paths:
            body = b'{"error": "the server is at its connection cap (--max-connections); retry shortly"}'
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"), (b"retry-after", b"1"), (b"connection", b"close"),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def bind_socket(host: str, port: int, flag: str = "--rest-port", share: bool = False) -> socket.socket:
    """Bind a port ourselves, so a taken port is one clear error before anything starts (`share`:
    SO_REUSEPORT, for the workers of `--workers N`, whose supervisor has checked the port)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # survives TIME_WAIT, still refuses a live listener
    if share:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Accepted connections inherit this: without it a response's body waits on the client's delayed
    # ACK of its headers (Nagle), ~40 ms per REST request (measured: p50 56 ms -> 2 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port} ({flag}): {err.strerror}; "
                         f"stop the other server or pick another {flag}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
