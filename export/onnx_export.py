"""The ONNX model: the same serving function converted with tf2onnx.

`tf2onnx.convert.from_keras` fails on Keras 3 models (`KeyError: 'keras_tensor_N'`); converting the
`tf.function` with its named input signature works and keeps the names `z`, `label` and `images`.
The batch dimension is dynamic and named `batch`; model facts travel in the file's metadata so an
app holding only the `.onnx` knows the latent size and the classes. Each pixel-shuffle block's
BatchNorm and ReLU are folded into its convolution (`export.onnx_graph`): same images, fewer passes.
"""

from __future__ import annotations

from pathlib import Path

import keras

from export.onnx_graph import fold_into_convolutions
from export.signature import GeneratorSpec, serving_function

OPSET = 17


def write_onnx(generator: keras.Model, spec: GeneratorSpec, path: Path, metadata: dict[str, str],
               fold: bool = True) -> None:
    """`fold=False` keeps tf2onnx's graph as converted (for benchmarks that measure the folding)."""
    import onnx
    import tf2onnx

    fn = serving_function(generator, spec)
    model, _ = tf2onnx.convert.from_function(fn, input_signature=spec.input_signature, opset=OPSET)
    if fold:
        fold_into_convolutions(model)
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
