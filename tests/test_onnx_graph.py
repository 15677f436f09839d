"""export.onnx_graph: BatchNorm and ReLU after a pixel shuffle fold into the Conv before it, with
the same images. Built with onnx.helper and run on onnxruntime: no TensorFlow."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from export.onnx_graph import fold_into_convolutions

C_IN, C_OUT, BLOCK = 3, 2, 2


def pixel_shuffle_block(scale_shape=(1, C_OUT, 1, 1), relu: bool = True, extra_reader: bool = False) -> onnx.ModelProto:
    """x -> Conv(4*C_OUT) -> DepthToSpace -> Mul -> Add -> [Relu] -> Conv(1): a generator's block."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((C_OUT * BLOCK**2, C_IN, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(C_OUT * BLOCK**2).astype(np.float32), "B"),
             numpy_helper.from_array(rng.uniform(0.5, 2, scale_shape).astype(np.float32), "scale"),
             numpy_helper.from_array(rng.standard_normal((1, C_OUT, 1, 1)).astype(np.float32), "shift"),
             numpy_helper.from_array(rng.standard_normal((1, C_OUT, 3, 3)).astype(np.float32), "W2")]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("DepthToSpace", ["c"], ["d"], blocksize=BLOCK, mode="DCR"),
             helper.make_node("Mul", ["d", "scale"], ["m"]),
             helper.make_node("Add", ["m", "shift"], ["a"])]
    nodes += [helper.make_node("Relu", ["a"], ["r"])] if relu else []
    nodes += [helper.make_node("Conv", ["r" if relu else "a", "W2"], ["y"], pads=[1, 1, 1, 1])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1, 10, 10])]
    if extra_reader:  # the shuffle's output is read twice: folding would change the other reader
        nodes.append(helper.make_node("Identity", ["d"], ["d_copy"]))
        outputs.append(helper.make_tensor_value_info("d_copy", TensorProto.FLOAT, [None, C_OUT, 10, 10]))
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, C_IN, 5, 5])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


def test_batchnorm_and_relu_fold_into_the_conv_with_the_same_images():
    x = np.random.default_rng(1).standard_normal((4, C_IN, 5, 5)).astype(np.float32)
    for relu in (True, False):
        original = pixel_shuffle_block(relu=relu)
        folded = fold_into_convolutions(pixel_shuffle_block(relu=relu))
        onnx.checker.check_model(folded, full_check=True)
        ops = [n.op_type for n in folded.graph.node]
        assert ops == (["Conv", "Relu", "DepthToSpace", "Conv"] if relu else ["Conv", "DepthToSpace", "Conv"])
        np.testing.assert_allclose(run(folded, x)[0], run(original, x)[0], rtol=1e-5, atol=1e-5)
        assert {i.name for i in folded.graph.initializer} >= {"W2"} and "scale" not in {i.name for i in folded.graph.initializer}


def test_what_is_not_per_channel_or_is_read_twice_is_left_alone():
    x = np.random.default_rng(2).standard_normal((2, C_IN, 5, 5)).astype(np.float32)
    # A [W] vector broadcasts over the width, not the channels: not a BatchNorm, not folded.
    width_vector = pixel_shuffle_block(scale_shape=(10,))
    assert [n.op_type for n in fold_into_convolutions(pixel_shuffle_block(scale_shape=(10,))).graph.node].count("Mul") == 1
    np.testing.assert_allclose(run(fold_into_convolutions(pixel_shuffle_block(scale_shape=(10,))), x)[0],
                               run(width_vector, x)[0], rtol=1e-6)
    shared = fold_into_convolutions(pixel_shuffle_block(extra_reader=True))
    assert [n.op_type for n in shared.graph.node] == [n.op_type for n in pixel_shuffle_block(extra_reader=True).graph.node]
