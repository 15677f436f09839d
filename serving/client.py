"""One client for TensorFlow Serving and for our onnxruntime server, over gRPC or REST.

    from serving.client import GeneratorClient

    client = GeneratorClient("localhost", model="generator", protocol="grpc")   # port 8500
    images = client.generate(num=16, seed=0)          # latent size read from the model's metadata

gRPC uses TF Serving's `PredictionService` / `ModelService` with messages from `serving.protos` (no
TensorFlow needed); REST uses `/v1/models/...`. Transient failures (unavailable, timeouts, 502-504,
429) are retried with exponential backoff; other errors raise `ServingError` carrying the server's
own message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from serving import protos

RETRYABLE_HTTP = {429, 502, 503, 504}


class ServingError(RuntimeError):
    def __init__(self, status, message: str):
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


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
                 timeout: float = 30.0, retries: int = 3, backoff: float = 0.2):
        if protocol not in ("grpc", "rest"):
            raise ValueError(f"protocol must be 'grpc' or 'rest', got {protocol!r}")
        if version is not None and label:
            raise ValueError("give a version or a label, not both")
        self.protocol, self.model, self.version, self.label = protocol, model, version, label
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
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
        z = np.random.default_rng(seed).standard_normal((num, info.latent_dim)).astype(np.float32)
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

    def _call(self, method: str, request, response_class):
        grpc = self._grpc
        call = self._channel.unary_unary(method, request_serializer=lambda m: m.SerializeToString(),
                                         response_deserializer=response_class.FromString)
        retryable = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
        for attempt in range(self.retries + 1):
            try:
                return call(request, timeout=self.timeout)
            except grpc.RpcError as err:
                if err.code() not in retryable or attempt == self.retries:
                    raise ServingError(err.code().name, err.details() or "") from None
                time.sleep(self.backoff * 2**attempt)

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

        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, json=json)
            except httpx.TransportError as err:
                if attempt == self.retries:
                    raise ServingError("UNAVAILABLE", f"{type(err).__name__}: {err}") from None
            else:
                if response.status_code < 400:
                    return response.json()
                if response.status_code not in RETRYABLE_HTTP or attempt == self.retries:
                    try:
                        message = response.json().get("error", response.text)
                    except ValueError:
                        message = response.text
                    raise ServingError(response.status_code, message)
            time.sleep(self.backoff * 2**attempt)

    def _rest_metadata(self) -> RemoteModel:
        body = self._rest("GET", self._path() + "/metadata")
        sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
        shape = lambda info: [int(d["size"]) for d in info["tensor_shape"]["dim"]]  # noqa: E731
        return RemoteModel(body["model_spec"]["name"], int(body["model_spec"]["version"]), shape(sig["inputs"]["z"])[1],
                           tuple(shape(sig["outputs"]["images"])[1:]), "label" in sig["inputs"])


def predict_body(inputs: dict[str, np.ndarray]) -> dict:
    """TF Serving's columnar REST request: `{"signature_name": ..., "inputs": {"z": [[...]], ...}}`."""
    return {"signature_name": "serving_default", "inputs": {k: v.tolist() for k, v in inputs.items()}}
