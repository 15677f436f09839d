"""REST predict bodies -> checked inputs, in a worker thread and before any array is built.

A body is parsed with orjson (a few ms for the largest legal request) in a worker thread, so the
event loop that gRPC shares keeps answering; the row count and the JSON types are then checked on
the parsed lists, before numpy sees them, with TF Serving's strictness: z takes numbers (not
booleans), label takes integers (3.0 is not class 3). The body limit that bounds all of this is
derived from the largest legal request (`default_body_limit`), so an attacker's 16 MiB body is
refused from its Content-Length, unread.
"""

from __future__ import annotations

import json

import orjson

from serving.core import RequestError

JSON_BYTES_PER_VALUE = 25   # "-1.2345678901234567e-08, ": the longest float32 as JSON, and its separator
ROW_OVERHEAD = 40           # '{"z": [...], "label": 9}, ' around each row
MIN_BODY_LIMIT = 1 << 20    # headroom for hand-written requests and TF Serving's error cases


def largest_request_bytes(rows: int, latent_dim: int) -> int:
    """The biggest JSON body a legal predict request can need: `rows` rows of z (and a label)."""
    return rows * (latent_dim * JSON_BYTES_PER_VALUE + ROW_OVERHEAD) + 4096


def default_body_limit(rows: int, latent_dims: list[int]) -> int:
    """Twice the largest legal request of the served models, and at least 1 MiB."""
    return max(MIN_BODY_LIMIT, 2 * max((largest_request_bytes(rows, d) for d in latent_dims), default=0))


def max_json_values(rows: int, latent_dim: int) -> int:
    """How many JSON values (numbers, lists) a legal request of `rows` rows can hold, with room for
    its keys: what `decode_json` lets orjson build Python objects for."""
    return rows * (latent_dim + 3) + 1024


def decode_json(body: bytes, max_values: int | None = None):
    """JSON with TF Serving's (rapidjson's) error wording. With `max_values`, a body of more values
    than that is refused before it is parsed: counting separators costs ~0.1 ms a MiB, while orjson
    building ~500k Python objects from a crafted 1 MiB body holds the GIL ~140 ms and ~30 MB."""
    if not body.strip():
        raise RequestError("INVALID_ARGUMENT", "JSON Parse error: The document is empty")
    if max_values is not None:
        values = body.count(b",") + 1
        if values > max_values:
            raise RequestError("INVALID_ARGUMENT", f"request body holds about {values} JSON values; a request this "
                               f"server takes holds at most {max_values}: split it or send fewer values")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        if "depth limit" in str(err):
            raise RequestError("INVALID_ARGUMENT", "JSON Parse error: nested too deeply; a request needs at most "
                               "3 levels (instances -> row -> values)") from None
    try:  # orjson refused it: Python's parser gives the long-standing answers (1e400 is inf, the digit limit)
        return json.loads(body)
    except RecursionError:
        raise RequestError("INVALID_ARGUMENT", "JSON Parse error: nested too deeply") from None
    except ValueError as err:  # bad JSON, bad UTF-8, or an integer over Python's 4,300-digit limit
        raise RequestError("INVALID_ARGUMENT", f"JSON Parse error: Invalid value ({str(err)[:200]})") from None


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
