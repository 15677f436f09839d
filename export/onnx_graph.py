"""Graph rewrites that make the exported generator cheaper for onnxruntime, without changing its images.

tf2onnx writes each pixel-shuffle block as `Conv -> DepthToSpace -> Mul -> Add -> Relu` (the
BatchNorm in inference mode is the Mul and Add). onnxruntime fuses a Mul/Add/Relu into the Conv
before it, but not across a DepthToSpace, so three extra passes over the upsampled activations
remain, and the int8 quantizer must quantize each of them. `DepthToSpace` only moves values: a
per-channel operation after it equals the same operation on the `block**2`-times tiled channels
before it. `fold_into_convolutions` moves the BatchNorm into the Conv's weights and bias and the
Relu above the DepthToSpace, leaving `Conv(+Relu) -> DepthToSpace`, which onnxruntime fuses.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


class _Graph:
    """Name lookups over an ONNX graph: initializers, each tensor's producer and consumers."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.initializers = {i.name: i for i in graph.initializer}
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in graph.output}

    def constant(self, name: str) -> np.ndarray | None:
        return numpy_helper.to_array(self.initializers[name]) if name in self.initializers else None

    def only_consumer(self, tensor: str) -> onnx.NodeProto | None:
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in self.outputs else None

    def replace_initializer(self, name: str, value: np.ndarray) -> str:
        """A new initializer (the old one may be shared); returns its name."""
        new_name = f"{name}__folded"
        while new_name in self.initializers:
            new_name += "_"
        tensor = numpy_helper.from_array(value.astype(np.float32), new_name)
        self.graph.initializer.append(tensor)
        self.initializers[new_name] = tensor
        return new_name


def _per_channel(value: np.ndarray | None, channels: int) -> np.ndarray | None:
    """`value` as a `[channels]` vector if it broadcasts per channel over NCHW (a scalar, `[C, 1, 1]`
    or `[1, C, 1, 1]`; a `[C]` vector would broadcast over the width), else None."""
    if value is None or value.dtype != np.float32:
        return None
    if value.size == 1:
        return np.full(channels, value.reshape(()), np.float32)
    if value.shape in ((channels, 1, 1), (1, channels, 1, 1)):
        return value.reshape(-1)
    return None


def _fold_one(g: _Graph, shuffle: onnx.NodeProto) -> bool:
    """Fold the Mul/Add/Relu chain after one `Conv -> DepthToSpace` into the Conv; True if changed."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in shuffle.attribute}
    mode = attrs.get("mode", b"DCR")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "DCR":
        return False
    conv = g.producer.get(shuffle.input[0])
    if conv is None or conv.op_type != "Conv" or g.only_consumer(conv.output[0]) is not shuffle:
        return False
    weight = g.constant(conv.input[1])
    bias = g.constant(conv.input[2]) if len(conv.input) > 2 else np.zeros(weight.shape[0], np.float32)
    if weight is None or bias is None:
        return False
    repeats = int(attrs["blocksize"]) ** 2
    channels = weight.shape[0] // repeats
    scale, shift, relu, last = np.ones(channels, np.float32), np.zeros(channels, np.float32), False, shuffle
    chain = []  # the nodes folded away, in order
    while (node := g.only_consumer(last.output[0])) is not None and not relu:
        if node.op_type == "Relu":
            relu, last = True, node
            chain.append(node)
            continue
        if node.op_type not in ("Mul", "Add") or len(node.input) != 2:
            break
        other = node.input[1] if node.input[0] == last.output[0] else node.input[0]
        vector = _per_channel(g.constant(other), channels)
        if vector is None:
            break
        if node.op_type == "Mul":
            scale, shift = scale * vector, shift * vector
        else:
            shift = shift + vector
        last = node
        chain.append(node)
    if last is shuffle:
        return False
    # DepthToSpace (DCR) takes input channel k to output channel k % channels: tile per output channel.
    tiled_scale, tiled_shift = np.tile(scale, repeats), np.tile(shift, repeats)
    new_weight = weight * tiled_scale.reshape(-1, *([1] * (weight.ndim - 1)))
    new_bias = bias * tiled_scale + tiled_shift
    conv_inputs = [conv.input[0], g.replace_initializer(conv.input[1], new_weight),
                   g.replace_initializer(conv.input[2] if len(conv.input) > 2 else f"{conv.name}_bias", new_bias)]
    del conv.input[:]
    conv.input.extend(conv_inputs)
    final_output = last.output[0]
    for node in chain:
        g.graph.node.remove(node)
    if relu:  # Conv -> Relu -> DepthToSpace, the Relu reusing the Conv's old output name
        relu_node = onnx.helper.make_node("Relu", [conv.output[0]], [f"{conv.output[0]}__relu"],
                                          name=f"{conv.name}__relu")
        g.graph.node.insert(list(g.graph.node).index(conv) + 1, relu_node)
        shuffle.input[0] = relu_node.output[0]
    shuffle.output[0] = final_output
    return True


def fold_into_convolutions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold every per-channel Mul/Add/Relu after a `Conv -> DepthToSpace` into the Conv (in place)."""
    changed = True
    while changed:
        g = _Graph(model.graph)
        changed = any(_fold_one(g, node) for node in list(model.graph.node) if node.op_type == "DepthToSpace")
    _drop_unused_initializers(model.graph)
    return model


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
