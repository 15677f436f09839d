"""The Open Inference Protocol's (KServe v2) gRPC API: `inference.GRPCInferenceService`'s ServerLive,
ServerReady, ServerMetadata, ModelReady, ModelMetadata and ModelInfer, one named handler each.

Messages come from `serving.protos.open_inference` (the protocol's descriptors, no generated code).
Input tensors are read from `raw_input_contents` with `np.frombuffer` (what tritonclient sends) or
from typed `contents`; the images go back as `raw_output_contents`, one buffer, no Python lists.
Errors carry the TF Serving side's gRPC codes and words.
"""

from __future__ import annotations

import grpc
import numpy as np

from serving.engine.core import RequestCore, RequestError
from serving.protocols.open_inference import tensors as oip_tensors
from serving.transports.grpc_common import GrpcIntake, unary
from serving.protocols.open_inference.targets import EXTENSIONS, MAX_VERSION, SERVER_NAME, SERVER_VERSION
from serving.protos import open_inference as oip


def target(name: str, version: str) -> tuple[str, int | None, str | None]:
    """A v2 version string: empty (the newest), a number, or else a version label."""
    if not version:
        return name, None, None
    if version.isdigit():
        if len(version) > 19 or int(version) > MAX_VERSION:
            raise RequestError("INVALID_ARGUMENT", f"version {version[:24]} is over 2**63-1")
        return name, int(version), None
    return name, None, version


async def server_live(core: RequestCore, request):
    return oip.ServerLiveResponse(live=True)


async def server_ready(core: RequestCore, request):
    return oip.ServerReadyResponse(ready=core.readiness()[0])


async def server_metadata(core: RequestCore, request):
    return oip.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION, extensions=EXTENSIONS)


async def model_ready(core: RequestCore, request):
    name, version, label = target(request.name, request.version)
    core.status(name, version, label)  # an unknown model or version: NOT_FOUND
    return oip.ModelReadyResponse(ready=core.model_ready(name, version, label))


async def model_metadata(core: RequestCore, request):
    name, version, label = target(request.name, request.version)
    resolved, info = core.info(name, version, label)
    inputs, outputs = oip_tensors.tensor_metadata(info)
    versions = [str(resolved)] if request.version else [str(v) for v in core.versions().get(name, [])]
    response = oip.ModelMetadataResponse(name=name, versions=versions, platform="onnxruntime_onnx")
    for spec in inputs:
        response.inputs.add(**spec)
    for spec in outputs:
        response.outputs.add(**spec)
    return response


async def model_infer(core: RequestCore, request):
    name, version, label = target(request.model_name, request.model_version)
    _, info = core.info(name, version, label)
    inputs = decode_inputs(core, info, request)
    for output in request.outputs:
        if output.name != oip_tensors.OUTPUT_NAME:
            raise RequestError("INVALID_ARGUMENT", f"requested output '{output.name[:64]}' is not this model's; its "
                               f"only output is '{oip_tensors.OUTPUT_NAME}'")
    resolved, images = await core.predict(name, inputs, version, label)
    response = oip.ModelInferResponse(model_name=name, model_version=str(resolved), id=request.id)
    response.outputs.add(name=oip_tensors.OUTPUT_NAME, datatype="FP32", shape=images.shape)
    response.raw_output_contents.append(np.ascontiguousarray(images, dtype="<f4").tobytes())
    return response


def decode_inputs(core: RequestCore, info, request) -> dict[str, np.ndarray]:
    """The request's tensors as arrays: declared shapes checked first, raw bytes read in place."""
    names = [tensor.name for tensor in request.inputs]
    if len(set(names)) != len(names):
        raise RequestError("INVALID_ARGUMENT", "every input must be named once")
    shapes = {tensor.name: oip_tensors.declared_shape(tensor.name, tensor.shape) for tensor in request.inputs}
    core.check_shapes(info, shapes)
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise RequestError("INVALID_ARGUMENT", f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs: "
                           "send one per input, in the order of 'inputs'")
    if raw and any(tensor.HasField("contents") for tensor in request.inputs):
        raise RequestError("INVALID_ARGUMENT", "send each input either as raw_input_contents or as typed "
                           "contents, not both")
    inputs = {}
    for index, tensor in enumerate(request.inputs):
        dtype = oip_tensors.check_datatype(tensor.name, tensor.datatype)
        if raw:
            inputs[tensor.name] = oip_tensors.from_raw(tensor.name, raw[index], dtype, shapes[tensor.name])
        else:
            values = getattr(tensor.contents, oip_tensors.CONTENTS_FIELD.get(tensor.datatype, "fp32_contents"))
            inputs[tensor.name] = oip_tensors.from_values(tensor.name, np.asarray(values, dtype), dtype,
                                                         shapes[tensor.name])
    return inputs


def handlers(core: RequestCore, metrics, intake: GrpcIntake) -> list[grpc.GenericRpcHandler]:
    def model_of(request):
        return request.model_name

    methods = {"ServerLive": ("v2_live", server_live, oip.ServerLiveRequest, None),
               "ServerReady": ("v2_ready", server_ready, oip.ServerReadyRequest, None),
               "ServerMetadata": ("v2_metadata", server_metadata, oip.ServerMetadataRequest, None),
               "ModelReady": ("v2_ready", model_ready, oip.ModelReadyRequest, None),
               "ModelMetadata": ("v2_metadata", model_metadata, oip.ModelMetadataRequest, None),
               "ModelInfer": ("predict", model_infer, oip.ModelInferRequest, model_of)}
    return [grpc.method_handlers_generic_handler(oip.SERVICE, {
        rpc: unary(core, metrics, intake, method, handler, request_class, model)
        for rpc, (method, handler, request_class, model) in methods.items()})]
