"""The shipped TF Serving descriptors match the installed tensorflow-serving-api; serving needs no TF."""

import numpy as np
import pytest

from serving import protos
from serving.protos.build_descriptors import OUTPUT, descriptor_set
from tests.conftest import run_python


def test_shipped_descriptors_are_those_of_the_installed_tensorflow_serving_api():
    assert OUTPUT.read_bytes() == descriptor_set().SerializeToString(deterministic=True), \
        "run: python -m serving.protos.build_descriptors"


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


@pytest.mark.parametrize("module", ["serving.onnx_generator", "serving.server", "serving.client"])
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
