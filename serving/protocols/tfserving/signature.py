"""What TF Serving's REST and gRPC front ends share: the one signature a generator has, described
as TF Serving describes a SavedModel's (`signature_def`), and TF Serving's check of its name."""

from __future__ import annotations

from serving import protos
from serving.engine.core import RequestError
from serving.engine.validation import ModelInfo

SIGNATURE_NAME = "serving_default"


def check_signature(signature_name: str) -> None:
    if signature_name and signature_name != SIGNATURE_NAME:
        raise RequestError("INVALID_ARGUMENT", f'Serving signature name: "{signature_name[:100]}" not found in signature '
                           f'def; this model has "{SIGNATURE_NAME}"')


def signature_def_map(info: ModelInfo):
    """The generator as a SignatureDefMap: inputs z (float [-1, latent]) and label (int32 [-1],
    conditional models), output images (float [-1, H, W, C])."""
    signature = protos.SignatureDefMap()
    sig = signature.signature_def[SIGNATURE_NAME]
    sig.method_name = "tensorflow/serving/predict"
    specs = {"z": ("DT_FLOAT", [-1, info.latent_dim])}
    if info.num_classes:
        specs["label"] = ("DT_INT32", [-1])
    for input_name, (dtype, shape) in specs.items():
        tensor = sig.inputs[input_name]
        tensor.name, tensor.dtype = f"{SIGNATURE_NAME}_{input_name}:0", protos.DT[dtype]
        for size in shape:
            tensor.tensor_shape.dim.add(size=size)
    output = sig.outputs["images"]
    output.name, output.dtype = "images:0", protos.DT["DT_FLOAT"]
    for size in (-1, *info.image_shape):
        output.tensor_shape.dim.add(size=size)
    return signature
