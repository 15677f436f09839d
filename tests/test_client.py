"""GeneratorClient's retry policy against the real server: one deadline for the
whole call, and no retry storm against an overloaded server."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest

from serving.client import GeneratorClient, RemoteCallError
from tests.server_harness import Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slow_server(tiny_export, tmp_path_factory):
    """Every request of fewer than 8 rows waits 6 s for company; the queue holds one batch of 8 rows."""
    running = Server(["--model", str(tiny_export / "onnx" / "generator.onnx"), "--batch-timeout-ms", "6000",
                      "--max-batch-size", "8", "--max-enqueued-batches", "1", "--num-batch-threads", "1"],
                     tmp_path_factory.mktemp("client") / "server.log")
    yield running
    assert running.stop() == 0


def port(server, protocol):
    return server.grpc_port if protocol == "grpc" else server.rest_port


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_timeout_is_one_deadline_for_the_call_not_one_per_retry(slow_server, protocol):
    with GeneratorClient("127.0.0.1", port(slow_server, protocol), protocol=protocol, timeout=0.5, retries=3) as client:
        with pytest.raises(RemoteCallError) as err:
            client.predict(np.zeros((1, 8), np.float32))  # needs 6 s; the deadline is 0.5 s (12x less)
        assert client.last_attempts == 1  # no fresh full timeout for a retry once the deadline has passed
    assert err.value.status in ("DEADLINE_EXCEEDED", "UNAVAILABLE")


def test_an_overloaded_server_gets_a_small_retry_budget_not_a_storm(slow_server):
    waiting = threading.Thread(target=lambda: httpx.post(slow_server.url + "/v1/models/generator:predict",
                                                         json={"instances": [[0.0] * 8] * 2}, timeout=30))
    waiting.start()  # 2 rows wait 6 s in the queue: 7 more do not fit
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and slow_server.metrics().get('gan_serving_requests_in_flight{api="rest"}') != 1:
        time.sleep(0.02)
    try:
        for protocol, status in (("grpc", "RESOURCE_EXHAUSTED"), ("rest", 429)):
            with GeneratorClient("127.0.0.1", port(slow_server, protocol), protocol=protocol, timeout=20,
                                 retries=5, overload_retries=1) as client:
                with pytest.raises(RemoteCallError, match="queue is full") as err:
                    client.predict(np.zeros((7, 8), np.float32))
                assert err.value.status == status and "queue is full" in err.value.message
                assert client.last_attempts == 2  # one retry (REST: after the server's Retry-After), not five
    finally:
        waiting.join(timeout=30)


def test_the_readme_example_works_against_the_single_model_server(slow_server):
    """README: `--model FILE.onnx` serves version 1 without labels; a label names the flag that sets it."""
    for protocol in ("grpc", "rest"):
        with GeneratorClient("127.0.0.1", port(slow_server, protocol), model="generator", protocol=protocol) as client:
            assert client.generate(num=16, seed=0).shape == (16, 28, 28, 1)  # 16 rows: a full batch, no wait
            assert client.metadata().version == 1 and client.status() == [{"version": 1, "state": "AVAILABLE"}]
        with GeneratorClient("127.0.0.1", port(slow_server, protocol), model="generator", label="stable",
                             protocol=protocol) as labelled:
            with pytest.raises(RemoteCallError, match="--labels NAME=VERSION"):
                labelled.metadata()
