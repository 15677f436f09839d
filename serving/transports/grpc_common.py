"""What every gRPC front end shares: requests arrive as bytes (a message that does not parse is the
client's INVALID_ARGUMENT, not our crash), each call's message must arrive in time (`MessageWait`),
handlers are plain `async def handler(core, request)` functions, and one wrapper times them, counts
them under their real code (a cancelled call as CANCELLED, a bug as INTERNAL) and aborts with a
short message."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import grpc

from serving.engine.core import RequestError
from serving.log_throttle import ThrottledLog

log = logging.getLogger("serving.grpc")
internal_errors = ThrottledLog(log)  # a bug a client can trigger at will: one line per 10 s
MAX_MESSAGE_CHARS = 1000  # status details stay short whatever a request names
GRPC_STATUS = {"INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT, "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
               "FAILED_PRECONDITION": grpc.StatusCode.FAILED_PRECONDITION,
               "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED, "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
               "UNIMPLEMENTED": grpc.StatusCode.UNIMPLEMENTED, "DEADLINE_EXCEEDED": grpc.StatusCode.DEADLINE_EXCEEDED}


class MalformedLog:
    """One short line for a malformed message, then at most one line per `every` seconds with the
    count in between: a flood of garbage cannot flood the log."""

    def __init__(self, every: float = 10.0):
        self.every, self.last, self.suppressed = every, -float("inf"), 0

    def __call__(self, method: str, size: int) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            self.suppressed += 1
            return
        more = f" ({self.suppressed} more since the last such line)" if self.suppressed else ""
        log.warning("malformed gRPC %s message (%d bytes): INVALID_ARGUMENT%s", method, size, more)
        self.last, self.suppressed = now, 0


class MessageWait:
    """Calls whose request message has not arrived: each waits at most `timeout` seconds, and at
    most `limit` wait at once (a newcomer past the limit ends the call that has waited longest).

    A gRPC call holds one of the server's concurrent-call slots from its first frame. Read by gRPC
    itself (a unary handler), a message that never comes holds the slot forever: a client opening
    streams that never send pins every slot and locks all other clients out. So the handlers are
    client-streaming on the wire-compatible side and read the one message themselves, here."""

    def __init__(self, timeout: float, limit: int):
        self.timeout, self.limit = timeout, limit
        self.waiting: dict[object, asyncio.Future] = {}  # arrival order: the first waited longest

    async def read(self, context) -> bytes:
        if len(self.waiting) >= self.limit:
            oldest = next(iter(self.waiting))
            self.waiting.pop(oldest).set_result(None)
        key, dropped = object(), asyncio.get_running_loop().create_future()
        self.waiting[key] = dropped
        reading = asyncio.ensure_future(context.read())
        try:
            done, _ = await asyncio.wait({reading, dropped}, timeout=self.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.waiting.pop(key, None)
            if not reading.done():
                reading.cancel()
        if reading in done:
            raw = reading.result()
            if raw is grpc.aio.EOF:
                raise RequestError("INVALID_ARGUMENT", "the call ended without its request message")
            return raw
        if dropped in done:
            raise RequestError("RESOURCE_EXHAUSTED", f"more than {self.limit} calls were waiting for their "
                               "request message and this one had waited longest; send the message with the call")
        raise RequestError("DEADLINE_EXCEEDED", f"the request message did not arrive within {self.timeout:g} s "
                           "(--read-timeout-seconds)")


@dataclass
class GrpcIntake:
    """How every gRPC handler takes in its message: the wait for it, and the log of bad ones."""

    wait: MessageWait
    malformed: MalformedLog = field(default_factory=MalformedLog)


def parse(request_class, raw: bytes):
    """Bytes -> message; what does not parse is the client's error (INVALID_ARGUMENT), not ours."""
    try:
        return request_class.FromString(raw)
    except Exception:  # DecodeError, or a message nested past protobuf's recursion limit
        raise RequestError("INVALID_ARGUMENT", f"could not parse the request as a {request_class.DESCRIPTOR.name} "
                           f"({len(raw)} bytes)") from None


def unary(core, metrics, intake: GrpcIntake, method: str, handler, request_class, model_of=None):
    """A grpc.aio handler for the unary method `handler(core, request)` (client-streaming on our
    side, see `MessageWait`; the wire is the same); `model_of(request)` names the model in the
    metrics (predictions only)."""
    async def call(_request_stream, context):
        start, code, failure, raw, request = time.perf_counter(), "OK", None, None, None
        metrics.child(metrics.in_flight, "grpc").inc()
        try:
            raw = await intake.wait.read(context)
            request = parse(request_class, raw)
            return await handler(core, request)
        except RequestError as err:
            if raw is not None and request is None:
                intake.malformed(method, len(raw))
            code, failure = err.code, (GRPC_STATUS.get(err.code, grpc.StatusCode.INTERNAL), err.message)
        except asyncio.CancelledError:  # the client cancelled or its deadline passed: its work is dropped
            code = "CANCELLED"
            raise
        except Exception as err:  # a bug, not bad input: INTERNAL with a message, one log line
            internal_errors.error("internal error in %s: %s: %s", method, type(err).__name__, err)
            code, failure = "INTERNAL", (grpc.StatusCode.INTERNAL, f"internal error: {type(err).__name__}")
        finally:
            metrics.child(metrics.in_flight, "grpc").dec()
            model = model_of(request) if model_of is not None and request is not None else None
            metrics.observe("grpc", method, code, time.perf_counter() - start, model=model)
        status, message = failure
        await context.abort(status, message if len(message) <= MAX_MESSAGE_CHARS else
                            message[:MAX_MESSAGE_CHARS] + f"... ({len(message)} characters)")
    return grpc.stream_unary_rpc_method_handler(call, response_serializer=_serialize)


def _serialize(message) -> bytes:
    return message.SerializeToString()
