"""Tiny generator-shaped ONNX models built with onnx.helper (no training, no TensorFlow): the
serving tests that need many versions, fast, use these instead of a trained export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LATENT, IMAGE = 8, (4, 4, 1)


def generator_model(seed: int = 0, latent_dim: int = LATENT, num_classes: int | None = None,
                    image: tuple[int, int, int] = IMAGE) -> onnx.ModelProto:
    """images = tanh(z @ W [+ onehot(label) @ E]) reshaped to [batch, *image] ([batch, 4, 4, 1])."""
    rng = np.random.default_rng(seed)
    pixels = int(np.prod(image))
    inits = [numpy_helper.from_array(rng.standard_normal((latent_dim, pixels)).astype(np.float32), "W"),
             numpy_helper.from_array(np.array([-1, *image], np.int64), "shape")]
    nodes = [helper.make_node("MatMul", ["z", "W"], ["h"])]
    inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", latent_dim])]
    if num_classes:
        inits.append(numpy_helper.from_array(rng.standard_normal((num_classes, pixels)).astype(np.float32), "E"))
        inputs.append(helper.make_tensor_value_info("label", TensorProto.INT32, ["batch"]))
        nodes += [helper.make_node("Gather", ["E", "label"], ["e"], axis=0), helper.make_node("Add", ["h", "e"], ["s"])]
    nodes += [helper.make_node("Tanh", ["s" if num_classes else "h"], ["t"]),
              helper.make_node("Reshape", ["t", "shape"], ["images"])]
    graph = helper.make_graph(nodes, "tiny_generator", inputs,
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", *image])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if num_classes:
        model.metadata_props.add(key="num_classes", value=str(num_classes))
    return model


def model_bytes(seed: int = 0, **kwargs) -> bytes:
    return generator_model(seed, **kwargs).SerializeToString()


def write_version(base: Path, version: int, seed: int = 0, **kwargs) -> Path:
    """`base/<version>/model.onnx`, written atomically (a temp dir renamed into place)."""
    staging = base / f".staging-{version}"
    staging.mkdir(parents=True)
    (staging / "model.onnx").write_bytes(model_bytes(seed, **kwargs))
    staging.rename(base / str(version))
    return base / str(version) / "model.onnx"
