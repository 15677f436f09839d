"""The Open Inference Protocol's (KServe v2) REST API, beside TF Serving's, one named handler each.

    GET  /v2                                          server metadata
    GET  /v2/health/live   /v2/health/ready           200, or 503 while not ready
    GET  /v2/models/<m>[/versions/<v>]                model metadata (inputs, outputs, versions)
    GET  /v2/models/<m>[/versions/<v>]/ready          200, or 503 while not ready (404: unknown)
    POST /v2/models/<m>[/versions/<v>]/infer          JSON tensors, or the binary tensor extension

A version that is not a number is taken as a version label (`/versions/stable`), as TF Serving's
`/labels/<l>`. Errors are {"error": "..."} with the TF Serving side's statuses; predictions go
through the same core (one validation), batcher and metrics (method "predict").
"""

from __future__ import annotations

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serving.engine.core import RequestError
from serving.protocols.open_inference import tensors as oip_tensors
from serving.transports.rest_common import RestContext, answer, endpoint, off_loop, predict_in_time, read_body
from serving.protocols.open_inference.targets import BINARY_HEADER, EXTENSIONS, SERVER_NAME, SERVER_VERSION, Target, parse_target
from serving.transports.json_bodies import decode_json, max_json_values

async def server_metadata(ctx: RestContext, request: Request) -> Response:
    return JSONResponse({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS})


async def live(ctx: RestContext, request: Request) -> Response:
    return JSONResponse({"live": True})


async def ready(ctx: RestContext, request: Request) -> Response:
    ok, reason = ctx.core.readiness()
    return JSONResponse({"ready": ok} if ok else {"ready": False, "reason": reason}, status_code=200 if ok else 503)


async def model_metadata(ctx: RestContext, request: Request, target: Target) -> Response:
    version, info = ctx.core.info(target.name, target.version, target.label)
    inputs, outputs = oip_tensors.tensor_metadata(info)
    versions = [str(version)] if target.version is not None or target.label else \
        [str(v) for v in ctx.core.versions().get(target.name, [])]
    return JSONResponse({"name": target.name, "versions": versions, "platform": "onnxruntime_onnx",
                         "inputs": inputs, "outputs": outputs})


async def model_ready(ctx: RestContext, request: Request, target: Target) -> Response:
    ctx.core.status(target.name, target.version, target.label)  # an unknown model or version: 404
    ok = ctx.core.model_ready(target.name, target.version, target.label)
    return JSONResponse({"name": target.name, "ready": ok}, status_code=200 if ok else 503)


async def infer(ctx: RestContext, request: Request, target: Target) -> Response:
    """JSON (or binary-extension) tensors in, images out, in JSON or binary as the request asks."""
    _, info = ctx.core.info(target.name, target.version, target.label)
    body = await read_body(request, ctx.body_limit(), ctx.read_timeout)
    header_length = request.headers.get(BINARY_HEADER)
    payload, inputs, wants_binary = await off_loop(len(body), decode_infer, ctx, info, body, header_length)
    version, images = await predict_in_time(ctx, request, ctx.core.predict(target.name, inputs, target.version,
                                                                           target.label))
    size = images.nbytes * (1 if wants_binary else 4)  # JSON: ~4x the float bytes
    return await off_loop(size, infer_response, target.name, version, payload.get("id"), images, wants_binary)


