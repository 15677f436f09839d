"""TF Serving's REST predict bodies -> checked inputs, in a worker thread and before any array is built.

A body is parsed with orjson (a few ms for the largest legal request) in a worker thread, so the
event loop that gRPC shares keeps answering; the row count and the JSON types are then checked on
the parsed lists, before numpy sees them, with TF Serving's strictness: z takes numbers (not
booleans), label takes integers (3.0 is not class 3).
"""

from __future__ import annotations

import json

from serving.engine.core import RequestError
from serving.transports.json_bodies import decode_json, max_json_values


def parse_predict_body(body: bytes, input_names: tuple[str, ...], max_rows: int | None = None,
                       max_values: int | None = None) -> tuple[dict, str, str]:
    """TF Serving's row ("instances") or columnar ("inputs") request -> (inputs, format, signature_name);
    `max_rows`: more instances than this are refused before they are regrouped; `max_values`: see
    `decode_json`."""
    payload = decode_json(body, max_values)
    if not isinstance(payload, dict):
        raise RequestError("INVALID_ARGUMENT", "request body must be a JSON object with 'instances' or 'inputs'")
    signature_name = payload.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise RequestError("INVALID_ARGUMENT", "'signature_name' key must be a string value.")
    has_instances, has_inputs = "instances" in payload, "inputs" in payload
    if has_instances == has_inputs:
        raise RequestError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key" if not has_instances else
                           "Request payload must have either 'instances' or 'inputs', not both")
    if has_instances:
        instances = payload["instances"]
        if max_rows is not None and isinstance(instances, list) and len(instances) > max_rows:
            raise _too_many_rows(len(instances), max_rows)
        return _rows(instances, input_names), "row", signature_name
    inputs = payload["inputs"]
    if isinstance(inputs, dict):
        return inputs, "columnar", signature_name
    if len(input_names) > 1:
        raise RequestError("INVALID_ARGUMENT", f"this model takes inputs {list(input_names)}: send 'inputs' as an object")
    return {input_names[0]: inputs}, "columnar", signature_name


def _rows(instances, input_names: tuple[str, ...]) -> dict:
    if not isinstance(instances, list):
        raise RequestError("INVALID_ARGUMENT", "'instances' must be a list (one entry per row)")
    if instances and all(isinstance(i, dict) for i in instances):
        keys = set(instances[0])
        if any(set(i) != keys for i in instances):
            raise RequestError("INVALID_ARGUMENT", "every instance must name the same inputs")
        return {k: [i[k] for i in instances] for k in keys}
    if any(isinstance(i, dict) for i in instances):
        raise RequestError("INVALID_ARGUMENT", "instances mix objects and plain values")
    if len(input_names) > 1:
        raise RequestError("INVALID_ARGUMENT", f"this model takes inputs {list(input_names)}: send each instance as "
                           'an object, e.g. {"z": [...], "label": 3}')
    return {input_names[0]: instances}


def check_json_inputs(inputs: dict, max_rows: int) -> None:
    """Rows and JSON types, on the lists, before numpy: over-long batches and values TF Serving's
    signature would refuse (a boolean in z, a non-integer label) never become arrays."""
    for name, value in inputs.items():
        if isinstance(value, list) and len(value) > max_rows:
            raise _too_many_rows(len(value), max_rows)
    z = inputs.get("z")
    for row in z if isinstance(z, list) else ():
        for value in row if isinstance(row, list) else (row,):
            if isinstance(value, bool):
                raise RequestError("INVALID_ARGUMENT", f"JSON Value: {json.dumps(value)} Type: Bool is not of "
                                   "expected type: float (input 'z')")
    labels = inputs.get("label")
    for value in labels if isinstance(labels, list) else (labels,):
        if isinstance(value, bool):
            raise RequestError("INVALID_ARGUMENT", "input 'label' must hold integer class ids, not booleans")
        if isinstance(value, float):
            raise RequestError("INVALID_ARGUMENT", f"JSON Value: {json.dumps(value)[:40]} Type: Number is not of "
                               "expected type: int32 (input 'label' must hold integers)")


def _too_many_rows(rows: int, max_rows: int) -> RequestError:
    return RequestError("INVALID_ARGUMENT", f"batch of {rows} rows is over this server's per-request limit of "
                        f"{max_rows}; split the request")


def decode_predict(body: bytes, input_names: tuple[str, ...], max_rows: int, latent_dim: int | None = None
                   ) -> tuple[dict, str, str]:
    """Everything a predict body needs before the model: run it in a worker thread."""
    max_values = max_json_values(max_rows, latent_dim) if latent_dim else None
    inputs, style, signature_name = parse_predict_body(body, input_names, max_rows, max_values)
    check_json_inputs(inputs, max_rows)
    return inputs, style, signature_name
