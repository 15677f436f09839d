"""TensorFlow Serving's REST API over the ONNX generator (Starlette).

    POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict   {"instances": ...} or {"inputs": ...}
    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]           model status
    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]/metadata  signature_def
    GET  /ready  /healthz  /metrics  /monitoring/prometheus/metrics

Errors are TF Serving's `{"error": "..."}` bodies with its status codes; every failure, expected or
not, is such a body and is counted in the metrics under its status. A client that leaves before its
answer gets its queued work dropped (status 499 in the metrics, no log line above debug). Slow
clients are handled in `guarded_h11_protocol`, below the app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from serving.service import GeneratorService, RequestError

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_VERSION = 2**63 - 1  # versions are int64 in TF Serving's ModelSpec
log = logging.getLogger("serving.rest")


class ClientGone(Exception):
    """The client closed its connection before its answer was ready."""


def _error(status: int, message: str) -> JSONResponse:
    headers = {"retry-after": "1"} if status == 429 else {}
    if status in (408, 413):  # the rest of the body is not read: the connection cannot be reused
        headers["connection"] = "close"
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
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
    return b"".join(chunks)


async def _unless_client_leaves(request: Request, work):
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


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_VERSION):
        shown = text if len(text) <= 24 else text[:20] + "..."
        raise RequestError("INVALID_ARGUMENT", f"version '{shown}' in the URL must be a whole number from 0 to "
                           f"{MAX_VERSION}, e.g. /v1/models/<name>/versions/1")
    return int(text)


def parse_predict_body(body: bytes, input_names: tuple[str, ...]) -> tuple[dict, str, str]:
    """TF Serving's row ("instances") or columnar ("inputs") request -> (inputs, format, signature_name)."""
    try:
        payload = json.loads(body)
    except RecursionError:
        raise RequestError("INVALID_ARGUMENT", "JSON Parse error: nested too deeply; a request needs at most "
                           "3 levels (instances -> row -> values)") from None
    except ValueError as err:  # bad JSON, bad UTF-8, or an integer over Python's 4,300-digit limit
        raise RequestError("INVALID_ARGUMENT", f"JSON Parse error: {err}") from None
    if not isinstance(payload, dict):
        raise RequestError("INVALID_ARGUMENT", "request body must be a JSON object with 'instances' or 'inputs'")
    has_instances, has_inputs = "instances" in payload, "inputs" in payload
    if has_instances == has_inputs:
        raise RequestError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key" if not has_instances else
                           "Request payload must have either 'instances' or 'inputs', not both")
    signature_name = payload.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise RequestError("INVALID_ARGUMENT", "'signature_name' must be a string")
    if has_instances:
        instances = payload["instances"]
        if not isinstance(instances, list):
            raise RequestError("INVALID_ARGUMENT", "'instances' must be a list (one entry per row)")
        if instances and all(isinstance(i, dict) for i in instances):
            keys = set(instances[0])
            if any(set(i) != keys for i in instances):
                raise RequestError("INVALID_ARGUMENT", "every instance must name the same inputs")
            return {k: [i[k] for i in instances] for k in keys}, "row", signature_name
        if any(isinstance(i, dict) for i in instances):
            raise RequestError("INVALID_ARGUMENT", "instances mix objects and plain values")
        if len(input_names) > 1:
            raise RequestError("INVALID_ARGUMENT", f"this model takes inputs {list(input_names)}: send each instance as "
                               'an object, e.g. {"z": [...], "label": 3}')
        return {input_names[0]: instances}, "row", signature_name
    inputs = payload["inputs"]
    if isinstance(inputs, dict):
        return inputs, "columnar", signature_name
    if len(input_names) > 1:
        raise RequestError("INVALID_ARGUMENT", f"this model takes inputs {list(input_names)}: send 'inputs' as an object")
    return {input_names[0]: inputs}, "columnar", signature_name


