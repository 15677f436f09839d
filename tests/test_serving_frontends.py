"""The serving front ends' handlers, one by one, without a server: each is a module-level function
of (context, request) over a request core whose model manager is a stub holding one tiny model."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json

import numpy as np
import pytest

from common.grid import encode_png
from serving import protos, samples_page
from serving.engine import validation
from serving.engine.core import RequestCore, RequestError
from serving.protocols.open_inference import grpc_api as v2_grpc
from serving.protocols.open_inference import rest_api as v2_rest
from serving.protocols.tfserving import grpc_api as tfserving_grpc
from serving.transports.rest_common import RestContext
from serving.engine.onnx_generator import OnnxGenerator
from serving.protos import open_inference as oip
from tests.onnx_models import LATENT, write_version


class Batcher:
    """The batcher's interface, running each request alone."""

    def __init__(self, generator):
        self.generator = generator

    async def predict(self, checked):
        return self.generator.run_checked(checked)


class Servable:
    def __init__(self, version, generator):
        self.version, self.generator, self.batcher = version, generator, Batcher(generator)
        self.state, self.error = "AVAILABLE", ""


class Model:
    def __init__(self, servable):
        self.versions = {servable.version: servable.generator}


class Manager:
    """ModelManager's request-side interface (pick, lease, status, readiness) over one version."""

    def __init__(self, generator):
        self.servable = Servable(1, generator)
        self.models = {"g": Model(self.servable)}

    def pick(self, name, version=None, label=None):
        from serving.engine.model_manager import NotFound

        if name != "g" or version not in (None, 1):
            raise NotFound(f"Servable not found for request: Specific({name}, {version})")
        return self.servable

    def lease(self, name, version=None, label=None):
        return contextlib.nullcontext(self.pick(name, version, label))

    def status(self, name, version=None, label=None):
        return [self.pick(name, version, label)]

    def readiness(self):
        return True, ""


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    path = write_version(tmp_path_factory.mktemp("m"), 1, num_classes=3)
    return OnnxGenerator(path, device="cpu")


@pytest.fixture
def core(generator):
    return RequestCore(Manager(generator), max_request_batch=16)


def run(coroutine):
    return asyncio.run(coroutine)


Z = np.random.default_rng(0).standard_normal((3, LATENT)).astype(np.float32)
LABEL = np.array([0, 2, 1], np.int32)


def test_a_prediction_is_validated_once(core, generator, monkeypatch):
    calls = []
    original = validation.check_inputs
    monkeypatch.setattr("serving.engine.core.check_inputs", lambda *a, **k: calls.append(1) or original(*a, **k))
    version, images = run(core.predict("g", {"z": Z.tolist(), "label": LABEL.tolist()}))
    assert (version, len(calls)) == (1, 1)
    np.testing.assert_allclose(images, generator.run({"z": Z, "label": LABEL}), rtol=1e-6)


def test_core_errors_carry_canonical_codes(core):
    with pytest.raises(RequestError) as err:
        run(core.predict("nope", {"z": Z}))
    assert err.value.code == "NOT_FOUND" and err.value.http_status == 404
    with pytest.raises(RequestError, match="over this server's per-request limit of 16"):
        run(core.predict("g", {"z": np.zeros((17, LATENT), np.float32), "label": np.zeros(17, np.int32)}))


def binary_body(tensors: list[tuple[str, np.ndarray, str]], outputs=None) -> tuple[bytes, str]:
    head = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": d, "parameters": {"binary_data_size": a.nbytes}}
                       for n, a, d in tensors]}
    if outputs is not None:
        head["outputs"] = outputs
    header = json.dumps(head).encode()
    return header + b"".join(a.tobytes() for _, a, _ in tensors), str(len(header))


def test_v2_rest_decodes_binary_and_json_tensors(core, generator):
    ctx = RestContext(core, None, lambda: 1 << 20)
    body, length = binary_body([("z", Z, "FP32"), ("label", LABEL, "INT32")],
                               outputs=[{"name": "images", "parameters": {"binary_data": True}}])
    _, inputs, binary = v2_rest.decode_infer(ctx, generator.info, body, length)
    assert binary and not inputs["z"].flags.owndata  # read in place from the body
    np.testing.assert_array_equal(inputs["z"], Z)
    as_json = json.dumps({"inputs": [{"name": "z", "shape": [3, LATENT], "datatype": "FP32", "data": Z.ravel().tolist()},
                                     {"name": "label", "shape": [3], "datatype": "INT32", "data": LABEL.tolist()}]})
    _, inputs, binary = v2_rest.decode_infer(ctx, generator.info, as_json.encode(), None)
    assert not binary and inputs["label"].tolist() == LABEL.tolist()


