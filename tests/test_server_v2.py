"""The Open Inference Protocol (KServe v2) on our server, driven by the real tritonclient over HTTP
and gRPC, and the samples page's PNG endpoint."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest

from serving.engine.onnx_generator import OnnxGenerator
from tests.onnx_models import LATENT, write_version
from tests.server_harness import Server

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient is in the dev extra")
grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient is in the dev extra")
from tritonclient.utils import InferenceServerException  # noqa: E402

CLASSES = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("v2") / "g"
    for version in (1, 2):
        write_version(base, version, seed=version, num_classes=CLASSES)
    config = base.parent / "models.config"
    config.write_text('model_config_list { config { name: "g" base_path: "%s" model_platform: "onnx" '
                      'model_version_policy { all {} } version_labels { key: "stable" value: 1 } } }' % base)
    srv = Server([f"--model_config_file={config}"], tmp_path_factory.mktemp("log") / "server.log")
    srv.base = base
    yield srv
    assert srv.stop() == 0


def expected(server, version: int, z, label) -> np.ndarray:
    return OnnxGenerator(server.base / str(version) / "model.onnx", device="cpu").run({"z": z, "label": label})


def inputs_for(module, z, label, binary: bool = True):
    tensors = [module.InferInput("z", list(z.shape), "FP32"), module.InferInput("label", list(label.shape), "INT32")]
    for tensor, array in zip(tensors, (z, label)):
        if module is httpclient:
            tensor.set_data_from_numpy(array, binary_data=binary)
        else:
            tensor.set_data_from_numpy(array)
    return tensors


def test_tritonclient_http_health_metadata_and_infer(server):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.rest_port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("g") and client.is_model_ready("g", "2") and not client.is_model_ready("nope")
    metadata = client.get_model_metadata("g")
    assert metadata["versions"] == ["1", "2"] and metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "z", "datatype": "FP32", "shape": [-1, LATENT]},
                                  {"name": "label", "datatype": "INT32", "shape": [-1]}]
    z = np.random.default_rng(0).standard_normal((3, LATENT)).astype(np.float32)
    label = np.array([0, 1, 2], np.int32)
    for binary in (True, False):  # the binary tensor extension, and plain JSON
        result = client.infer("g", inputs_for(httpclient, z, label, binary),
                              outputs=[httpclient.InferRequestedOutput("images", binary_data=binary)])
        np.testing.assert_allclose(result.as_numpy("images"), expected(server, 2, z, label), rtol=1e-5, atol=1e-6)
        assert result.get_response()["model_version"] == "2"
    pinned = client.infer("g", inputs_for(httpclient, z, label), model_version="1")
    np.testing.assert_allclose(pinned.as_numpy("images"), expected(server, 1, z, label), rtol=1e-5, atol=1e-6)
    labelled = client.infer("g", inputs_for(httpclient, z, label), model_version="stable")  # a version label
    assert labelled.get_response()["model_version"] == "1"


def test_tritonclient_grpc_health_metadata_and_infer(server):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("g")
    assert client.get_server_metadata().name == "gan-serve"
    metadata = client.get_model_metadata("g", "1")
    assert list(metadata.versions) == ["1"] and [t.name for t in metadata.inputs] == ["z", "label"]
    z = np.random.default_rng(1).standard_normal((5, LATENT)).astype(np.float32)
    label = np.array([2, 1, 0, 1, 2], np.int32)
    result = client.infer("g", inputs_for(grpcclient, z, label))
    np.testing.assert_allclose(result.as_numpy("images"), expected(server, 2, z, label), rtol=1e-5, atol=1e-6)
    assert result.get_response().model_version == "2"
    assert client.infer("g", inputs_for(grpcclient, z, label), model_version="stable").get_response().model_version == "1"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_v2_errors_are_the_tf_serving_sides(server, protocol):
    """Unknown models 404 / NOT_FOUND; bad shapes, datatypes and labels 400 / INVALID_ARGUMENT, in
    the words TF Serving's API uses; the server keeps serving."""
    module = httpclient if protocol == "http" else grpcclient
    port = server.rest_port if protocol == "http" else server.grpc_port
    client = module.InferenceServerClient(f"127.0.0.1:{port}")
    z = np.zeros((2, LATENT), np.float32)
    cases = [("nope", inputs_for(module, z, np.array([0, 1], np.int32)), "Servable not found", "404", "NOT_FOUND"),
             ("g", inputs_for(module, z[:, :3].copy(), np.array([0, 1], np.int32)), "must have shape [batch, 8]",
              "400", "INVALID_ARGUMENT"),
             ("g", inputs_for(module, z, np.array([0, 7], np.int32)), "must be in [0, 2]", "400", "INVALID_ARGUMENT"),
             ("g", inputs_for(module, np.full((2, LATENT), np.nan, np.float32), np.array([0, 1], np.int32)),
              "NaN or infinity", "400", "INVALID_ARGUMENT")]
    wrong_type = module.InferInput("z", [2, LATENT], "FP64")
    wrong_type.set_data_from_numpy(z.astype(np.float64))
    cases.append(("g", [wrong_type, inputs_for(module, z, np.array([0, 1], np.int32))[1]],
                  "must have datatype FP32", "400", "INVALID_ARGUMENT"))
    for model, tensors, words, http_status, grpc_code in cases:
        with pytest.raises(InferenceServerException) as err:
            client.infer(model, tensors)
        assert words in err.value.message()
        assert err.value.status() in ((http_status,) if protocol == "http" else (f"StatusCode.{grpc_code}",))
    assert client.is_server_ready()


