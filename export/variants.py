"""Faster ONNX variants of the float32 generator, built from its ONNX file (no TensorFlow needed).

- `int8`: onnxruntime's static quantization in QDQ format, weights int8 per output channel,
  activations uint8, with ranges calibrated on latent samples (and labels for a conditional model).
  onnxruntime's CPU provider fuses the QDQ pairs around Conv, MatMul and Gemm into integer kernels;
  `ConvTranspose` has no integer kernel there and stays float, so a transposed-conv generator gains
  little and a Conv + DepthToSpace (pixel shuffle) one gains most.
- `fp16`: onnxconverter-common's float16 converter with `keep_io_types=True`: the graph computes in
  float16 while `z`, `label` and `images` keep their float32/int32 types and names. It is meant for
  the CUDA provider (tensor cores). onnxruntime's CPU provider has float16 kernels for few ops and
  runs the rest behind inserted Cast nodes, so on CPU it is correct but slower than float32.

Each variant is a file of its own: `<name>.<variant>.onnx` beside `<name>.onnx`.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from common.signature import LABEL, Z, labels_in_turn, random_z
from export import ExportError
from serving.engine.onnx_generator import VARIANTS  # serving holds the list: it may not import export

CALIBRATION_BATCHES = 8
CALIBRATION_BATCH_SIZE = 32


def parse_variants(text: str | None) -> tuple[str, ...]:
    """`"int8,fp16"` -> `("int8", "fp16")`; an unknown or repeated name is an ExportError."""
    names = tuple(filter(None, (part.strip() for part in (text or "").split(","))))
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise ExportError(f"--variants {text!r}: unknown {unknown}; choose from {','.join(VARIANTS)}.")
    if len(set(names)) != len(names):
        raise ExportError(f"--variants {text!r} names a variant twice.")
    return names


def calibration_inputs(latent_dim: int, num_classes: int | None, seed: int,
                       batches: int = CALIBRATION_BATCHES, batch_size: int = CALIBRATION_BATCH_SIZE) -> list[dict]:
    """Feeds like the ones served: standard-normal z and, for a conditional model, every class."""
    rng = np.random.default_rng(seed)
    feeds = []
    for i in range(batches):
        feed = {Z: random_z(batch_size, latent_dim, rng)}
        if num_classes:
            feed[LABEL] = labels_in_turn(batch_size, num_classes, start=i * batch_size)
        feeds.append(feed)
    return feeds


def write_variant(variant: str, fp32_path: Path, out_path: Path, latent_dim: int, num_classes: int | None,
                  seed: int = 0) -> None:
    """Build `variant` of the float32 ONNX model at `fp32_path` into `out_path`, keeping its metadata."""
    import onnx

    if variant == "int8":
        _quantize_int8(Path(fp32_path), Path(out_path), calibration_inputs(latent_dim, num_classes, seed))
    elif variant == "fp16":
        from onnxconverter_common import float16

        with warnings.catch_warnings():  # it warns once per weight rounded to float16's range: expected
            warnings.simplefilter("ignore", UserWarning)
            # Cast nodes stay as they are: the converter would retype tf2onnx's label Cast(int32 -> float)
            # to float16 outputs without changing its `to`, which onnxruntime then refuses to load.
            model = float16.convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True,
                                                     op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, "Cast"])
        onnx.save(model, str(out_path))
    else:
        raise ExportError(f"unknown variant {variant!r}; choose from {','.join(VARIANTS)}.")
    source, model = onnx.load(str(fp32_path)), onnx.load(str(out_path))
    del model.metadata_props[:]
    for prop in source.metadata_props:
        model.metadata_props.add(key=prop.key, value=prop.value)
    model.metadata_props.add(key="variant", value=variant)
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))


def _quantize_int8(fp32_path: Path, out_path: Path, feeds: list[dict]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.remaining = iter(feeds)

        def get_next(self):
            return next(self.remaining, None)

    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        # Shape inference and constant folding first, as onnxruntime recommends before quantizing;
        # symbolic shape inference needs sympy and adds nothing for these static shapes.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out_path), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