@pytest.mark.parametrize("tensors, length_delta, words", [
    ([("z", Z, "FP64"), ("label", LABEL, "INT32")], 0, "must have datatype FP32"),
    ([("z", Z, "FP32")], 0, "missing ['label']"),
    ([("z", Z, "FP32"), ("label", LABEL, "INT32"), ("extra", LABEL, "INT32")], 0, "unknown ['extra']"),
    ([("z", Z, "FP32"), ("label", LABEL, "INT32")], 10**6, "Inference-Header-Content-Length"),
])
def test_v2_rest_refusals_are_clear(core, generator, tensors, length_delta, words):
    ctx = RestContext(core, None, lambda: 1 << 20)
    body, length = binary_body(tensors)
    with pytest.raises(RequestError) as err:
        v2_rest.decode_infer(ctx, generator.info, body, str(int(length) + length_delta))
    assert words in err.value.message and err.value.http_status == 400


def test_v2_rest_binary_response_is_header_then_raw_floats():
    images = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1)
    response = v2_rest.infer_response("g", 1, "req-7", images, binary=True)
    size = int(response.headers["inference-header-content-length"])
    head = json.loads(response.body[:size])
    assert head["id"] == "req-7" and head["outputs"][0]["parameters"]["binary_data_size"] == images.nbytes
    np.testing.assert_array_equal(np.frombuffer(response.body[size:], np.float32).reshape(images.shape), images)


def test_v2_grpc_infer_reads_raw_and_typed_contents(core, generator):
    request = oip.ModelInferRequest(model_name="g", id="x")
    request.inputs.add(name="z", datatype="FP32", shape=Z.shape)
    request.inputs.add(name="label", datatype="INT32", shape=LABEL.shape)
    request.raw_input_contents.extend([Z.tobytes(), LABEL.tobytes()])
    response = run(v2_grpc.model_infer(core, request))
    expected = generator.run({"z": Z, "label": LABEL})
    assert response.id == "x" and response.model_version == "1" and list(response.outputs[0].shape) == list(expected.shape)
    np.testing.assert_allclose(np.frombuffer(response.raw_output_contents[0], np.float32).reshape(expected.shape),
                               expected, rtol=1e-6)
    typed = oip.ModelInferRequest(model_name="g")
    typed.inputs.add(name="z", datatype="FP32", shape=Z.shape).contents.fp32_contents.extend(Z.ravel().tolist())
    typed.inputs.add(name="label", datatype="INT32", shape=LABEL.shape).contents.int_contents.extend(LABEL.tolist())
    again = run(v2_grpc.model_infer(core, typed))
    assert again.raw_output_contents[0] == response.raw_output_contents[0]


def test_v2_grpc_metadata_and_version_labels(core):
    metadata = run(v2_grpc.model_metadata(core, oip.ModelMetadataRequest(name="g")))
    assert list(metadata.versions) == ["1"] and [i.datatype for i in metadata.inputs] == ["FP32", "INT32"]
    assert v2_grpc.target("g", "stable") == ("g", None, "stable") and v2_grpc.target("g", "3") == ("g", 3, None)
    with pytest.raises(RequestError, match="over 2\\*\\*63-1"):
        v2_grpc.target("g", "9" * 30)


def test_tfserving_grpc_status_and_metadata_handlers(core):
    request = protos.GetModelStatusRequest()
    request.model_spec.name = "g"
    status = run(tfserving_grpc.status(core, request))
    assert [(s.version, s.state) for s in status.model_version_status] == [(1, 30)]
    metadata = protos.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.name = "g"
    answer = run(tfserving_grpc.metadata(core, metadata))
    assert answer.model_spec.version.value == 1
    with pytest.raises(RequestError, match="Missing ModelSpec"):
        run(tfserving_grpc.status(core, protos.GetModelStatusRequest()))


def test_png_encoding_round_trips_through_pillow():
    from PIL import Image

    rng = np.random.default_rng(1)
    for shape in ((5, 7, 3), (6, 3, 1)):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        decoded = np.asarray(Image.open(io.BytesIO(encode_png(pixels))))
        np.testing.assert_array_equal(decoded.reshape(shape), pixels)
    grid = samples_page.page_grid(np.ones((5, 4, 4, 1), np.uint8))
    assert grid.shape == (2 * 4 + 2, 3 * 4 + 2 * 2, 1)  # 3 columns, 2 rows, 2-pixel gaps


def test_the_samples_page_escapes_what_it_shows(generator):
    html = samples_page.render({"<g>": [1, 2]}, "<g>", "2", generator.info, (5, 4, 1))
    assert "<g>" not in html and "&lt;g&gt;" in html
    assert 'src="/v1/models/%3Cg%3E/versions/2/samples.png?seed=5&amp;count=4&amp;label=1"' in html
    inputs = samples_page.sample_inputs(generator.info, 5, 4, None)
    assert inputs["label"].tolist() == [0, 1, 2, 0] and inputs["z"].dtype == np.float32