def decode_infer(ctx: RestContext, info, body: bytes, header_length: str | None) -> tuple[dict, dict, bool]:
    """Body -> (request JSON, {input name: array or list}, binary output wanted), shapes and
    datatypes checked before any array is built. Runs in a worker thread."""
    split = _header_length(header_length, len(body))
    payload = decode_json(body[:split] if split is not None else body,
                          max_json_values(ctx.core.max_request_batch, info.latent_dim))
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise RequestError("INVALID_ARGUMENT", "an infer request is a JSON object with an 'inputs' list")
    tensors = [t if isinstance(t, dict) else {} for t in payload["inputs"]]
    names = [str(t.get("name", "")) for t in tensors]
    if len(set(names)) != len(names):
        raise RequestError("INVALID_ARGUMENT", "every input must be named once")
    shapes = {name: oip_tensors.declared_shape(name, t.get("shape")) for name, t in zip(names, tensors)}
    ctx.core.check_shapes(info, shapes)
    binary = memoryview(body)[split:] if split is not None else memoryview(b"")
    inputs, offset = {}, 0
    for name, tensor in zip(names, tensors):
        dtype = oip_tensors.check_datatype(name, tensor.get("datatype"))
        parameters = tensor.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise RequestError("INVALID_ARGUMENT", f"input '{name[:64]}' has parameters that are not an object")
        size = parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise RequestError("INVALID_ARGUMENT", f"input '{name}' declares binary_data_size {size!r}, beyond "
                                   "the binary data sent")
            inputs[name] = oip_tensors.from_raw(name, binary[offset:offset + size], dtype, shapes[name])
            offset += size
        elif "data" in tensor:
            inputs[name] = oip_tensors.from_values(name, tensor["data"], dtype, shapes[name])
        else:
            raise RequestError("INVALID_ARGUMENT", f"input '{name}' has neither 'data' nor binary_data_size")
    return payload, inputs, _wants_binary(payload)


def _header_length(value: str | None, body_length: int) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 19) or int(value) > body_length:
        raise RequestError("INVALID_ARGUMENT", f"Inference-Header-Content-Length {value[:24]!r} is not a length "
                           f"within the {body_length}-byte body")
    return int(value)


def _wants_binary(payload: dict) -> bool:
    """The binary tensor extension: per requested output, or for all with binary_data_output."""
    outputs = payload.get("outputs")
    for output in outputs if isinstance(outputs, list) else ():
        if not isinstance(output, dict) or output.get("name") != oip_tensors.OUTPUT_NAME:
            raise RequestError("INVALID_ARGUMENT", f"requested output {str(output)[:80]} is not this model's; its "
                               f"only output is '{oip_tensors.OUTPUT_NAME}'")
        parameters = output.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise RequestError("INVALID_ARGUMENT", "a requested output's parameters must be an object")
        if parameters.get("binary_data"):
            return True
    parameters = payload.get("parameters")
    return bool(isinstance(parameters, dict) and parameters.get("binary_data_output"))


def infer_response(name: str, version: int, request_id, images: np.ndarray, binary: bool) -> Response:
    output = {"name": oip_tensors.OUTPUT_NAME, "datatype": "FP32", "shape": list(images.shape)}
    head = {"model_name": name, "model_version": str(version), "outputs": [output]}
    if isinstance(request_id, str) and request_id:
        head["id"] = request_id[:256]
    if not binary:
        output["data"] = np.ascontiguousarray(images).reshape(-1)
        return Response(orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")
    raw = np.ascontiguousarray(images, dtype="<f4").data
    output["parameters"] = {"binary_data_size": raw.nbytes}
    header = orjson.dumps(head)
    return Response(header + raw, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header))})


def model_route(handler, method: str):
    """A Starlette endpoint for a /v2/models/... handler that takes a Target."""
    async def route(ctx: RestContext, request: Request) -> Response:
        async def with_target(ctx, request, _):
            return await handler(ctx, request, parse_target(request))
        name = request.path_params.get("name")
        return await answer(ctx, "rest", method, with_target, request, Target(name, None, None))
    route.__name__ = handler.__name__
    return route


def routes(ctx: RestContext) -> list[Route]:
    models = "/v2/models/{name}"
    versioned = [models, models + "/versions/{version}"]
    table = [Route("/v2", endpoint(ctx, server_metadata)),
             Route("/v2/health/live", endpoint(ctx, live)), Route("/v2/health/ready", endpoint(ctx, ready))]
    for path in versioned:
        table += [Route(path, endpoint(ctx, model_route(model_metadata, "v2_metadata"))),
                  Route(path + "/ready", endpoint(ctx, model_route(model_ready, "v2_ready"))),
                  Route(path + "/infer", endpoint(ctx, model_route(infer, "predict")), methods=["POST"])]
    return table
