"""TensorFlow Serving's gRPC API: PredictionService (Predict, GetModelMetadata) and ModelService
(GetModelStatus, HandleReloadConfigRequest), one named handler per method.

Messages come from `serving.protos` (TF Serving's own descriptors, no TensorFlow), so any TF
Serving client works unchanged. The shapes a request's TensorProtos declare are checked before any
array is built, so a tiny message cannot claim a huge tensor.
"""

from __future__ import annotations

import grpc

from serving import protos
from serving.engine.core import RequestCore, RequestError
from serving.transports.grpc_common import GrpcIntake, unary
from serving.protocols.tfserving.signature import check_signature, signature_def_map
from serving.engine.model_manager import STATES, LabelError
from serving.model_control import ModelControl, ReloadRefused
from serving.protocols.tfserving.config_files import ConfigError, models_from_proto

ReloadConfigRequest = protos.message("tensorflow.serving.ReloadConfigRequest")
ReloadConfigResponse = protos.message("tensorflow.serving.ReloadConfigResponse")
DTYPES = {"z": "DT_FLOAT", "label": "DT_INT32"}  # the signature's, as TF Serving checks them


def target(spec) -> tuple[str, int | None, str | None]:
    version = spec.version.value if spec.HasField("version") else None
    return spec.name, version, spec.version_label or None


def check_dtypes(tensors, info) -> None:
    """TF Serving refuses a tensor whose dtype is not the signature's (no silent casts)."""
    for index, key in enumerate(k for k in DTYPES if k in tensors):
        wanted, got = protos.DT[DTYPES[key]], tensors[key].dtype
        if got != wanted:
            hint = ""
            if key == "label":
                hint = ("; class ids are int32 numbers, not booleans" if got == protos.DT["DT_BOOL"] else
                        f"; input 'label' takes int32 class ids, which must be in [0, {(info.num_classes or 1) - 1}]")
            raise ValueError(f"Expects arg[{index}] ('{key}') to be {_dt(wanted)} but {_dt(got)} is provided{hint}")


def _dt(number: int) -> str:
    return protos.dtype_name(number).removeprefix("DT_").lower()


async def predict(core: RequestCore, request):
    name, version, label = target(request.model_spec)
    _, info = core.info(name, version, label)
    check_signature(request.model_spec.signature_name)
    shapes = {}
    try:  # the declared shapes first: nothing is allocated for a tensor the signature refuses
        shapes = {key: protos.declared_shape(tensor) for key, tensor in request.inputs.items()}
    except (ValueError, OverflowError) as err:
        raise RequestError("INVALID_ARGUMENT", f"bad input tensor: {err}") from None
    max_values = core.check_shapes(info, shapes)
    try:
        check_dtypes(request.inputs, info)
        inputs = {key: protos.from_tensor_proto(tensor, max_values) for key, tensor in request.inputs.items()}
    except (ValueError, OverflowError) as err:
        raise RequestError("INVALID_ARGUMENT", f"bad input tensor: {err}") from None
    if request.output_filter and set(request.output_filter) != {"images"}:
        raise RequestError("INVALID_ARGUMENT", f"output_filter {list(request.output_filter)} names outputs this "
                           "model does not have; its only output is 'images'")
    resolved, images = await core.predict(name, inputs, version, label)
    response = protos.PredictResponse()
    response.model_spec.name, response.model_spec.signature_name = name, "serving_default"
    response.model_spec.version.value = resolved
    response.outputs["images"].CopyFrom(protos.to_tensor_proto(images))
    return response


async def metadata(core: RequestCore, request):
    """TF Serving's checks, in its order and words; the signature_def map."""
    if not request.HasField("model_spec"):
        raise RequestError("INVALID_ARGUMENT", "Missing ModelSpec")
    if not request.metadata_field:
        raise RequestError("INVALID_ARGUMENT", "GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != "signature_def":
            raise RequestError("INVALID_ARGUMENT", f"Metadata field {field} is not supported; the one served is "
                               "signature_def")
    name, version, label = target(request.model_spec)
    resolved, info = core.info(name, version, label)
    response = protos.GetModelMetadataResponse()
    response.model_spec.name = name
    response.model_spec.version.value = resolved
    response.metadata["signature_def"].Pack(signature_def_map(info))
    return response


async def status(core: RequestCore, request):
    if not request.HasField("model_spec"):
        raise RequestError("INVALID_ARGUMENT", "Missing ModelSpec")
    name, version, label = target(request.model_spec)
    response = protos.GetModelStatusResponse()
    for v, state, error in core.status(name, version, label):
        entry = response.model_version_status.add(version=v, state=STATES[state])
        entry.status.error_code, entry.status.error_message = (2, error) if error else (0, "")  # 2: UNKNOWN
    return response


def reload_handler(control: ModelControl | None):
    """ModelService/HandleReloadConfigRequest: serve exactly this ModelServerConfig, now."""
    async def reload_config(core: RequestCore, request):
        if request.config.WhichOneof("config") != "model_config_list":
            raise RequestError("INVALID_ARGUMENT", "ServerModelConfig type not supported by "
                               "HandleReloadConfigRequest. Only ModelConfigList is currently supported")
        if control is None:
            raise RequestError("UNIMPLEMENTED", "this server takes no reloads")
        refused = control.refusal()
        if refused:
            raise RequestError("FAILED_PRECONDITION", refused)
        try:
            await control.reload(models_from_proto(request.config))
        except (LabelError, ReloadRefused) as err:
            raise RequestError("FAILED_PRECONDITION", str(err)) from None
        except ConfigError as err:
            raise RequestError("INVALID_ARGUMENT", str(err)) from None
        return ReloadConfigResponse()  # status: error_code 0 (OK)

    return reload_config


def handlers(core: RequestCore, metrics, intake: GrpcIntake, control: ModelControl | None = None
             ) -> list[grpc.GenericRpcHandler]:
    def model_of(request):
        return request.model_spec.name

    prediction = grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
        "Predict": unary(core, metrics, intake, "predict", predict, protos.PredictRequest, model_of),
        "GetModelMetadata": unary(core, metrics, intake, "metadata", metadata, protos.GetModelMetadataRequest),
    })
    model_service = grpc.method_handlers_generic_handler("tensorflow.serving.ModelService", {
        "GetModelStatus": unary(core, metrics, intake, "status", status, protos.GetModelStatusRequest),
        "HandleReloadConfigRequest": unary(core, metrics, intake, "reload_config", reload_handler(control),
                                           ReloadConfigRequest),
    })
    return [prediction, model_service]
