"""Malformed input of every kind is a 4xx with a message, never a 500 and never an ERROR line per
request: v2 datatypes that are not strings, ragged data, shapes of floats, booleans, strings or
infinities, parameters that are not objects, header lengths and versions of non-ASCII digits or
thousands of them, float labels for INT32, and a samples query seed of '--1'."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.server_harness import Server

pytestmark = pytest.mark.slow
Z = [0.1] * 8


def infer(**z_overrides):
    return {"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 8], "data": Z, **z_overrides}]}


BODIES = {
    "datatype list": infer(datatype=["FP32"]),
    "datatype object": infer(datatype={"x": 1}),
    "ragged data": infer(data=[[0.1] * 8, [0.1] * 3], shape=[2, 8]),
    "shape of floats": infer(shape=[1.9, 8]),
    "shape of booleans": infer(shape=[True, 8]),
    "shape as a string": infer(shape="18"),
    "shape too large a float": infer(shape=[1e300, 8]),
    "parameters as a list": infer(parameters=[1, 2]),
    "output parameters as a list": {**infer(), "outputs": [{"name": "images", "parameters": ["binary_data"]}]},
}


@pytest.fixture(scope="module")
def server(tiny_export, tmp_path_factory):
    running = Server(["--model", str(tiny_export / "onnx" / "generator.onnx")],
                     tmp_path_factory.mktemp("malformed") / "server.log")
    yield running
    assert running.stop() == 0


@pytest.mark.parametrize("case", list(BODIES))
def test_malformed_v2_bodies_are_400_with_a_message(server, case):
    response = httpx.post(f"{server.url}/v2/models/generator/infer", json=BODIES[case], timeout=30)
    assert response.status_code == 400, (case, response.status_code, response.text[:300])
    assert response.json()["error"]


@pytest.mark.parametrize("value", ["²", "1" * 5000, "٣"])
def test_header_lengths_and_versions_of_odd_digits_are_400(server, value):
    body = httpx.post(f"{server.url}/v2/models/generator/infer", content=b'{"inputs": []}',
                      headers={"Inference-Header-Content-Length": value.encode()}, timeout=30)
    assert body.status_code == 400, body.text[:300]
    for path in (f"/v2/models/generator/versions/{value}/ready", f"/v1/models/generator/versions/{value}"):
        response = httpx.get(server.url + path, timeout=30)
        assert 400 <= response.status_code < 500, (path[:60], response.status_code, response.text[:300])


def test_an_integer_input_sent_as_floats_is_refused_as_tf_serving_does(server):
    body = {"inputs": [{"name": "z", "datatype": "INT32", "shape": [1, 8], "data": [3.0] * 8}]}
    response = httpx.post(f"{server.url}/v2/models/generator/infer", json=body, timeout=30)
    assert response.status_code == 400


def test_a_samples_seed_of_two_minus_signs_is_400(server):
    response = httpx.get(f"{server.url}/v1/models/generator/samples.png?seed=--1", timeout=30)
    assert response.status_code == 400 and "seed" in response.text


def test_none_of_them_logged_an_error_and_a_good_request_still_works(server):
    good = httpx.post(f"{server.url}/v2/models/generator/infer", json=infer(), timeout=30)
    assert good.status_code == 200
    log = open(server.log_path).read()
    assert " ERROR " not in log and "Traceback" not in log, log[-3000:]


def test_a_repeated_internal_error_is_logged_once_per_interval(caplog):
    from serving.log_throttle import ThrottledLog

    throttled = ThrottledLog(logging.getLogger("test.throttle"), interval=60)
    with caplog.at_level(logging.ERROR, logger="test.throttle"):
        logged = [throttled.error("internal error in %s", "Predict") for _ in range(2000)]
    assert logged.count(True) == 1 and len(caplog.records) == 1
    throttled._last -= 61  # the interval has passed: the next line says how many were left out
    with caplog.at_level(logging.ERROR, logger="test.throttle"):
        assert throttled.error("internal error in %s", "Predict")
    assert "and 1999 more like it" in caplog.records[-1].getMessage()


def test_the_samples_page_draws_two_grids_at_a_time_and_leaves_the_queue_to_api_clients():
    """A third concurrent grid is refused (429) while two are drawn, without touching the prediction
    queue; once they are done, grids are drawn again."""
    import asyncio
    from types import SimpleNamespace

    import numpy as np

    from serving.engine.core import RequestError
    from serving import samples_page
    from serving.protocols.open_inference.rest_api import Target

    release, predictions = asyncio.Event(), []

    class Core:
        def info(self, *args):
            return None, SimpleNamespace(latent_dim=8, num_classes=None)

        async def predict(self, name, inputs, version, label):
            predictions.append(name)
            await release.wait()
            return 1, np.zeros((len(inputs["z"]), 4, 4, 3), np.float32)

    ctx = SimpleNamespace(core=Core())
    request = SimpleNamespace(query_params={"seed": "1", "count": "4"})

    async def scenario():
        target = Target("g", None, None)
        drawing = [asyncio.create_task(samples_page.samples_png(ctx, request, target)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(RequestError) as refused:
            await samples_page.samples_png(ctx, request, target)
        assert refused.value.code == "RESOURCE_EXHAUSTED" and len(predictions) == 2
        release.set()
        done = await asyncio.gather(*drawing)
        assert all(r.media_type == "image/png" for r in done)
        assert (await samples_page.samples_png(ctx, request, target)).media_type == "image/png"
    asyncio.run(scenario())
