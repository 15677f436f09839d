"""TensorFlow Serving's gRPC API over the ONNX generator: PredictionService and ModelService.

Registered as generic handlers on `grpc.aio` with messages from `serving.protos`, so any TF Serving
client (e.g. `tensorflow_serving.apis.prediction_service_pb2_grpc`) works unchanged. The shapes a
request's TensorProtos declare are checked before any array is built; every outcome is counted in
the metrics under its real code (a cancelled call as CANCELLED, a bug as INTERNAL).
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from serving import protos
from serving.onnx_generator import InputError
from serving.model_manager import STATES, LabelError
from serving.server_config import ConfigError, models_from_proto
from serving.service import GeneratorService, RequestError, check_signature

log = logging.getLogger("serving.grpc")

GRPC_STATUS = {"INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT, "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
               "FAILED_PRECONDITION": grpc.StatusCode.FAILED_PRECONDITION,
               "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED, "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
               "UNIMPLEMENTED": grpc.StatusCode.UNIMPLEMENTED, "DEADLINE_EXCEEDED": grpc.StatusCode.DEADLINE_EXCEEDED}
ReloadConfigRequest = protos.message("tensorflow.serving.ReloadConfigRequest")
ReloadConfigResponse = protos.message("tensorflow.serving.ReloadConfigResponse")


def _target(spec):
    version = spec.version.value if spec.HasField("version") else None
    return spec.name, version, spec.version_label or None


MAX_MESSAGE_CHARS = 1000  # status details stay short whatever a request names
DTYPES = {"z": "DT_FLOAT", "label": "DT_INT32"}  # the signature's, as TF Serving checks them


class _MalformedLog:
    """One short line for a malformed message, then at most one line per `every` seconds with the
    count in between: a flood of garbage cannot flood the log."""

    def __init__(self, every: float = 10.0):
        self.every, self.last, self.suppressed = every, -float("inf"), 0

    def __call__(self, method: str, size: int) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            self.suppressed += 1
            return
        more = f" ({self.suppressed} more since the last such line)" if self.suppressed else ""
        log.warning("malformed gRPC %s message (%d bytes): INVALID_ARGUMENT%s", method, size, more)
        self.last, self.suppressed = now, 0


def _parse(request_class, raw: bytes):
    """Bytes -> message; what does not parse is the client's error (INVALID_ARGUMENT), not ours."""
    try:
        return request_class.FromString(raw)
    except Exception:  # DecodeError, or a message nested past protobuf's recursion limit
        raise RequestError("INVALID_ARGUMENT", f"could not parse the request as a {request_class.DESCRIPTOR.name} "
                           f"({len(raw)} bytes)") from None


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


