"""TF Serving's API messages without TensorFlow: classes built from a shipped descriptor set.

Wire-identical to `tensorflow_serving.apis.*_pb2` (same descriptors), but needing only `protobuf`,
so the ONNX server and the client run in an environment without TensorFlow. Regenerate the
descriptor file with `python -m serving.protos.build_descriptors`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_POOL = descriptor_pool.DescriptorPool()
for _file in descriptor_pb2.FileDescriptorSet.FromString(
        Path(__file__).with_name("tfserving_apis.binpb").read_bytes()).file:
    _POOL.Add(_file)


def message(full_name: str):
    """The message class for a fully-qualified proto name, e.g. 'tensorflow.serving.PredictRequest'."""
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(full_name))


TensorProto = message("tensorflow.TensorProto")
ModelSpec = message("tensorflow.serving.ModelSpec")
PredictRequest = message("tensorflow.serving.PredictRequest")
PredictResponse = message("tensorflow.serving.PredictResponse")
GetModelMetadataRequest = message("tensorflow.serving.GetModelMetadataRequest")
GetModelMetadataResponse = message("tensorflow.serving.GetModelMetadataResponse")
SignatureDefMap = message("tensorflow.serving.SignatureDefMap")
SignatureDef = message("tensorflow.SignatureDef")
GetModelStatusRequest = message("tensorflow.serving.GetModelStatusRequest")
GetModelStatusResponse = message("tensorflow.serving.GetModelStatusResponse")
ModelServerConfig = message("tensorflow.serving.ModelServerConfig")

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
METADATA_METHOD = "/tensorflow.serving.PredictionService/GetModelMetadata"
STATUS_METHOD = "/tensorflow.serving.ModelService/GetModelStatus"

_DATA_TYPE = _POOL.FindEnumTypeByName("tensorflow.DataType")
DT = {v.name: v.number for v in _DATA_TYPE.values}
_NUMPY_OF = {DT["DT_FLOAT"]: np.float32, DT["DT_DOUBLE"]: np.float64, DT["DT_INT32"]: np.int32,
             DT["DT_INT64"]: np.int64, DT["DT_HALF"]: np.float16, DT["DT_INT16"]: np.int16,
             DT["DT_INT8"]: np.int8, DT["DT_UINT8"]: np.uint8, DT["DT_BOOL"]: np.bool_}
_DT_OF = {np.dtype(v): k for k, v in _NUMPY_OF.items()}
# Which repeated field holds the values when `tensor_content` is empty.
_VALUE_FIELD = {DT["DT_FLOAT"]: "float_val", DT["DT_DOUBLE"]: "double_val", DT["DT_INT32"]: "int_val",
                DT["DT_INT16"]: "int_val", DT["DT_INT8"]: "int_val", DT["DT_UINT8"]: "int_val",
                DT["DT_INT64"]: "int64_val", DT["DT_BOOL"]: "bool_val", DT["DT_HALF"]: "half_val"}


def dtype_name(number: int) -> str:
    return _DATA_TYPE.values_by_number[number].name if number in _DATA_TYPE.values_by_number else str(number)


def to_tensor_proto(array: np.ndarray):
    """numpy -> TensorProto, packed in `tensor_content` like `tf.make_tensor_proto`."""
    array = np.ascontiguousarray(array)
    if array.dtype not in _DT_OF:
        raise ValueError(f"unsupported dtype {array.dtype}")
    proto = TensorProto(dtype=_DT_OF[array.dtype], tensor_content=array.astype(array.dtype.newbyteorder("<")).tobytes())
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def declared_shape(proto) -> tuple[int, ...]:
    """The shape a TensorProto claims, checked for negative sizes (nothing is allocated)."""
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if any(s < 0 for s in shape):
        raise ValueError(f"tensor shape {list(shape)} has a negative dimension")
    return shape


def from_tensor_proto(proto, max_values: int | None = None) -> np.ndarray:
    """TensorProto -> numpy, from `tensor_content` or the typed `*_val` fields (with broadcast of one value).

    `max_values` caps the element count the shape may declare; it is checked, with the content size,
    before anything is allocated, so a tiny message cannot make the server build a huge array.
    """
    if proto.dtype not in _NUMPY_OF:
        raise ValueError(f"unsupported tensor dtype {dtype_name(proto.dtype)}")
    dtype = np.dtype(_NUMPY_OF[proto.dtype])
    shape = declared_shape(proto)
    count = math.prod(shape)  # exact (Python ints): no overflow however large the dims
    if max_values is not None and count > max_values:
        raise ValueError(f"tensor shape {list(shape)} has {count} values, over this server's limit of {max_values}")
    if proto.tensor_content:
        if len(proto.tensor_content) != count * dtype.itemsize:
            raise ValueError(f"tensor holds {len(proto.tensor_content) // dtype.itemsize} values but its shape "
                             f"{list(shape)} needs {count} ({len(proto.tensor_content)} bytes of tensor_content, "
                             f"{dtype_name(proto.dtype)})")
        # No copy on a little-endian machine: the array reads the message's bytes in place.
        values = np.frombuffer(proto.tensor_content, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
    else:
        field = _VALUE_FIELD[proto.dtype]
        raw = getattr(proto, field)
        if len(raw) not in (count, 1) or (count == 0 and len(raw)):
            raise ValueError(f"tensor holds {len(raw)} values but its shape {list(shape)} needs {count}")
        if proto.dtype == DT["DT_HALF"]:
            values = np.array(raw, np.uint16).view(np.float16)
        elif dtype.kind in "iu":  # int8/16 and uint8 travel in int_val (int32): a cast would wrap 300 to 44
            wide = np.array(raw, np.int64)
            if len(wide) and (wide.min() < np.iinfo(dtype).min or wide.max() > np.iinfo(dtype).max):
                raise ValueError(f"a value in {field} is out of range for {dtype_name(proto.dtype)}")
            values = wide.astype(dtype)
        else:
            values = np.array(raw, dtype=dtype)
        if len(values) == 1 and count != 1:
            values = np.full(count, values[0], dtype)
    return values.reshape(shape)
