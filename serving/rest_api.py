"""TensorFlow Serving's REST API over the ONNX generator (Starlette).

    POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict   {"instances": ...} or {"inputs": ...}
    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]           model status
    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]/metadata  signature_def
    GET  /ready  /healthz  /metrics  /monitoring/prometheus/metrics

Errors are TF Serving's `{"error": "..."}` bodies with its status codes.
"""

from __future__ import annotations

import json
import time

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serving.service import GeneratorService, ServingError

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ServingError("RESOURCE_EXHAUSTED", f"request body of {declared} bytes is over the limit of {limit} bytes",
                           http_status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServingError("RESOURCE_EXHAUSTED", f"request body is over the limit of {limit} bytes", http_status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_predict_body(body: bytes, input_names: tuple[str, ...]) -> tuple[dict, str, str]:
    """TF Serving's row ("instances") or columnar ("inputs") request -> (inputs, format, signature_name)."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ServingError("INVALID_ARGUMENT", f"JSON Parse error: {err}") from None
    if not isinstance(payload, dict):
        raise ServingError("INVALID_ARGUMENT", "request body must be a JSON object with 'instances' or 'inputs'")
    has_instances, has_inputs = "instances" in payload, "inputs" in payload
    if has_instances == has_inputs:
        raise ServingError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key" if not has_instances else
                           "Request payload must have either 'instances' or 'inputs', not both")
    signature_name = payload.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise ServingError("INVALID_ARGUMENT", "'signature_name' must be a string")
    if has_instances:
        instances = payload["instances"]
        if not isinstance(instances, list):
            raise ServingError("INVALID_ARGUMENT", "'instances' must be a list (one entry per row)")
        if instances and all(isinstance(i, dict) for i in instances):
            keys = set(instances[0])
            if any(set(i) != keys for i in instances):
                raise ServingError("INVALID_ARGUMENT", "every instance must name the same inputs")
            return {k: [i[k] for i in instances] for k in keys}, "row", signature_name
        if any(isinstance(i, dict) for i in instances):
            raise ServingError("INVALID_ARGUMENT", "instances mix objects and plain values")
        if len(input_names) > 1:
            raise ServingError("INVALID_ARGUMENT", f"this model takes inputs {list(input_names)}: send each instance as "
                               'an object, e.g. {"z": [...], "label": 3}')
        return {input_names[0]: instances}, "row", signature_name
    inputs = payload["inputs"]
    if isinstance(inputs, dict):
        return inputs, "columnar", signature_name
    if len(input_names) > 1:
        raise ServingError("INVALID_ARGUMENT", f"this model takes inputs {list(input_names)}: send 'inputs' as an object")
    return {input_names[0]: inputs}, "columnar", signature_name


def create_app(service: GeneratorService, metrics, max_body_bytes: int = 16 << 20, readiness=lambda: True) -> Starlette:
    def timed(method: str):
        def decorate(handler):
            async def endpoint(request: Request):
                start = time.perf_counter()
                try:
                    response = await handler(request)
                except ServingError as err:
                    response = _error(err.http_status, err.message)
                metrics.observe("rest", method, str(response.status_code), time.perf_counter() - start)
                return response
            return endpoint
        return decorate

    def target(request: Request):
        params = request.path_params
        return params["name"], params.get("version"), params.get("label")

    @timed("predict")
    async def predict(request: Request):
        name, version, label = target(request)
        _, model = service.resolve(name, version, label)
        body = await _read_body(request, max_body_bytes)
        inputs, style, signature_name = parse_predict_body(body, model.info.input_names)
        _, images = await service.predict(name, inputs, version, label, signature_name)
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
        return _error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")

    routes = []
    for prefix in ("/v1/models/{name}", "/v1/models/{name}/versions/{version:int}", "/v1/models/{name}/labels/{label}"):
        routes += [Route(prefix + ":predict", predict, methods=["POST"]),
                   Route(prefix + "/metadata", metadata, methods=["GET"]),
                   Route(prefix, status, methods=["GET"])]
    routes += [Route("/ready", ready), Route("/healthz", healthz), Route("/metrics", prometheus),
               Route("/monitoring/prometheus/metrics", prometheus)]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
