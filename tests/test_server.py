"""The onnxruntime model server, started as a subprocess on free loopback ports and called with the
real tensorflow-serving-api gRPC stubs, raw HTTP, and our client."""

from __future__ import annotations

import json
import signal
import threading
import time

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from common.ports import free_port
from serving.client import GeneratorClient, RemoteCallError, predict_body
from serving.engine.onnx_generator import OnnxGenerator
from tests.server_harness import Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exports(tiny_run, tiny_export, tmp_path_factory):
    from export.run import main

    import shutil

    out = tmp_path_factory.mktemp("served") / "exports"
    shutil.copytree(tiny_export, out)  # version 1: the session's export of tiny_run
    assert main(["--run-dir", str(tiny_run), "--output-dir", str(out)]) == 0  # version 2 of the same generator
    assert sorted(p.name for p in (out / "onnx-models" / "generator").iterdir()) == ["1", "2"]
    return out


@pytest.fixture(scope="module")
def server(exports, tmp_path_factory):
    running = Server(["--model-base-path", str(exports / "onnx-models" / "generator"), "--labels", "stable=1,canary=2",
                      "--max-request-batch", "64", "--max-body-bytes", "200000", "--max-batch-size", "16",
                      "--batch-timeout-ms", "5"], tmp_path_factory.mktemp("logs") / "server.log")
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def local(exports):
    """The same model in-process: what the server must reproduce."""
    return OnnxGenerator(exports / "onnx-models" / "generator" / "1" / "model.onnx")


def z_batch(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)


# -- gRPC through tensorflow-serving-api's own stubs --------------------------------------------------


def test_grpc_predict_metadata_and_status_with_the_real_stubs(server, local):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.version_label = "generator", "stable"
    request.inputs["z"].CopyFrom(tf.make_tensor_proto(z_batch(3)))
    response = stub.Predict(request, timeout=10)
    assert response.model_spec.version.value == 1
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["images"]), local.generate(z=z_batch(3)), atol=1e-6)

    meta_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta_request.model_spec.name = "generator"
    meta = stub.GetModelMetadata(meta_request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    meta.metadata["signature_def"].Unpack(signatures)
    sig = signatures.signature_def["serving_default"]
    assert meta.model_spec.version.value == 2  # latest by default
    assert [d.size for d in sig.inputs["z"].tensor_shape.dim] == [-1, 8] and list(sig.outputs) == ["images"]

    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "generator"}), timeout=10)
    assert [(s.version, s.state) for s in status.model_version_status] == [(1, 30), (2, 30)]  # AVAILABLE


@pytest.mark.parametrize("spec, z, code, message", [
    ({"name": "nope"}, z_batch(1), grpc.StatusCode.NOT_FOUND, "Servable not found"),
    ({"name": "generator", "version_label": "beta"}, z_batch(1), grpc.StatusCode.INVALID_ARGUMENT,
     "Unrecognized servable version label: beta"),  # TF Serving's code and words
    ({"name": "generator"}, np.zeros((2, 3), np.float32), grpc.StatusCode.INVALID_ARGUMENT, "must have shape [batch, 8]"),
    ({"name": "generator"}, z_batch(65), grpc.StatusCode.INVALID_ARGUMENT, "per-request limit of 64"),
    ({"name": "generator", "signature_name": "classify"}, z_batch(1), grpc.StatusCode.INVALID_ARGUMENT, "not found"),
])
def test_grpc_errors_carry_the_code_and_the_message(server, spec, z, code, message):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    request = predict_pb2.PredictRequest(model_spec=spec)
    request.inputs["z"].CopyFrom(tf.make_tensor_proto(z))
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(request, timeout=10)
    assert err.value.code() == code and message in err.value.details()


# -- our client, both protocols ---------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_client_generates_what_in_process_onnxruntime_generates(server, local, protocol):
    port = server.grpc_port if protocol == "grpc" else server.rest_port
    with GeneratorClient("127.0.0.1", port, model="generator", protocol=protocol, timeout=10) as client:
        info = client.metadata()
        assert (info.latent_dim, info.image_shape, info.conditional, info.version) == (8, (28, 28, 1), False, 2)
        images = client.generate(num=4, seed=0)
        np.testing.assert_allclose(images, local.generate(num=4, seed=0), atol=1e-5)
        assert [s["version"] for s in client.status()] == [1, 2]
        assert all(s["state"] == "AVAILABLE" for s in client.status())
    with GeneratorClient("127.0.0.1", port, model="generator", label="canary", protocol=protocol) as canary:
        assert canary.metadata().version == 2
    with GeneratorClient("127.0.0.1", port, model="nope", protocol=protocol, retries=0) as missing:
        with pytest.raises(RemoteCallError, match="Servable not found"):
            missing.generate(num=1)


def test_client_retries_transient_failures_then_reports_them():
    port = free_port()  # nothing listens here
    with GeneratorClient("127.0.0.1", port, protocol="rest", retries=2, backoff=0.05, timeout=5) as client:
        with pytest.raises(RemoteCallError, match="UNAVAILABLE"):
            client.status()
        assert client.last_attempts == 3  # the first try and two retries, all within the one deadline


