"""The server's logic, shared by its REST and gRPC front-ends: resolve, validate, predict, describe.

Errors are `RequestError`s carrying a canonical status code name (TF Serving's), which each front
end maps to its own status: `INVALID_ARGUMENT` -> 400, `NOT_FOUND` -> 404, and so on. Shapes are
checked against the signature and the per-request row limit before any array is built (gRPC checks
the shapes a TensorProto declares, so a tiny message cannot claim a huge tensor).
"""

from __future__ import annotations

import contextlib

import numpy as np

from serving import protos
from serving.batching import DynamicBatcher, QueueFull
from serving.onnx_generator import InputError, check_labels
from serving.repository import NotFound, ServedModel

SIGNATURE_NAME = "serving_default"
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429,
               "UNAVAILABLE": 503, "INTERNAL": 500, "UNIMPLEMENTED": 501, "DEADLINE_EXCEEDED": 408,
               "CANCELLED": 499}


class RequestError(Exception):
    """This request cannot be served: a canonical status code (TF Serving's) and a message for the client."""

    def __init__(self, code: str, message: str, http_status: int | None = None):
        super().__init__(message)
        self.code, self.message = code, message
        self.http_status = http_status or HTTP_STATUS.get(code, 500)


class GeneratorService:
    """`manager` (a ModelManager) makes versions come and go while serving: each prediction holds
    its version until it is answered, and status reports TF Serving's version states."""

    def __init__(self, models: dict[str, ServedModel], batchers: dict[tuple[str, int], DynamicBatcher],
                 max_request_batch: int = 256, manager=None):
        self.models, self.batchers, self.max_request_batch = models, batchers, max_request_batch
        self.manager = manager

    def resolve(self, name: str, version: int | None = None, label: str | None = None):
        with _as_request_errors():
            if name not in self.models:
                request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
                raise NotFound(f"Servable not found for request: {request}; models served: {sorted(self.models)}")
            return self.models[name].resolve(version, label)

    async def predict(self, name: str, inputs: dict, version: int | None = None, label: str | None = None,
                      signature_name: str = "") -> tuple[int, np.ndarray]:
        """Inputs (arrays or nested lists) -> (resolved version, images)."""
        version, model = self.resolve(name, version, label)
        check_signature(signature_name)
        arrays = {key: _as_array(key, value) for key, value in inputs.items()}
        self.check_shapes(model.info, {key: array.shape for key, array in arrays.items()})
        if "label" in arrays:
            try:
                arrays["label"] = check_labels(inputs["label"], model.info.num_classes)
            except InputError as err:
                raise RequestError("INVALID_ARGUMENT", str(err)) from None
        lease = self.manager.lease(name, version) if self.manager else contextlib.nullcontext()
        try:
            with lease:  # this version is not unloaded before the answer is ready
                return version, await self.batchers[(name, version)].predict(arrays)
        except InputError as err:
            raise RequestError("INVALID_ARGUMENT", str(err)) from None
        except QueueFull as err:
            raise RequestError("RESOURCE_EXHAUSTED", str(err)) from None

    def check_shapes(self, info, shapes: dict[str, tuple[int, ...]]) -> int:
        """Names, ranks, sizes and rows against the signature and --max-request-batch; returns the most
        values any one input may hold. Needs only the shapes, so gRPC calls it before building arrays."""
        expected = {"z": (info.latent_dim,), **({"label": ()} if info.num_classes else {})}
        if set(shapes) != set(expected):
            missing, unknown = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
            raise RequestError("INVALID_ARGUMENT", f"inputs must be exactly {sorted(expected)}"
                               + (f"; missing {missing}" if missing else "") + (f"; unknown {_few(unknown)}" if unknown else ""))
        if tuple(shapes["z"])[:1] == (0,):
            raise RequestError("INVALID_ARGUMENT", "the batch is empty: send at least one row")
        for key, tail in expected.items():
            shape = tuple(shapes[key])
            if len(shape) != 1 + len(tail) or shape[1:] != tail:
                wanted = ", ".join(["batch", *(str(size) for size in tail)])
                raise RequestError("INVALID_ARGUMENT", f"input '{key}' must have shape [{wanted}], got {list(shape)}")
        rows = shapes["z"][0]
        if rows > self.max_request_batch:
            raise RequestError("INVALID_ARGUMENT", f"batch of {rows} rows is over this server's per-request limit "
                               f"of {self.max_request_batch}; split the request")
        if "label" in expected and shapes["label"][0] != rows:
            raise RequestError("INVALID_ARGUMENT", f"input 'label' must have shape [{rows}] (one per row of z), "
                               f"got {list(shapes['label'])}")
        return rows * max(info.latent_dim, 1)

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

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list[tuple[int, str, str]]:
        """(version, TF Serving state, error message) for the version asked for, or for all of them."""
        with _as_request_errors():
            if self.manager is not None:
                return [(s.version, s.state, s.error) for s in self.manager.status(name, version, label)]
            if version is None and not label:
                self.resolve(name)
                return [(v, "AVAILABLE", "") for v in sorted(self.models[name].versions)]
            return [(self.resolve(name, version, label)[0], "AVAILABLE", "")]


@contextlib.contextmanager
def _as_request_errors():
    try:
        yield
    except NotFound as err:
        raise RequestError("NOT_FOUND", str(err)) from None
    except ValueError as err:
        raise RequestError("INVALID_ARGUMENT", str(err)) from None


def _few(names: list[str], shown: int = 5) -> str:
    """A client's names in a message, bounded: 10,000 made-up names are not echoed back."""
    listed = str([name[:64] for name in names[:shown]])
    return listed if len(names) <= shown else f"{listed[:-1]}, ... ({len(names)} in all)]"


def check_signature(signature_name: str) -> None:
    if signature_name and signature_name != SIGNATURE_NAME:
        raise RequestError("INVALID_ARGUMENT", f'Serving signature name: "{signature_name[:100]}" not found in signature '
                           f'def; this model has "{SIGNATURE_NAME}"')


def _as_array(name: str, value) -> np.ndarray:
    """A JSON value or decoded tensor as an array; ragged, nested-too-deep or non-numeric input is a 400."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise RequestError("INVALID_ARGUMENT", f"input '{name}' is not a rectangular array of numbers: every row "
                           "must have the same length") from None
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise RequestError("INVALID_ARGUMENT", f"input '{name}' must be numeric, got {array.dtype}")
    return array
