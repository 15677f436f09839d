"""Open Inference Protocol tensors <-> numpy, for the v2 REST and gRPC front ends.

A v2 tensor is {name, datatype ("FP32", "INT32", ...), shape, data}; its data arrives as a JSON
list, as raw little-endian bytes (gRPC `raw_input_contents`, REST's binary tensor extension), or as
typed gRPC `contents`. The declared shape is checked against the model before any array is built,
raw bytes become arrays with `np.frombuffer` (no copy, no Python lists), and the datatype must be
the model's (no silent casts, as on the TF Serving side).
"""

from __future__ import annotations

import math

import numpy as np

from serving.engine.core import RequestError
from serving.engine.validation import ModelInfo

NUMPY_OF = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
            "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
            "FP32": np.float32, "FP64": np.float64}
CONTENTS_FIELD = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
                  "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
                  "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
                  "FP64": "fp64_contents"}
MODEL_DATATYPES = {"z": "FP32", "label": "INT32"}
OUTPUT_NAME = "images"


def bad(message: str) -> RequestError:
    return RequestError("INVALID_ARGUMENT", message)


def tensor_metadata(info: ModelInfo) -> tuple[list[dict], list[dict]]:
    """The model's inputs and outputs as v2 metadata: z FP32 [-1, latent], label INT32 [-1], images FP32."""
    inputs = [{"name": "z", "datatype": "FP32", "shape": [-1, info.latent_dim]}]
    if info.num_classes:
        inputs.append({"name": "label", "datatype": "INT32", "shape": [-1]})
    return inputs, [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, *info.image_shape]}]


def check_datatype(name: str, datatype: str) -> np.dtype:
    """The numpy dtype of a declared datatype, which must be the model's for a known input."""
    wanted = MODEL_DATATYPES.get(name)
    if not isinstance(datatype, str) or datatype not in NUMPY_OF:
        raise bad(f"input '{name[:64]}' has datatype '{str(datatype)[:16]}', which this server does not take; "
                  f"send {wanted or 'FP32'}")
    if wanted and datatype != wanted:
        raise bad(f"input '{name}' must have datatype {wanted}, got {datatype}")
    return np.dtype(NUMPY_OF[datatype])


def declared_shape(name: str, shape) -> tuple[int, ...]:
    """A shape is a list of whole numbers: not a string, and no floats or booleans read as sizes."""
    try:  # JSON: a list; gRPC: a repeated int64 (iterable, though it has no __iter__)
        dims = () if isinstance(shape, (str, bytes, dict)) else tuple(shape)
    except TypeError:
        dims = ()
    if not dims and shape != [] or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        raise bad(f"input '{name[:64]}' has shape {str(shape)[:80]}: a shape is a list of whole numbers")
    if any(d < 0 for d in dims):
        raise bad(f"input '{name[:64]}' has shape {list(dims)[:8]} with a negative size")
    return dims


def from_raw(name: str, raw: bytes | memoryview, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Raw little-endian bytes as an array of `shape`, without copying them."""
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise bad(f"input '{name}' has {len(raw)} bytes of data but its shape {list(shape)} and datatype need "
                  f"{expected}")
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape)


def from_values(name: str, values, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A JSON list (flat or nested) or typed gRPC contents, reshaped to the declared shape."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError, OverflowError):  # ragged lists, numbers too large
        raise bad(f"input '{name[:64]}' has data that is not a regular array of numbers") from None
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise bad(f"input '{name[:64]}' must be numeric, got {array.dtype}")
    if array.dtype.kind == "f" and dtype.kind in "iu":  # as TF Serving: 3.0 is not an INT32
        raise bad(f"input '{name[:64]}' has datatype {dtype.name.upper()} and must hold whole numbers, got floats")
    if array.size != math.prod(shape):
        raise bad(f"input '{name}' has {array.size} values but its shape {list(shape)} needs {math.prod(shape)}")
    return array.reshape(shape)
