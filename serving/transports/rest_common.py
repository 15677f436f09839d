"""What every REST front end shares: the context handlers get, bodies read under limits, error
bodies, and one wrapper that times a handler and turns its failures into JSON answers.

Handlers are plain module-level `async def handler(ctx, request, target)` functions (readable and
unit-testable alone); `endpoint` binds them to a `RestContext` for Starlette. Every failure,
expected or not, is a short `{"error": "..."}` body counted in the metrics under its status: a bug
is one log line and a 500 body, never a traceback to the client.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from typing import Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from serving.engine.core import RequestCore, RequestError
from serving.log_throttle import ThrottledLog

log = logging.getLogger("serving.rest")
internal_errors = ThrottledLog(log)  # a bug a client can trigger at will: one line per 10 s
MAX_MESSAGE_CHARS = 1000  # whatever a request names, the answer stays short
INLINE_BYTES = 32 << 10    # smaller bodies and answers are (de)serialized on the loop: tens of microseconds,
                           # less than the hop to a worker thread and back; bigger ones go to a thread


class ClientGone(Exception):
    """The client closed its connection before its answer was ready."""


@dataclass
class RestContext:
    """What REST handlers need besides the request. `body_limit()` follows the served models;
    `request_timeout` (--rest_api_timeout_in_ms) bounds a prediction, None: unbounded."""

    core: RequestCore
    metrics: object
    body_limit: Callable[[], int]
    read_timeout: float = 30.0
    request_timeout: float | None = None


def error(status: int, message: str) -> JSONResponse:
    """TF Serving's (and the Open Inference Protocol's) error body: {"error": "..."}."""
    headers = {"retry-after": "1"} if status == 429 else {}
    if status in (408, 413):  # the rest of the body is not read: the connection cannot be reused
        headers["connection"] = "close"
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + f"... ({len(message)} characters)"
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The body, refused unread when its Content-Length is over `limit` (413), and cut off when it
    grows past it or does not arrive within `timeout` (408)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError("RESOURCE_EXHAUSTED", f"request body of {declared} bytes is over the limit of {limit} bytes",
                           http_status=413)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestError("RESOURCE_EXHAUSTED", f"request body is over the limit of {limit} bytes",
                                       http_status=413)
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError("DEADLINE_EXCEEDED", f"the request body did not arrive within {timeout:g} s "
                           "(--read-timeout-seconds); send it at once") from None
    except ClientDisconnect:
        raise ClientGone() from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def unless_client_leaves(request: Request, work):
    """Await `work`, cancelling it (so queued rows are never computed) if the client disconnects first."""
    async def disconnected():
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task, watcher = asyncio.ensure_future(work), asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    if task in done:
        return task.result()
    await asyncio.wait({task})  # let the cancelled work leave the queue
    raise ClientGone()


async def predict_in_time(ctx: RestContext, request: Request, work):
    """A prediction bounded by --rest_api_timeout_in_ms (504, as TF Serving) and dropped when the client leaves."""
    try:
        async with asyncio.timeout(ctx.request_timeout):
            return await unless_client_leaves(request, work)
    except TimeoutError:
        raise RequestError("DEADLINE_EXCEEDED", f"the prediction took over {ctx.request_timeout:g} s "
                           "(--rest_api_timeout_in_ms)", http_status=504) from None


async def answer(ctx: RestContext, api: str, method: str, handler, request: Request, target) -> Response:
    """Run one handler: time it, count it, and turn every failure into an error body."""
    start, status = time.perf_counter(), "OK"
    ctx.metrics.child(ctx.metrics.in_flight, "rest").inc()
    try:
        response = await handler(ctx, request, target)
    except RequestError as err:
        response, status = error(err.http_status, err.message), err.code
    except ClientGone:
        log.debug("client %s left before its %s answer", request.client, method)
        response, status = error(499, "client closed the connection"), "CANCELLED"
    except Exception as err:  # a bug, not bad input: still a JSON 500, counted, one log line
        internal_errors.error("internal error in %s: %s: %s", method, type(err).__name__, err)
        response, status = error(500, f"internal error: {type(err).__name__}"), "INTERNAL"
    finally:
        ctx.metrics.child(ctx.metrics.in_flight, "rest").dec()
    ctx.metrics.observe(api, method, str(response.status_code), time.perf_counter() - start,
                        model=getattr(target, "name", None), status=status)
    return response


async def off_loop(size: int, function, *args):
    """`function(*args)` in a worker thread when `size` bytes make it slow enough to stall the loop
    (and every gRPC call on it), else right here."""
    if size < INLINE_BYTES:
        return function(*args)
    return await asyncio.to_thread(function, *args)


def endpoint(ctx: RestContext, route):
    """A Starlette endpoint for `route(ctx, request)`."""
    return functools.partial(route, ctx)