def build_handlers(service: GeneratorService, metrics) -> list[grpc.GenericRpcHandler]:
    malformed = _MalformedLog()

    def timed(method, handler, request_class):
        async def wrapped(raw: bytes, context):
            start, code, failure, request = time.perf_counter(), "OK", None, None
            metrics.in_flight.labels("grpc").inc()
            try:
                request = _parse(request_class, raw)
                return await handler(request, context)
            except RequestError as err:
                if request is None:
                    malformed(method, len(raw))
                code, failure = err.code, (GRPC_STATUS.get(err.code, grpc.StatusCode.INTERNAL), err.message)
            except asyncio.CancelledError:  # the client cancelled or its deadline passed: its work is dropped
                code = "CANCELLED"
                raise
            except Exception as err:  # a bug, not bad input: INTERNAL with a message, one log line
                log.error("internal error in %s: %s: %s", method, type(err).__name__, err)
                code, failure = "INTERNAL", (grpc.StatusCode.INTERNAL, f"internal error: {type(err).__name__}")
            finally:
                metrics.in_flight.labels("grpc").dec()
                model = request.model_spec.name if method == "predict" and request is not None else None
                metrics.observe("grpc", method, code, time.perf_counter() - start, model=model)
            status, message = failure
            await context.abort(status, message if len(message) <= MAX_MESSAGE_CHARS else
                                message[:MAX_MESSAGE_CHARS] + f"... ({len(message)} characters)")
        return wrapped

    async def predict(request, context):
        name, version, label = _target(request.model_spec)
        _, model = service.resolve(name, version, label)
        check_signature(request.model_spec.signature_name)
        try:  # the declared shapes first: nothing is allocated for a tensor the signature refuses
            shapes = {key: protos.declared_shape(tensor) for key, tensor in request.inputs.items()}
            max_values = service.check_shapes(model.info, shapes)
            check_dtypes(request.inputs, model.info)
            inputs = {key: protos.from_tensor_proto(tensor, max_values) for key, tensor in request.inputs.items()}
        except (ValueError, OverflowError) as err:
            raise RequestError("INVALID_ARGUMENT", f"bad input tensor: {err}") from None
        if request.output_filter and set(request.output_filter) != {"images"}:
            raise RequestError("INVALID_ARGUMENT", f"output_filter {list(request.output_filter)} names outputs this "
                               "model does not have; its only output is 'images'")
        try:
            resolved, images = await service.predict(name, inputs, version, label, request.model_spec.signature_name)
        except InputError as err:
            raise RequestError("INVALID_ARGUMENT", str(err)) from None
        response = protos.PredictResponse()
        response.model_spec.name, response.model_spec.signature_name = name, "serving_default"
        response.model_spec.version.value = resolved
        response.outputs["images"].CopyFrom(protos.to_tensor_proto(images))
        return response

    async def metadata(request, context):  # TF Serving's checks, in its order and words
        if not request.HasField("model_spec"):
            raise RequestError("INVALID_ARGUMENT", "Missing ModelSpec")
        if not request.metadata_field:
            raise RequestError("INVALID_ARGUMENT", "GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise RequestError("INVALID_ARGUMENT", f"Metadata field {field} is not supported; the one served is "
                                   "signature_def")
        name, version, label = _target(request.model_spec)
        resolved, signature = service.signature_def_map(name, version, label)
        response = protos.GetModelMetadataResponse()
        response.model_spec.name = name
        response.model_spec.version.value = resolved
        response.metadata["signature_def"].Pack(signature)
        return response

    async def status(request, context):
        if not request.HasField("model_spec"):
            raise RequestError("INVALID_ARGUMENT", "Missing ModelSpec")
        name, version, label = _target(request.model_spec)
        response = protos.GetModelStatusResponse()
        for v, state, error in service.status(name, version, label):
            entry = response.model_version_status.add(version=v, state=STATES[state])
            entry.status.error_code, entry.status.error_message = (2, error) if error else (0, "")  # 2: UNKNOWN
        return response

    async def reload_config(request, context):
        """ModelService/HandleReloadConfigRequest: serve exactly this ModelServerConfig, now."""
        if request.config.WhichOneof("config") != "model_config_list":
            raise RequestError("INVALID_ARGUMENT", "ServerModelConfig type not supported by "
                               "HandleReloadConfigRequest. Only ModelConfigList is currently supported")
        try:
            models = models_from_proto(request.config)
            await service.manager.apply(models)
        except LabelError as err:
            raise RequestError("FAILED_PRECONDITION", str(err)) from None
        except ConfigError as err:
            raise RequestError("INVALID_ARGUMENT", str(err)) from None
        return ReloadConfigResponse()  # status: error_code 0 (OK)

    def unary(method, handler, request_class):  # bytes in: a message that does not parse is ours to answer
        return grpc.unary_unary_rpc_method_handler(timed(method, handler, request_class),
                                                   response_serializer=lambda m: m.SerializeToString())

    prediction = grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
        "Predict": unary("predict", predict, protos.PredictRequest),
        "GetModelMetadata": unary("metadata", metadata, protos.GetModelMetadataRequest),
    })
    model_service = grpc.method_handlers_generic_handler("tensorflow.serving.ModelService", {
        "GetModelStatus": unary("status", status, protos.GetModelStatusRequest),
        "HandleReloadConfigRequest": unary("reload_config", reload_config, ReloadConfigRequest),
    })
    return [prediction, model_service]
