"""The server's logic, shared by its REST and gRPC front-ends: resolve, validate, predict, describe.

Errors are `ServingError`s carrying a canonical status code name (TF Serving's), which each front
end maps to its own status: `INVALID_ARGUMENT` -> 400, `NOT_FOUND` -> 404, and so on.
"""

from __future__ import annotations

import numpy as np

from serving import protos
from serving.batching import DynamicBatcher
from serving.onnx_generator import InputError
from serving.repository import NotFound, ServedModel

SIGNATURE_NAME = "serving_default"
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429,
               "UNAVAILABLE": 503, "INTERNAL": 500, "UNIMPLEMENTED": 501}


class ServingError(Exception):
    def __init__(self, code: str, message: str, http_status: int | None = None):
        super().__init__(message)
        self.code, self.message = code, message
        self.http_status = http_status or HTTP_STATUS.get(code, 500)


class GeneratorService:
    def __init__(self, models: dict[str, ServedModel], batchers: dict[tuple[str, int], DynamicBatcher],
                 max_request_batch: int = 256):
        self.models, self.batchers, self.max_request_batch = models, batchers, max_request_batch

    def resolve(self, name: str, version: int | None = None, label: str | None = None):
        if name not in self.models:
            raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name}); "
                               f"models served: {sorted(self.models)}")
        try:
            return self.models[name].resolve(version, label)
        except NotFound as err:
            raise ServingError("NOT_FOUND", str(err)) from None
        except ValueError as err:
            raise ServingError("INVALID_ARGUMENT", str(err)) from None

    async def predict(self, name: str, inputs: dict[str, np.ndarray], version: int | None = None,
                      label: str | None = None, signature_name: str = "") -> tuple[int, np.ndarray]:
        version, _ = self.resolve(name, version, label)
        check_signature(signature_name)
        rows = _rows(inputs)
        if rows > self.max_request_batch:
            raise ServingError("INVALID_ARGUMENT", f"batch of {rows} rows is over this server's per-request limit "
                               f"of {self.max_request_batch}; split the request")
        try:
            return version, await self.batchers[(name, version)].predict(inputs)
        except InputError as err:
            raise ServingError("INVALID_ARGUMENT", str(err)) from None

    def signature_def_map(self, name: str, version: int | None = None, label: str | None = None):
        version, model = self.resolve(name, version, label)
        signature = protos.SignatureDefMap()
        sig = signature.signature_def[SIGNATURE_NAME]
        sig.method_name = "tensorflow/serving/predict"
        info = model.info
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
        return version, signature

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list[int]:
        """Versions whose state is reported: the one asked for, or all of them."""
        if version is None and not label:
            self.resolve(name)
            return sorted(self.models[name].versions)
        return [self.resolve(name, version, label)[0]]


def check_signature(signature_name: str) -> None:
    if signature_name and signature_name != SIGNATURE_NAME:
        raise ServingError("INVALID_ARGUMENT", f'Serving signature name: "{signature_name}" not found in signature '
                           f'def; this model has "{SIGNATURE_NAME}"')


def _rows(inputs: dict[str, np.ndarray]) -> int:
    z = inputs.get("z")
    return int(np.shape(z)[0]) if z is not None and np.ndim(z) >= 1 else 0