def test_v2_predictions_feed_the_same_metrics(server):
    before = server.metrics().get('gan_serving_requests_total{api="grpc",code="OK",method="predict"}', 0)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    client.infer("g", inputs_for(grpcclient, np.zeros((1, LATENT), np.float32), np.array([1], np.int32)))
    after = server.metrics()['gan_serving_requests_total{api="grpc",code="OK",method="predict"}']
    assert after == before + 1


def test_samples_png_changes_with_the_label_and_the_page_lists_versions(server):
    from PIL import Image

    url = f"{server.url}/v1/models/g/samples.png"
    first, second = (httpx.get(url, params={"seed": 3, "count": 4, "label": label}, timeout=30) for label in (0, 1))
    assert first.status_code == second.status_code == 200 and first.headers["content-type"] == "image/png"
    assert first.content != second.content
    image = Image.open(io.BytesIO(first.content))
    assert image.size == (4 * 2 + 2, 4 * 2 + 2)  # a 2x2 grid of 4x4 samples, 2-pixel gaps
    again = httpx.get(url, params={"seed": 3, "count": 4, "label": 0}, timeout=30)
    assert again.content == first.content  # the same seed draws the same samples
    refused = httpx.get(url, params={"label": 9}, timeout=30)
    assert refused.status_code == 400 and "label" in refused.json()["error"]
    page = httpx.get(f"{server.url}/samples", params={"model": "g", "version": "1", "label": 2}, timeout=30)
    assert page.status_code == 200 and "/v1/models/g/versions/1/samples.png?seed=0&amp;count=16&amp;label=2" in page.text


def test_the_kserve_runtime_arguments_serve_the_model_under_the_inference_service_name(tmp_path):
    """The ServingRuntime's container arguments, with KServe's {{.Name}} and /mnt/models filled in as
    KServe fills them, serve the model under the InferenceService's name and pass its probes."""
    import yaml

    from tests.conftest import REPO
    from common.ports import free_ports

    docs = list(yaml.safe_load_all((REPO / "deploy" / "kubernetes" / "serving" / "kserve-v2.yaml").read_text()))
    runtime, service = (next(d for d in docs if d["kind"] == kind) for kind in ("ServingRuntime", "InferenceService"))
    container = runtime["spec"]["containers"][0]
    assert service["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]
    assert container["command"] == ["python", "-m", "serving.server"] and container["name"] == "kserve-container"
    write_version(tmp_path / "mnt-models", 1, num_classes=CLASSES)
    rest, grpc_port = free_ports(2)
    fill = {"{{.Name}}": service["metadata"]["name"], "/mnt/models": str(tmp_path / "mnt-models"), "0.0.0.0": "127.0.0.1",
            "8080": str(rest), "8081": str(grpc_port)}
    args = [fill.get(a, a) for a in container["args"]]
    i = args.index("--rest-port")
    srv = Server(args[:i] + args[i + 4:], tmp_path / "server.log", rest_port=rest, grpc_port=grpc_port)
    try:
        for probe in (container["readinessProbe"], container["livenessProbe"]):
            assert httpx.get(srv.url + probe["httpGet"]["path"], timeout=10).status_code == 200
        assert httpclient.InferenceServerClient(f"127.0.0.1:{rest}").is_model_ready("gan-generator")
        assert grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}").is_model_ready("gan-generator")
    finally:
        assert srv.stop() == 0


def test_grpc_inputs_sent_both_raw_and_typed_are_refused(server):
    """tritonclient sends raw_input_contents; a request that also fills typed contents is ambiguous."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    request = service_pb2.ModelInferRequest(model_name="g")
    z = request.inputs.add(name="z", datatype="FP32", shape=[1, LATENT])
    z.contents.fp32_contents.extend([0.0] * LATENT)
    request.inputs.add(name="label", datatype="INT32", shape=[1])
    request.raw_input_contents.extend([np.zeros((1, LATENT), "<f4").tobytes(), np.zeros(1, "<i4").tobytes()])
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not both" in refused.value.details()
    request.inputs[0].ClearField("contents")
    assert stub.ModelInfer(request, timeout=30).outputs[0].name == "images"
