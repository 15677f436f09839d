"""One client for TensorFlow Serving and for our onnxruntime server, over gRPC or REST.

    from serving.client import GeneratorClient

    client = GeneratorClient("localhost", model="generator", protocol="grpc")   # port 8500
    images = client.generate(num=16, seed=0)          # latent size read from the model's metadata

gRPC uses TF Serving's `PredictionService` / `ModelService` with messages from `serving.protos` (no
TensorFlow needed); REST uses `/v1/models/...`. `timeout` is one deadline for the whole call, retries
included: transient failures (unavailable, connection errors, 502-504) are retried with jittered
exponential backoff while time is left; an overloaded server (429 / RESOURCE_EXHAUSTED) is retried at
most `overload_retries` times, after its Retry-After when it sends one, so clients do not storm it.
Other errors raise `RemoteCallError` carrying the server's own message.

Why our own loop rather than tenacity or gRPC's retry service config: the same policy and the same
single deadline must hold over both protocols, and each attempt needs the time left as its timeout
(and REST's Retry-After); that is a dozen lines here and one more dependency there.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import numpy as np

from common.signature import random_z
from serving import protos

RETRYABLE_HTTP = {502, 503, 504}
OVERLOADED_HTTP = 429


class RemoteCallError(RuntimeError):
    """A call to the model server failed: `status` (gRPC code name or HTTP status) and the server's message."""

    def __init__(self, status, message: str):
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


class _Transient(Exception):
    """One attempt failed in a way a later attempt may not: retry if the deadline and budget allow."""

    def __init__(self, error: RemoteCallError, overloaded: bool = False, retry_after: float | None = None):
        super().__init__(str(error))
        self.error, self.overloaded, self.retry_after = error, overloaded, retry_after


@dataclass(frozen=True)
class RemoteModel:
    name: str
    version: int
    latent_dim: int
    image_shape: tuple[int, ...]
    conditional: bool


