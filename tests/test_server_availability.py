"""The real server under a bad roll-out: a garbage version 2 and a version 3
copied slowly with a plain, non-atomic write under TF Serving's "latest" policy, while clients
predict and a probe polls /ready. No request may get a 404, the failed load is logged once (not
once per poll), and /ready turns 503 with its reason when no version is AVAILABLE."""

from __future__ import annotations

import threading
import time
from collections import Counter

import grpc
import httpx
import pytest

from tests.onnx_models import LATENT, model_bytes, write_version
from tests.server_harness import Server, wait_for
from tests.tfserving_cases import RELOAD_CONFIG_METHOD, ReloadConfigRequest, ReloadConfigResponse

pytestmark = pytest.mark.slow
PREDICT = {"instances": [[0.0] * LATENT]}


def states(url: str, name: str = "g") -> dict[int, str]:
    answer = httpx.get(f"{url}/v1/models/{name}", timeout=10).json()
    return {int(s["version"]): s["state"] for s in answer.get("model_version_status", [])}


class Load:
    """Clients predicting and a probe reading /ready, tallied by status code, until stopped."""

    def __init__(self, url: str, clients: int = 2):
        self.url, self.predictions, self.ready = url, Counter(), Counter()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._predict) for _ in range(clients)]
        self.threads.append(threading.Thread(target=self._probe))
        for thread in self.threads:
            thread.start()

    def _predict(self):
        with httpx.Client(base_url=self.url, timeout=30) as http:
            for _ in range(100_000):  # bounded; stopped by the test
                if self.stop_event.is_set():
                    return
                self.predictions[http.post("/v1/models/g:predict", json=PREDICT).status_code] += 1
                time.sleep(0.01)  # steady load that leaves the server CPU on a 2-core machine

    def _probe(self):
        with httpx.Client(base_url=self.url, timeout=30) as http:
            for _ in range(100_000):
                if self.stop_event.is_set():
                    return
                self.ready[http.get("/ready").status_code] += 1
                time.sleep(0.05)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=60)


def bad_rollout(server: Server, base, observe_seconds: float = 5.0) -> dict:
    """The issue's attack; returns its numbers: predictions by status, /ready by status, error lines."""
    load = Load(server.url)
    try:
        wait_for(lambda: load.predictions[200] >= 20, what="the first answers")
        (base / ".garbage").mkdir()
        (base / ".garbage" / "model.onnx").write_bytes(b"this is not an onnx model " * 40)
        (base / ".garbage").rename(base / "2")  # a bad version 2, published atomically
        wait_for(lambda: states(server.url).get(2) == "END", what="the failed load of version 2")
        deadline = time.monotonic() + observe_seconds  # an observation window: several 1 s polls
        while time.monotonic() < deadline:
            time.sleep(0.1)
        data = model_bytes(seed=3)
        (base / "3").mkdir()
        with open(base / "3" / "model.onnx", "wb") as copy:  # a plain cp of a good version: 3 s of writes
            for start in range(0, len(data), len(data) // 6 + 1):
                copy.write(data[start:start + len(data) // 6 + 1])
                copy.flush()
                time.sleep(0.5)
        wait_for(lambda: states(server.url).get(3) == "AVAILABLE", what="version 3 to load")
    finally:
        load.stop()
    log = server.log_path.read_text()
    return {"predictions": dict(load.predictions), "ready": dict(load.ready),
            "load_errors": sum("Loading servable" in line and "failed" in line for line in log.splitlines()),
            "states": states(server.url)}


@pytest.fixture
def base(tmp_path):
    base = tmp_path / "g"
    write_version(base, 1)
    return base


def test_a_bad_or_half_copied_version_never_causes_a_404(base, tmp_path):
    # A settle time of 5 s (default 2) keeps a copy that a loaded machine pauses for 2 s from being
    # half-loaded; the behaviour is the same.
    server = Server([f"--model_base_path={base}", "--model_name=g", "--file_system_poll_wait_seconds=1",
                     "--version-settle-seconds=5"], tmp_path / "server.log")
    try:
        numbers = bad_rollout(server, base)
    finally:
        assert server.stop() == 0
    print("bad roll-out:", numbers)
    assert numbers["predictions"].get(200, 0) > 0 and set(numbers["predictions"]) == {200}, numbers
    assert set(numbers["ready"]) == {200}, numbers  # a version was AVAILABLE all along
    assert numbers["load_errors"] == 1, numbers  # version 2 once (retry in 60 s); version 3 not half-loaded
    assert numbers["states"] == {1: "END", 2: "END", 3: "AVAILABLE"}, numbers
    assert "Traceback" not in server.log_path.read_text()


def test_ready_is_503_with_the_reason_while_no_version_is_available(base, tmp_path):
    server = Server([f"--model_base_path={base}", "--model_name=g"], tmp_path / "server.log")
    try:
        assert httpx.get(server.url + "/ready").json() == {"status": "ready"}
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            reload = channel.unary_unary(RELOAD_CONFIG_METHOD, request_serializer=lambda m: m.SerializeToString(),
                                         response_deserializer=ReloadConfigResponse.FromString)
            request = ReloadConfigRequest()
            request.config.model_config_list.SetInParent()  # an empty ModelConfigList: serve nothing
            reload(request, timeout=30)
            wait_for(lambda: httpx.get(server.url + "/ready").status_code == 503, what="/ready to turn 503")
            answer = httpx.get(server.url + "/ready")
            assert answer.json() == {"status": "not ready", "reason": "no models are configured"}
            assert httpx.get(server.url + "/healthz").status_code == 200  # liveness does not depend on models
            assert httpx.post(server.url + "/v1/models/g:predict", json=PREDICT).status_code == 404
            entry = request.config.model_config_list.config.add(name="g", base_path=str(base))
            entry.model_version_policy.latest.num_versions = 1
            reload(request, timeout=30)
            assert httpx.get(server.url + "/ready").status_code == 200
    finally:
        assert server.stop() == 0
