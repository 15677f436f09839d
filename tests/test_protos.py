"""The shipped TF Serving descriptors match the installed tensorflow-serving-api, message by
message and field by field (TF Serving's own generated modules, not our copies); serving needs no TF."""

import importlib
import pkgutil

import numpy as np
import pytest
from google.protobuf import descriptor_pb2

from serving import protos
from serving.protos.build_descriptors import OUTPUT, descriptor_set
from tests.conftest import run_python


def shipped_message_names() -> list[str]:
    """Every message (nested ones too) in the descriptor set the server and client are built from."""
    names = []

    def visit(prefix, messages):
        for message in messages:
            names.append(f"{prefix}.{message.name}")
            visit(names[-1], message.nested_type)

    for file in descriptor_pb2.FileDescriptorSet.FromString(OUTPUT.read_bytes()).file:
        visit(file.package, file.message_type)
    return sorted(names)


@pytest.fixture(scope="module")
def installed_pool():
    """The default descriptor pool after importing every generated `*_pb2` module tensorflow-serving-api
    installs (and, through them, TensorFlow's own protos): TF Serving's definitions as it ships them."""
    import tensorflow_serving
    from google.protobuf import descriptor_pool

    for info in pkgutil.walk_packages(tensorflow_serving.__path__, "tensorflow_serving."):
        if info.name.endswith("_pb2"):
            importlib.import_module(info.name)
    return descriptor_pool.Default()


def schema(message) -> dict:
    """A message descriptor as comparable data: each field's number, type, label, referenced type and
    oneof, and the nested enums' values (names of nested messages are compared by their own cases)."""
    fields = {f.name: (f.number, f.type, f.is_repeated, f.has_presence, f.message_type.full_name if f.message_type else None,
                       f.enum_type.full_name if f.enum_type else None,
                       f.containing_oneof.name if f.containing_oneof else None) for f in message.fields}
    enums = {e.name: sorted((v.name, v.number) for v in e.values) for e in message.enum_types}
    return {"fields": fields, "enums": enums, "nested": sorted(m.name for m in message.nested_types)}


def installed_schema(name, installed_pool):
    try:
        return schema(installed_pool.FindMessageTypeByName(name))
    except KeyError:
        return None


@pytest.mark.parametrize("name", [n for n in shipped_message_names() if n.startswith("tensorflow.serving.")])
def test_shipped_tf_serving_message_is_tf_servings_own_definition(name, installed_pool):
    from importlib.metadata import version

    theirs = installed_schema(name, installed_pool)
    if theirs is None:  # not in the wheel: TF Serving's own .proto text (serving/protos/tfserving_src), compiled by protoc
        from tests.test_tfserving_config import compiled_pool

        theirs = installed_schema(name, compiled_pool())
    assert theirs is not None, (f"{name}: neither tensorflow-serving-api {version('tensorflow-serving-api')} nor TF "
                                "Serving's .proto files in serving/protos/tfserving_src define it")
    assert schema(protos._POOL.FindMessageTypeByName(name)) == theirs


def test_shipped_messages_they_import_are_tensorflows_and_protobufs_own_definitions(installed_pool):
    """TensorProto, SignatureDef, Any... (what TF Serving's messages refer to), all in one test."""
    others = [n for n in shipped_message_names() if not n.startswith("tensorflow.serving.")]
    missing = [n for n in others if installed_schema(n, installed_pool) is None]
    assert not missing, f"not installed to compare with: {missing}"
    differ = [n for n in others if schema(protos._POOL.FindMessageTypeByName(n)) != installed_schema(n, installed_pool)]
    assert not differ, differ


def test_messages_are_wire_compatible_with_tensorflow_serving_api():
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    z = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    ours = protos.PredictRequest()
    ours.model_spec.name, ours.model_spec.version_label = "generator", "stable"
    ours.inputs["z"].CopyFrom(protos.to_tensor_proto(z))
    theirs = predict_pb2.PredictRequest.FromString(ours.SerializeToString())
    assert theirs.model_spec.version_label == "stable"
    np.testing.assert_array_equal(tf.make_ndarray(theirs.inputs["z"]), z)
    # And back, including TensorFlow's value-field encoding for small tensors.
    labels = tf.make_tensor_proto(np.array([1, 2, 3], np.int32)).SerializeToString()
    np.testing.assert_array_equal(protos.from_tensor_proto(protos.TensorProto.FromString(labels)), [1, 2, 3])
    scalar_fill = tf.make_tensor_proto(2.5, shape=[2, 2]).SerializeToString()
    np.testing.assert_array_equal(protos.from_tensor_proto(protos.TensorProto.FromString(scalar_fill)), np.full((2, 2), 2.5))


def test_malformed_tensors_are_rejected():
    bad = protos.TensorProto(dtype=protos.DT["DT_FLOAT"], tensor_content=b"\x00" * 12)
    bad.tensor_shape.dim.add(size=2)
    bad.tensor_shape.dim.add(size=2)
    with pytest.raises(ValueError, match="holds 3 values but its shape"):
        protos.from_tensor_proto(bad)
    with pytest.raises(ValueError, match="unsupported tensor dtype DT_STRING"):
        protos.from_tensor_proto(protos.TensorProto(dtype=protos.DT["DT_STRING"]))


@pytest.mark.parametrize("module", ["serving.engine.onnx_generator", "serving.server", "serving.client"])
def test_onnx_serving_path_does_not_import_tensorflow(module):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'training')))"
    result = run_python("-c", code, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_shipped_open_inference_descriptors_are_those_of_the_installed_tritonclient():
    pytest.importorskip("tritonclient.grpc", reason="tritonclient is in the dev extra")
    from serving.protos.build_descriptors import OIP_OUTPUT, oip_descriptor_set

    assert OIP_OUTPUT.read_bytes() == oip_descriptor_set().SerializeToString(deterministic=True), \
        "run: python -m serving.protos.build_descriptors"
