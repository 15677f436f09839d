"""The request core every protocol front end stands on: resolve a model version, check the inputs
once, predict through the version's batcher, report status and readiness.

Why a core: TF Serving's REST and gRPC APIs and the Open Inference Protocol's REST and gRPC APIs
differ only in how a request is spelled and how an error is reported. Each front end
(`serving.protocols.*`) decodes its wire format into {name: array or nested list}, calls
`RequestCore.predict`, and maps a `RequestError`'s canonical code (TF Serving's, also gRPC's) to
its own status: `INVALID_ARGUMENT` -> 400, `NOT_FOUND` -> 404, `RESOURCE_EXHAUSTED` -> 429, ...
"""

from __future__ import annotations

import contextlib

import numpy as np

from serving.engine.batching import QueueFull
from serving.engine.model_manager import ModelManager, NotFound
from serving.engine.validation import InputError, ModelInfo, check_inputs, check_shapes

HTTP_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429,
               "UNAVAILABLE": 503, "INTERNAL": 500, "UNIMPLEMENTED": 501, "DEADLINE_EXCEEDED": 408,
               "CANCELLED": 499}


class RequestError(Exception):
    """This request cannot be served: a canonical status code (TF Serving's) and a message for the client."""

    def __init__(self, code: str, message: str, http_status: int | None = None):
        super().__init__(message)
        self.code, self.message = code, message
        self.http_status = http_status or HTTP_STATUS.get(code, 500)


@contextlib.contextmanager
def as_request_errors():
    """The model manager's and the validation's exceptions as the client's errors."""
    try:
        yield
    except NotFound as err:
        raise RequestError("NOT_FOUND", str(err)) from None
    except ValueError as err:  # InputError, a bad label, both version and label given
        raise RequestError("INVALID_ARGUMENT", str(err)) from None
    except QueueFull as err:
        raise RequestError("RESOURCE_EXHAUSTED", str(err)) from None


class RequestCore:
    """What a request may ask of the served models, whatever its protocol.

    `manager` makes versions come and go while serving: each prediction holds (leases) its version
    until it is answered. `readiness` says whether the server as a whole takes requests (false while
    starting or shutting down)."""

    def __init__(self, manager: ModelManager, max_request_batch: int = 256, readiness=None):
        self.manager, self.max_request_batch = manager, max_request_batch
        self._serving = readiness or (lambda: True)

    def resolve(self, name: str, version: int | None = None, label: str | None = None):
        """(version, generator) of the AVAILABLE version a request names."""
        with as_request_errors():
            servable = self.manager.pick(name, version, label)
            return servable.version, servable.generator

    def info(self, name: str, version: int | None = None, label: str | None = None) -> tuple[int, ModelInfo]:
        version, generator = self.resolve(name, version, label)
        return version, generator.info

    def check_shapes(self, info: ModelInfo, shapes: dict[str, tuple[int, ...]]) -> int:
        """Shapes alone against the signature and --max-request-batch (before building arrays);
        returns the most values one input may hold."""
        with as_request_errors():
            return check_shapes(info, shapes, self.max_request_batch)

    async def predict(self, name: str, inputs: dict, version: int | None = None,
                      label: str | None = None) -> tuple[int, np.ndarray]:
        """Inputs (arrays or nested lists) -> (resolved version, float32 images), checked once."""
        with as_request_errors(), self.manager.lease(name, version, label) as servable:
            checked = check_inputs(servable.generator.info, inputs, self.max_request_batch)
            return servable.version, await servable.batcher.predict(checked)

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list[tuple[int, str, str]]:
        """(version, TF Serving state, error message) for the version asked for, or for all of them."""
        with as_request_errors():
            return [(s.version, s.state, s.error) for s in self.manager.status(name, version, label)]

    def versions(self) -> dict[str, list[int]]:
        """The AVAILABLE versions of every served model, for listings (the samples page)."""
        return {name: sorted(model.versions) for name, model in self.manager.models.items()}

    def labels(self) -> dict[str, dict[str, int]]:
        """Every served model's version labels (label -> version), for listings (the samples page)."""
        return {name: dict(model.labels) for name, model in self.manager.models.items()}

    def readiness(self) -> tuple[bool, str]:
        """(ready, why not): serving, and every configured model has a version AVAILABLE."""
        if not self._serving():
            return False, "starting or shutting down"
        return self.manager.readiness()

    def model_ready(self, name: str, version: int | None = None, label: str | None = None) -> bool:
        """Whether the named version (or any version) of a model can be predicted with now."""
        if not self._serving():
            return False
        with contextlib.suppress(NotFound, ValueError):
            return self.manager.pick(name, version, label) is not None
        return False


__all__ = ["HTTP_STATUS", "InputError", "RequestCore", "RequestError", "as_request_errors"]
