"""TensorFlow Serving's REST API (canonical), one named handler per method.

    POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict   {"instances": ...} or {"inputs": ...}
    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]           model status
    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]/metadata  signature_def
    POST /v1/models/<name>...:classify|:regress                 TF Serving's refusals (no such signature)

Every /v1/ URL is parsed with TF Serving's grammar (`serving.protocols.tfserving.rest_paths`): a malformed one is 400
"Malformed request", as there. Answers are serialized with orjson off the event loop.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import orjson
from google.protobuf import json_format
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from serving.protocols.tfserving import rest_paths
from serving.engine.core import RequestError
from serving.transports.rest_common import RestContext, answer, error, off_loop, predict_in_time, read_body
from serving.protocols.tfserving.signature import check_signature, signature_def_map
from serving.protocols.tfserving.rest_bodies import decode_predict
from serving.transports.json_bodies import decode_json


async def predict(ctx: RestContext, request: Request, target: rest_paths.Target) -> Response:
    """:predict, row ("instances") or columnar ("inputs") format; the answer in the same format."""
    _, info = ctx.core.info(target.name, target.version, target.label)
    body = await read_body(request, ctx.body_limit(), ctx.read_timeout)
    # Big bodies are parsed and checked in a worker: the loop (and every gRPC call on it) keeps going.
    inputs, style, signature_name = await off_loop(len(body), decode_predict, body, info.input_names,
                                                   ctx.core.max_request_batch, info.latent_dim)
    check_signature(signature_name)
    try:
        _, images = await predict_in_time(ctx, request, ctx.core.predict(target.name, inputs, target.version,
                                                                         target.label))
    except RequestError as err:
        raise tf_type_error(err, inputs) from None
    # orjson writes the float32 array as is, a big answer in a worker thread: a 256x64x64x3 answer
    # does not hold the event loop (and every gRPC call on it).
    key = "predictions" if style == "row" else "outputs"
    content = await off_loop(images.nbytes * 4, dump_numpy, {key: np.ascontiguousarray(images)})
    return Response(content, media_type="application/json")


async def classify_or_regress(ctx: RestContext, request: Request, target: rest_paths.Target) -> Response:
    """A generator has only a predict signature: TF Serving's own refusals, after its own checks."""
    ctx.core.resolve(target.name, target.version, target.label)
    payload = await asyncio.to_thread(decode_json, await read_body(request, ctx.body_limit(), ctx.read_timeout))
    signature_name = payload.get("signature_name") or "serving_default" if isinstance(payload, dict) else ""
    if signature_name != "serving_default":
        raise RequestError("INVALID_ARGUMENT", f"No signature was found with the name: {signature_name}")
    kind = "classification" if target.method == "classify" else "regression"
    raise RequestError("INVALID_ARGUMENT", f"Expected {kind} signature method_name to be tensorflow/serving/"
                       f"{target.method}. Was: tensorflow/serving/predict (use :predict)")


async def status(ctx: RestContext, request: Request, target: rest_paths.Target) -> Response:
    versions = ctx.core.status(target.name, target.version, target.label)
    return JSONResponse({"model_version_status": [
        {"version": str(v), "state": state, "status": {"error_code": "UNKNOWN" if error_message else "OK",
                                                      "error_message": error_message}}
        for v, state, error_message in versions]})


async def metadata(ctx: RestContext, request: Request, target: rest_paths.Target) -> Response:
    resolved, info = ctx.core.info(target.name, target.version, target.label)
    signature = signature_def_map(info)
    return JSONResponse({
        "model_spec": {"name": target.name, "signature_name": "", "version": str(resolved)},
        "metadata": {"signature_def": json_format.MessageToDict(signature, preserving_proto_field_name=True)},
    })


HANDLERS = {"predict": predict, "classify": classify_or_regress, "regress": classify_or_regress,
            "status": status, "metadata": metadata}
METRIC_NAMES = {"classify": "predict", "regress": "predict"}


async def route(ctx: RestContext, request: Request) -> Response:
    """Every /v1/ URL, parsed as TF Serving parses it (400 "Malformed request", not 404)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    try:
        target = rest_paths.parse(request.method, raw.decode("latin-1").split("?", 1)[0])
    except rest_paths.BadPath as err:
        ctx.metrics.observe("rest", "other", "400", 0.0)
        return error(400, str(err))
    method = METRIC_NAMES.get(target.method, target.method)
    return await answer(ctx, "rest", method, HANDLERS[target.method], request, target)


def dump_numpy(payload: dict) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def tf_type_error(err: RequestError, inputs: dict) -> RequestError:
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