def test_client_rest_body_is_tf_servings_columnar_format():
    body = predict_body({"z": np.zeros((2, 3), np.float32), "label": np.array([1, 2], np.int32)})
    assert body == {"signature_name": "serving_default", "inputs": {"z": [[0.0] * 3] * 2, "label": [1, 2]}}


# -- REST formats and the bad-input matrix ------------------------------------------------------------


def test_rest_row_and_columnar_formats(server, local):
    z = z_batch(2, seed=5)
    expected = local.generate(z=z)
    url = server.url + "/v1/models/generator/versions/1:predict"
    row = httpx.post(url, json={"instances": z.tolist()}).json()["predictions"]
    objects = httpx.post(url, json={"instances": [{"z": r} for r in z.tolist()]}).json()["predictions"]
    columnar = httpx.post(url, json={"inputs": {"z": z.tolist()}}).json()["outputs"]
    bare = httpx.post(url, json={"signature_name": "serving_default", "inputs": z.tolist()}).json()["outputs"]
    for result in (row, objects, columnar, bare):
        np.testing.assert_allclose(np.array(result, np.float32), expected, atol=1e-5)


Z1 = [[0.1] * 8]
BAD_REQUESTS = [
    ("generator:predict", "{not json", 400, "JSON Parse error"),
    ("generator:predict", "[1, 2]", 400, "must be a JSON object"),
    ("generator:predict", "{}", 400, "Missing 'inputs' or 'instances'"),
    ("generator:predict", json.dumps({"instances": Z1, "inputs": Z1}), 400, "not both"),
    ("generator:predict", json.dumps({"inputs": {"x": Z1}}), 400, "unknown ['x']"),
    ("generator:predict", json.dumps({"instances": [{"z": Z1[0], "label": 1}]}), 400, "unknown ['label']"),
    ("generator:predict", json.dumps({"instances": [[0.1, 0.2]]}), 400, "must have shape [batch, 8]"),
    ("generator:predict", json.dumps({"instances": [["a"] * 8]}), 400, "must be numeric"),
    ("generator:predict", '{"instances": [[NaN, 0, 0, 0, 0, 0, 0, 0]]}', 400, "NaN or infinity"),
    ("generator:predict", '{"instances": [[Infinity, 0, 0, 0, 0, 0, 0, 0]]}', 400, "NaN or infinity"),
    ("generator:predict", json.dumps({"instances": []}), 400, "the batch is empty"),
    ("generator:predict", json.dumps({"instances": [[0.0] * 8] * 65}), 400, "per-request limit of 64"),
    ("generator:predict", json.dumps({"instances": [[0.0] * 8] * 8000}), 413, "over the limit of 200000 bytes"),
    ("generator:predict", json.dumps({"signature_name": "classify", "instances": Z1}), 400, "not found in signature def"),
    ("nope:predict", json.dumps({"instances": Z1}), 404, "Servable not found"),
    ("generator/versions/9:predict", json.dumps({"instances": Z1}), 404, "Specific(generator, 9)"),
    ("generator/labels/beta:predict", json.dumps({"instances": Z1}), 400, "Unrecognized servable version label: beta"),
]


