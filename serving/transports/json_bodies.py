"""JSON request bodies, bounded before they are parsed: what both protocols' REST APIs share.

The body limit is derived from the largest legal request (`default_body_limit`), so an attacker's
16 MiB body is refused from its Content-Length, unread; `decode_json` refuses a body of more JSON
values than a legal request holds before orjson builds them, and answers with TF Serving's
(rapidjson's) error wording.
"""

from __future__ import annotations

import json

import orjson

from serving.engine.core import RequestError

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
