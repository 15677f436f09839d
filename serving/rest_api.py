"""TensorFlow Serving's REST API over the ONNX generator (Starlette).

    POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict   {"instances": ...} or {"inputs": ...}
    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]           model status
    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]/metadata  signature_def
    POST /v1/models/<name>...:classify|:regress                 TF Serving's refusals (no such signature)
    GET  /ready  /healthz  /metrics  /monitoring/prometheus/metrics  (+ the monitoring config's path)

Every /v1/ URL is parsed with TF Serving's grammar (`rest_paths`): a malformed one is 400
"Malformed request", as there. Answers are serialized with orjson off the event loop.

Errors are TF Serving's `{"error": "..."}` bodies with its status codes; every failure, expected or
not, is such a body and is counted in the metrics under its status. A client that leaves before its
answer gets its queued work dropped (status 499 in the metrics, no log line above debug). Slow
clients and the connection cap are handled in `serving.connections`, below the app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import numpy as np
import orjson
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serving import rest_paths
from serving.connections import ProbationGate
from serving.rest_intake import decode_json, decode_predict
from serving.service import GeneratorService, RequestError

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
log = logging.getLogger("serving.rest")


class ClientGone(Exception):
    """The client closed its connection before its answer was ready."""


def _error(status: int, message: str) -> JSONResponse:
    headers = {"retry-after": "1"} if status == 429 else {}
    if status in (408, 413):  # the rest of the body is not read: the connection cannot be reused
        headers["connection"] = "close"
    if len(message) > 1000:  # whatever a request names, the answer stays short
        message = message[:1000] + f"... ({len(message)} characters)"
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


def create_app(service: GeneratorService, metrics, max_body_bytes=16 << 20, readiness=lambda: (True, ""),
               read_timeout: float = 30.0, request_timeout: float | None = None, prometheus_path: str | None = None):
    """`max_body_bytes`: a number, or a function giving it (the limit follows the served models);
    `request_timeout` (--rest_api_timeout_in_ms): longest a prediction may take, else 504 as TF
    Serving; `prometheus_path`: the monitoring config's path, served beside /metrics."""
    body_limit = max_body_bytes if callable(max_body_bytes) else lambda: max_body_bytes

    def timed(method: str):
        def decorate(handler):
            async def endpoint(request: Request, target: rest_paths.Target):
                start, status = time.perf_counter(), "OK"
                metrics.in_flight.labels("rest").inc()
                try:
                    response = await handler(request, target)
                except RequestError as err:
                    response, status = _error(err.http_status, err.message), err.code
                except ClientGone:
                    log.debug("client %s left before its %s answer", request.client, method)
                    response, status = _error(499, "client closed the connection"), "CANCELLED"
                except Exception as err:  # a bug, not bad input: still a JSON 500, counted, one log line
                    log.error("internal error in %s: %s: %s", method, type(err).__name__, err)
                    response, status = _error(500, f"internal error: {type(err).__name__}"), "INTERNAL"
                finally:
                    metrics.in_flight.labels("rest").dec()
                metrics.observe("rest", method, str(response.status_code), time.perf_counter() - start,
                                model=target.name, status=status)
                return response
            return endpoint
        return decorate

    @timed("predict")
    async def predict(request: Request, target: rest_paths.Target):
        name, version, label = target.name, target.version, target.label
        _, model = service.resolve(name, version, label)
        body = await _read_body(request, body_limit(), read_timeout)
        # Parsed and checked in a worker: the loop (and every gRPC call on it) keeps going meanwhile.
        inputs, style, signature_name = await asyncio.to_thread(decode_predict, body, model.info.input_names,
                                                                service.max_request_batch)
        try:
            async with asyncio.timeout(request_timeout):
                _, images = await _unless_client_leaves(request, service.predict(name, inputs, version, label,
                                                                                 signature_name))
        except TimeoutError:
            raise RequestError("DEADLINE_EXCEEDED", f"the prediction took over {request_timeout:g} s "
                               "(--rest_api_timeout_in_ms)", http_status=504) from None
        except RequestError as err:
            raise _tf_type_error(err, inputs) from None
        # orjson writes the float32 array as is, in a worker thread: a 256x64x64x3 answer no longer
        # holds the event loop (and every gRPC call on it) for the second json + tolist() took.
        key = "predictions" if style == "row" else "outputs"
        content = await asyncio.to_thread(orjson.dumps, {key: np.ascontiguousarray(images)},
                                          option=orjson.OPT_SERIALIZE_NUMPY)
        return Response(content, media_type="application/json")

    @timed("predict")
    async def classify_or_regress(request: Request, target: rest_paths.Target):
        """A generator has only a predict signature: TF Serving's own refusals, after its own checks."""
        service.resolve(target.name, target.version, target.label)
        payload = await asyncio.to_thread(decode_json, await _read_body(request, body_limit(), read_timeout))
        signature_name = payload.get("signature_name") or "serving_default" if isinstance(payload, dict) else ""
        if signature_name != "serving_default":
            raise RequestError("INVALID_ARGUMENT", f"No signature was found with the name: {signature_name}")
        kind = "classification" if target.method == "classify" else "regression"
        raise RequestError("INVALID_ARGUMENT", f"Expected {kind} signature method_name to be tensorflow/serving/"
                           f"{target.method}. Was: tensorflow/serving/predict (use :predict)")

    @timed("status")
    async def status(request: Request, target: rest_paths.Target):
        versions = service.status(target.name, target.version, target.label)
        return JSONResponse({"model_version_status": [
            {"version": str(v), "state": state, "status": {"error_code": "UNKNOWN" if error else "OK",
                                                          "error_message": error}}
            for v, state, error in versions]})

    @timed("metadata")
    async def metadata(request: Request, target: rest_paths.Target):
        resolved, signature = service.signature_def_map(target.name, target.version, target.label)
        return JSONResponse({
            "model_spec": {"name": target.name, "signature_name": "", "version": str(resolved)},
            "metadata": {"signature_def": json_format.MessageToDict(signature, preserving_proto_field_name=True)},
        })

    handlers = {"predict": predict, "classify": classify_or_regress, "regress": classify_or_regress,
                "status": status, "metadata": metadata}

    async def v1(request: Request):
        """Every /v1/ URL, parsed as TF Serving parses it (400 "Malformed request", not 404)."""
        raw = request.scope.get("raw_path") or request.url.path.encode()
        try:
            target = rest_paths.parse(request.method, raw.decode("latin-1").split("?", 1)[0])
        except rest_paths.BadPath as err:
            metrics.observe("rest", "other", "400", 0.0)
            return _error(400, str(err))
        return await handlers[target.method](request, target)

    async def ready(request: Request):
        """200 only while predictions can be answered for every configured model; else 503 and why."""
        ok, reason = readiness()
        body = {"status": "ready"} if ok else {"status": "not ready", "reason": reason}
        return JSONResponse(body, status_code=200 if ok else 503)

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

    metrics_paths = ["/metrics", "/monitoring/prometheus/metrics"]
    if prometheus_path and prometheus_path not in metrics_paths and not prometheus_path.startswith("/v1/"):
        metrics_paths.append(prometheus_path)
    routes = [Route("/v1/{path:path}", v1, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
              Route("/ready", ready), Route("/healthz", healthz)]
    routes += [Route(path, prometheus) for path in metrics_paths]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: internal_error})
    return _Quiet(ProbationGate(app, {"/ready", "/healthz", *metrics_paths}))


def _tf_type_error(err: RequestError, inputs: dict) -> RequestError:
    """A non-numeric value in the JSON gets TF Serving's wording, naming the value."""
    if err.code != "INVALID_ARGUMENT" or "must be numeric" not in err.message:
        return err
    stack = list(inputs.values())
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(reversed(value))
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            kind = {str: "String", bool: "Bool", dict: "Object", type(None): "Null"}.get(type(value), "Value")
            return RequestError("INVALID_ARGUMENT", f"JSON Value: {json.dumps(value)[:80]} Type: {kind} is not of "
                                f"expected type: float ({err.message})")
    return err


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