class GeneratorClient:
    def __init__(self, host: str = "localhost", port: int | None = None, model: str = "generator",
                 version: int | None = None, label: str | None = None, protocol: str = "grpc",
                 timeout: float = 30.0, retries: int = 3, backoff: float = 0.2, max_backoff: float = 5.0,
                 overload_retries: int = 1):
        if protocol not in ("grpc", "rest"):
            raise ValueError(f"protocol must be 'grpc' or 'rest', got {protocol!r}")
        if version is not None and label:
            raise ValueError("give a version or a label, not both")
        self.protocol, self.model, self.version, self.label = protocol, model, version, label
        self.timeout, self.retries, self.backoff, self.max_backoff = timeout, retries, backoff, max_backoff
        self.overload_retries = overload_retries
        self.last_attempts = 0  # attempts the latest call made (1 = no retry)
        port = port or (8500 if protocol == "grpc" else 8501)
        self.target = f"{host}:{port}"
        self._info: RemoteModel | None = None
        if protocol == "grpc":
            import grpc

            self._grpc = grpc
            self._channel = grpc.insecure_channel(self.target, options=[("grpc.max_receive_message_length", 256 << 20)])
        else:
            import httpx

            self._http = httpx.Client(base_url=f"http://{self.target}", timeout=timeout)

    # -- public API -------------------------------------------------------------------------------

    def metadata(self) -> RemoteModel:
        """Name, resolved version, latent size and image shape, from the model's signature_def."""
        if self._info is None:
            self._info = self._grpc_metadata() if self.protocol == "grpc" else self._rest_metadata()
        return self._info

    def status(self) -> list[dict]:
        """`[{"version": 1, "state": "AVAILABLE"}, ...]` for the model (or the version asked for)."""
        if self.protocol == "grpc":
            request = protos.GetModelStatusRequest()
            self._fill_spec(request.model_spec)
            response = self._call(protos.STATUS_METHOD, request, protos.GetModelStatusResponse)
            state = protos.message("tensorflow.serving.ModelVersionStatus").DESCRIPTOR.enum_types_by_name["State"]
            return [{"version": int(s.version), "state": state.values_by_number[s.state].name}
                    for s in response.model_version_status]
        body = self._rest("GET", self._path())
        return [{"version": int(s["version"]), "state": s["state"]} for s in body["model_version_status"]]

    def predict(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Raw call: float32 images in [-1, 1] for the given latent rows (and labels)."""
        inputs = {"z": np.asarray(z, dtype=np.float32)}
        if labels is not None:
            inputs["label"] = np.asarray(labels, dtype=np.int32)
        if self.protocol == "grpc":
            request = protos.PredictRequest()
            self._fill_spec(request.model_spec)
            request.model_spec.signature_name = "serving_default"
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(protos.to_tensor_proto(value))
            response = self._call(protos.PREDICT_METHOD, request, protos.PredictResponse)
            return protos.from_tensor_proto(response.outputs["images"])
        body = self._rest("POST", self._path() + ":predict", json=predict_body(inputs))
        return np.asarray(body["outputs"], dtype=np.float32)

    def generate(self, num: int = 16, seed: int | None = None, labels=None) -> np.ndarray:
        """`num` images from standard-normal noise (seeded); conditional models need `labels`."""
        info = self.metadata()
        z = random_z(num, info.latent_dim, seed)
        if info.conditional and labels is None:
            raise ValueError(f"model '{info.name}' is class-conditional: pass labels (one int or one per image)")
        if labels is not None:
            labels = np.broadcast_to(np.asarray(labels, dtype=np.int32), (num,))
        return self.predict(z, labels)

    def close(self) -> None:
        if self.protocol == "grpc":
            self._channel.close()
        else:
            self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- gRPC ---------------------------------------------------------------------------------------

    def _fill_spec(self, spec) -> None:
        spec.name = self.model
        if self.version is not None:
            spec.version.value = self.version
        if self.label:
            spec.version_label = self.label

    def _with_retries(self, attempt):
        """`attempt(seconds_left)` until it succeeds, fails for good, or the call's one deadline passes."""
        deadline, overloads = time.monotonic() + self.timeout, 0
        for n in range(self.retries + 1):
            self.last_attempts = n + 1
            try:
                return attempt(max(deadline - time.monotonic(), 0.001))
            except _Transient as failure:
                overloads += failure.overloaded
                step = min(self.max_backoff, self.backoff * 2**n)
                wait = failure.retry_after if failure.retry_after is not None else step / 2 + random.uniform(0, step / 2)
                if (n == self.retries or overloads > self.overload_retries
                        or time.monotonic() + wait >= deadline):
                    raise failure.error from None
                time.sleep(wait)

    def _call(self, method: str, request, response_class):
        grpc = self._grpc
        call = self._channel.unary_unary(method, request_serializer=lambda m: m.SerializeToString(),
                                         response_deserializer=response_class.FromString)
        transient = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}

        def attempt(seconds_left: float):
            try:
                return call(request, timeout=seconds_left)
            except grpc.RpcError as err:
                error = RemoteCallError(err.code().name, err.details() or "")
                if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise _Transient(error, overloaded=True) from None
                if err.code() in transient:
                    raise _Transient(error) from None
                raise error from None

        return self._with_retries(attempt)

    def _grpc_metadata(self) -> RemoteModel:
        request = protos.GetModelMetadataRequest()
        self._fill_spec(request.model_spec)
        request.metadata_field.append("signature_def")
        response = self._call(protos.METADATA_METHOD, request, protos.GetModelMetadataResponse)
        signatures = protos.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        sig = signatures.signature_def["serving_default"]
        shape = lambda info: [d.size for d in info.tensor_shape.dim]  # noqa: E731
        return RemoteModel(self.model, int(response.model_spec.version.value), shape(sig.inputs["z"])[1],
                           tuple(shape(sig.outputs["images"])[1:]), "label" in sig.inputs)

    # -- REST -------------------------------------------------------------------------------------

    def _path(self) -> str:
        path = f"/v1/models/{self.model}"
        if self.version is not None:
            path += f"/versions/{self.version}"
        elif self.label:
            path += f"/labels/{self.label}"
        return path

    def _rest(self, method: str, path: str, json=None) -> dict:
        import httpx

        def attempt(seconds_left: float):
            try:
                response = self._http.request(method, path, json=json, timeout=seconds_left)
            except httpx.TransportError as err:
                raise _Transient(RemoteCallError("UNAVAILABLE", f"{type(err).__name__}: {err}")) from None
            if response.status_code < 400:
                return response.json()
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            error = RemoteCallError(response.status_code, message)
            if response.status_code == OVERLOADED_HTTP:
                retry_after = response.headers.get("retry-after", "")
                raise _Transient(error, True, float(retry_after) if retry_after.isdigit() else None) from None
            if response.status_code in RETRYABLE_HTTP:
                raise _Transient(error) from None
            raise error

        return self._with_retries(attempt)

    def _rest_metadata(self) -> RemoteModel:
        body = self._rest("GET", self._path() + "/metadata")
        sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
        shape = lambda info: [int(d["size"]) for d in info["tensor_shape"]["dim"]]  # noqa: E731
        return RemoteModel(body["model_spec"]["name"], int(body["model_spec"]["version"]), shape(sig["inputs"]["z"])[1],
                           tuple(shape(sig["outputs"]["images"])[1:]), "label" in sig["inputs"])


def predict_body(inputs: dict[str, np.ndarray]) -> dict:
    """TF Serving's columnar REST request: `{"signature_name": ..., "inputs": {"z": [[...]], ...}}`."""
    return {"signature_name": "serving_default", "inputs": {k: v.tolist() for k, v in inputs.items()}}