@pytest.mark.parametrize("path, body, status, message", BAD_REQUESTS, ids=[m for *_, m in BAD_REQUESTS])
def test_bad_requests_get_the_right_4xx_and_a_clear_message(server, path, body, status, message):
    response = httpx.post(f"{server.url}/v1/models/{path}", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert message in response.json()["error"]


def test_server_is_healthy_after_the_bad_inputs(server):
    for path, body, *_ in BAD_REQUESTS:
        httpx.post(f"{server.url}/v1/models/{path}", content=body)
    assert httpx.get(server.url + "/ready").status_code == 200
    ok = httpx.post(server.url + "/v1/models/generator:predict", json={"instances": Z1})
    assert ok.status_code == 200 and np.array(ok.json()["predictions"]).shape == (1, 28, 28, 1)
    assert httpx.get(server.url + "/v1/models/generator/versions/7").status_code == 404
    assert httpx.get(server.url + "/v1/models/generator/metadata").json()["model_spec"]["version"] == "2"
    unknown_route = httpx.get(server.url + "/v2/whatever")
    assert unknown_route.status_code == 404 and "error" in unknown_route.json()


def test_concurrent_clients_get_their_own_rows_and_requests_are_batched(server, local):
    errors, done, wrong = [], [], []

    def client_loop(seed):
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            deadline = time.monotonic() + 6
            for _ in range(400):  # bounded in count and in time
                if time.monotonic() > deadline:
                    break
                z = rng.standard_normal((int(rng.integers(1, 4)), 8)).astype(np.float32)
                r = http.post("/v1/models/generator:predict", json={"instances": z.tolist()})
                if r.status_code != 200:
                    errors.append(r.status_code)
                    continue
                done.append(r.status_code)
                # Each client must get the images of its own z back, not a neighbour's rows from the batch.
                if not np.allclose(np.array(r.json()["predictions"], np.float32), local.generate(z=z), atol=1e-5):
                    wrong.append(seed)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not wrong and len(done) >= 16
    values = server.metrics()
    batches, rows = values["gan_serving_batch_size_count"], values["gan_serving_batch_size_sum"]
    assert rows / batches > 1.0, "dynamic batching never merged two requests"
    assert values['gan_serving_requests_total{api="rest",code="200",method="predict"}'] >= len(done)


def test_sigterm_finishes_in_flight_work_on_both_protocols_and_stops_accepting(exports, tmp_path):
    # Requests would wait 60 s for company: SIGTERM is sent once the server counts all 32 in flight,
    # and shutdown sends the queued batch at once, well within --grace-seconds.
    slow = Server(["--model", str(exports / "onnx" / "generator.onnx"), "--batch-timeout-ms", "60000",
                   "--max-batch-size", "64", "--grace-seconds", "20"], tmp_path / "s.log")
    z = z_batch(1)
    results = []

    def rest_request():
        r = httpx.post(slow.url + "/v1/models/generator:predict", json={"instances": z.tolist()}, timeout=60)
        results.append(("rest", r.status_code == 200 and len(r.json()["predictions"]) == 1))

    channel = grpc.insecure_channel(f"127.0.0.1:{slow.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    grpc.channel_ready_future(channel).result(timeout=10)

    def grpc_request():
        request = predict_pb2.PredictRequest(model_spec={"name": "generator"})
        request.inputs["z"].CopyFrom(tf.make_tensor_proto(z))
        try:
            ok = tf.make_ndarray(stub.Predict(request, timeout=60).outputs["images"]).shape == (1, 28, 28, 1)
        except grpc.RpcError as err:
            ok = err.code()
        results.append(("grpc", ok))

    threads = [threading.Thread(target=f) for f in [rest_request] * 16 + [grpc_request] * 16]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 50
    while time.monotonic() < deadline and sum(v for k, v in slow.metrics().items() if "in_flight" in k) < 32:
        time.sleep(0.05)
    assert sum(v for k, v in slow.metrics().items() if "in_flight" in k) == 32
    slow.proc.send_signal(signal.SIGTERM)

    def refused():  # both listeners closed: no new connection on either
        try:
            httpx.get(slow.url + "/ready", timeout=2)
            return False
        except httpx.ConnectError:
            pass
        try:
            prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{slow.grpc_port}")) \
                .Predict(predict_pb2.PredictRequest(model_spec={"name": "generator"}), timeout=2)
        except grpc.RpcError as err:
            return err.code() == grpc.StatusCode.UNAVAILABLE
        return False

    deadline = time.monotonic() + 30  # waits for the state, not a fixed 0.3 s; the requests wait 60 s
    while not refused():
        assert time.monotonic() < deadline, "the server still accepts connections 30 s after SIGTERM"
        time.sleep(0.05)
    assert slow.proc.wait(timeout=30) == 0
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == [("grpc", True)] * 16 + [("rest", True)] * 16


def test_conditional_model_over_both_protocols(tiny_conditional_export, tmp_path):
    local = OnnxGenerator(tiny_conditional_export / "onnx" / "digits.onnx")
    served = Server(["--model", str(tiny_conditional_export / "onnx" / "digits.onnx"), "--no-batching"], tmp_path / "c.log")
    try:
        z, labels = z_batch(3), np.array([0, 5, 9], np.int32)
        for protocol, port in (("grpc", served.grpc_port), ("rest", served.rest_port)):
            with GeneratorClient("127.0.0.1", port, model="digits", protocol=protocol) as client:
                assert client.metadata().conditional
                np.testing.assert_allclose(client.predict(z, labels), local.generate(z=z, labels=labels), atol=1e-5)
                with pytest.raises(ValueError, match="class-conditional"):
                    client.generate(num=2)
        # Labels are checked as sent: 2**32+3 is not class 3, and true is not class 1.
        for label, message in ((11, "must be in [0, 9]"), (2**32 + 3, "must be in [0, 9]"), (-1, "must be in [0, 9]"),
                               (True, "not booleans"), (2.5, "must hold integers")):
            rows = httpx.post(served.url + "/v1/models/digits:predict",
                              json={"instances": [{"z": z[0].tolist(), "label": label}]})
            assert rows.status_code == 400 and message in rows.json()["error"], (label, rows.text)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}"))
        for labels, message in ((np.array([2**32 + 3], np.int64), "must be in [0, 9]"),
                                (np.array([True]), "not booleans")):
            request = predict_pb2.PredictRequest(model_spec={"name": "digits"})
            request.inputs["z"].CopyFrom(tf.make_tensor_proto(z[:1]))
            request.inputs["label"].CopyFrom(tf.make_tensor_proto(labels))
            with pytest.raises(grpc.RpcError) as err:
                stub.Predict(request, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.value.details()
    finally:
        assert served.stop() == 0