def create_app(service: GeneratorService, metrics, max_body_bytes: int = 16 << 20, readiness=lambda: True,
               read_timeout: float = 30.0):
    def timed(method: str):
        def decorate(handler):
            async def endpoint(request: Request):
                start = time.perf_counter()
                metrics.in_flight.labels("rest").inc()
                try:
                    response = await handler(request)
                except RequestError as err:
                    response = _error(err.http_status, err.message)
                except ClientGone:
                    log.debug("client %s left before its %s answer", request.client, method)
                    response = _error(499, "client closed the connection")
                except Exception as err:  # a bug, not bad input: still a JSON 500, counted, one log line
                    log.error("internal error in %s: %s: %s", method, type(err).__name__, err)
                    response = _error(500, f"internal error: {type(err).__name__}")
                finally:
                    metrics.in_flight.labels("rest").dec()
                metrics.observe("rest", method, str(response.status_code), time.perf_counter() - start)
                return response
            return endpoint
        return decorate

    def target(request: Request):
        params = request.path_params
        return params["name"], _version(params.get("version")), params.get("label")

    @timed("predict")
    async def predict(request: Request):
        name, version, label = target(request)
        _, model = service.resolve(name, version, label)
        body = await _read_body(request, max_body_bytes, read_timeout)
        inputs, style, signature_name = parse_predict_body(body, model.info.input_names)
        _, images = await _unless_client_leaves(request, service.predict(name, inputs, version, label, signature_name))
        return JSONResponse({"predictions" if style == "row" else "outputs": images.tolist()})

    @timed("status")
    async def status(request: Request):
        versions = service.status(*target(request))
        return JSONResponse({"model_version_status": [
            {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for v in versions]})

    @timed("metadata")
    async def metadata(request: Request):
        name, version, label = target(request)
        resolved, signature = service.signature_def_map(name, version, label)
        return JSONResponse({
            "model_spec": {"name": name, "signature_name": "", "version": str(resolved)},
            "metadata": {"signature_def": json_format.MessageToDict(signature, preserving_proto_field_name=True)},
        })

    async def ready(request: Request):
        ok = readiness()
        return JSONResponse({"status": "ready" if ok else "not ready"}, status_code=200 if ok else 503)

    async def healthz(request: Request):
        return JSONResponse({"status": "alive"})

    async def prometheus(request: Request):
        return Response(metrics.exposition(), media_type=PROMETHEUS_CONTENT_TYPE)

    async def http_error(request: Request, exc: HTTPException):
        metrics.observe("rest", "other", str(exc.status_code), 0.0)
        return _error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path[:200]}")

    async def internal_error(request: Request, exc: Exception):  # raised outside a handler, e.g. in routing
        metrics.observe("rest", "other", "500", 0.0)
        return _error(500, f"internal error: {type(exc).__name__}")

    routes = []
    for prefix in ("/v1/models/{name}", "/v1/models/{name}/versions/{version}", "/v1/models/{name}/labels/{label}"):
        routes += [Route(prefix + ":predict", predict, methods=["POST"]),
                   Route(prefix + "/metadata", metadata, methods=["GET"]),
                   Route(prefix, status, methods=["GET"])]
    routes += [Route("/ready", ready), Route("/healthz", healthz), Route("/metrics", prometheus),
               Route("/monitoring/prometheus/metrics", prometheus)]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: internal_error})
    return _Quiet(app)


class _Quiet:
    """Starlette answers an escaped exception (JSON, above) and then re-raises it for the server to log
    with a traceback; this logs one line instead."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        try:
            await self.app(scope, receive, send)
        except Exception as err:
            log.error("internal error on %s: %s: %s", scope.get("path", "")[:200], type(err).__name__, err)


def guarded_h11_protocol(read_timeout: float, max_connections: int, on_close=lambda reason: None):
    """uvicorn's h11 protocol plus what it lacks against slow or idle clients: each request's headers
    must arrive within `read_timeout` of its first byte (or of the connection opening), and at most
    `max_connections` connections are open at once (newer ones are closed at once)."""

    class GuardedH11Protocol(H11Protocol):
        _header_timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                on_close("over_capacity")
                transport.close()
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._header_timer is None and self._between_requests():
                self._arm()
            super().data_received(data)
            if not self._between_requests():  # headers complete: the app's body timeout takes over
                self._disarm()

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self):
            self._header_timer = self.loop.call_later(read_timeout, self._too_slow)

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
