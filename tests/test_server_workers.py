"""`--workers N` (serving/transports/workers.py): worker processes sharing both ports under one supervisor.
The real server in a subprocess: both workers take connections, metrics are the sum over them, a
worker killed with -9 is replaced, SIGTERM stops them all, a supervisor killed with -9 takes its
workers with it, and a taken port or a model that does not load is one line and exit 2."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from common.ports import free_port
from serving.metrics import ServerMetrics, tf_serving_names
from serving.protos import open_inference as oip
from tests.conftest import REPO
from tests.onnx_models import LATENT, write_version
from tests.server_harness import Server, wait_for
from tests.tfserving_cases import RELOAD_CONFIG_METHOD, ReloadConfigRequest, ReloadConfigResponse

pytestmark = pytest.mark.slow
PREDICT = {"instances": [[0.0] * LATENT]}


def children(pid: int) -> list[int]:
    """The live worker processes of a supervisor (its children, less multiprocessing's helpers)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"resource_tracker" not in cmdline and _state(int(child)) not in ("Z", "X"):
                found.append(int(child))
    return sorted(found)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def alive(pid: int) -> bool:
    return _state(pid) not in ("Z", "X")


def grpc_infer(port: int) -> np.ndarray:
    """One ModelInfer on a channel of its own (a new connection: the kernel picks its worker)."""
    request = oip.ModelInferRequest(model_name="g")
    request.inputs.add(name="z", datatype="FP32", shape=[1, LATENT])
    request.raw_input_contents.append(np.zeros((1, LATENT), np.float32).tobytes())
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                   request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=oip.ModelInferResponse.FromString)
        response = call(request, timeout=30)
    return np.frombuffer(response.raw_output_contents[0], np.float32)


def rest_predict(url: str) -> int:
    with httpx.Client(timeout=30) as client:  # a new connection per call
        return client.post(f"{url}/v1/models/g:predict", json=PREDICT).status_code


@pytest.fixture
def model(tmp_path):
    base = tmp_path / "g"
    write_version(base, 1)
    return base


def start(model, tmp_path, workers: int = 2) -> Server:
    server = Server(["--model-base-path", str(model), "--workers", str(workers), "--grace-seconds", "5"],
                    tmp_path / "server.log")
    wait_for(lambda: len(children(server.proc.pid)) == workers and "workers serving" in Path(server.log_path)
             .read_text(), what=f"{workers} workers serving")
    return server


def test_two_workers_share_both_ports_and_one_scrape_sums_them(model, tmp_path):
    server = start(model, tmp_path)
    try:
        workers = children(server.proc.pid)
        before = {pid: cpu_ticks(pid) for pid in workers}
        codes = [rest_predict(server.url) for _ in range(150)]
        images = [grpc_infer(server.grpc_port) for _ in range(150)]
        assert codes == [200] * 150 and all(image.shape == (16,) for image in images)
        used = {pid: cpu_ticks(pid) - before[pid] for pid in workers}
        assert all(ticks >= 5 for ticks in used.values()), f"a worker took no connections: CPU ticks {used}"
        for _ in range(4):  # whichever worker answers the scrape, it shows the whole server
            samples = server.metrics()
            assert samples['gan_serving_requests_total{api="rest",code="200",method="predict"}'] == 150
            assert samples['gan_serving_requests_total{api="grpc",code="OK",method="predict"}'] == 150
        text = httpx.get(server.url + "/monitoring/prometheus/metrics", timeout=10).text
        assert ':tensorflow:serving:request_count{model_name="g",status="OK"} 300.0' in text
        assert "request_count_total" not in text and "request_count_created" not in text
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:  # it would reach one worker only
            reload = channel.unary_unary(RELOAD_CONFIG_METHOD, request_serializer=lambda m: m.SerializeToString(),
                                         response_deserializer=ReloadConfigResponse.FromString)
            request = ReloadConfigRequest()
            request.config.model_config_list.config.add(name="g", base_path=str(model))
            with pytest.raises(grpc.RpcError) as refused:
                reload(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "runs 2 worker processes" in refused.value.details()
    finally:
        assert server.stop() == 0


def test_a_worker_killed_with_sigkill_is_replaced_and_serving_goes_on(model, tmp_path):
    server = start(model, tmp_path)
    try:
        for _ in range(20):
            assert rest_predict(server.url) == 200
        victim, survivor = children(server.proc.pid)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(children(server.proc.pid)) == 2 and victim not in children(server.proc.pid),
                 what="a new worker")
        assert survivor in children(server.proc.pid)
        wait_for(lambda: Path(server.log_path).read_text().count("Successfully loaded servable") >= 3,
                 what="the new worker's model load")
        time.sleep(0.5)
        assert [rest_predict(server.url) for _ in range(40)] == [200] * 40
        assert all(image.shape == (16,) for image in (grpc_infer(server.grpc_port) for _ in range(40)))
        log = Path(server.log_path).read_text()
        assert f"(pid {victim}) exited with code -9: starting another" in log
        ok = server.metrics()['gan_serving_requests_total{api="rest",code="200",method="predict"}']
        assert ok == 60, "the killed worker's counts are kept"
    finally:
        assert server.stop() == 0


def test_a_worker_that_cannot_come_back_leaves_the_healthy_one_serving(tmp_path):
    """The --model file truncated in place, then one worker killed: its replacements fail and are tried
    again with backoff while the survivor, which loaded the file before, answers every request; the
    supervisor gives up (exit 1) only when no worker is left."""
    base = tmp_path / "g"
    write_version(base, 1)
    model_file = base / "1" / "model.onnx"
    server = Server(["--model", str(model_file), "--model-name", "g", "--workers", "2", "--grace-seconds", "5"],
                    tmp_path / "server.log")
    try:
        wait_for(lambda: len(children(server.proc.pid)) == 2 and "workers serving" in Path(server.log_path)
                 .read_text(), what="2 workers serving")
        victim, survivor = children(server.proc.pid)
        model_file.write_bytes(model_file.read_bytes()[:100])  # truncated in place
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: "still serving: trying worker" in Path(server.log_path).read_text(), what="the backoff")
        assert server.proc.poll() is None and alive(survivor)
        assert [rest_predict(server.url) for _ in range(30)] == [200] * 30
        os.kill(survivor, signal.SIGKILL)
        assert server.proc.wait(timeout=120) == 1
        assert "none is left serving: stopping" in Path(server.log_path).read_text()
    finally:
        if server.proc.poll() is None:
            server.stop()


def test_a_replacement_serves_the_newest_version_that_loads_when_a_bad_one_was_published(tmp_path):
    """Under TF Serving's "latest" policy: a bad version 2 appears; the survivor keeps version 1, and
    the replacement of a killed worker starts on version 1 too instead of dying."""
    base = tmp_path / "g"
    write_version(base, 1)
    server = Server([f"--model_base_path={base}", "--model_name=g", "--workers", "2", "--grace-seconds", "5",
                     "--file_system_poll_wait_seconds=1"], tmp_path / "server.log")
    try:
        wait_for(lambda: len(children(server.proc.pid)) == 2 and "workers serving" in Path(server.log_path)
                 .read_text(), what="2 workers serving")
        (base / ".staging").mkdir()
        (base / ".staging" / "model.onnx").write_bytes(b"not an onnx model")
        (base / ".staging").rename(base / "2")
        victim = children(server.proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: "serving version 1, the newest that loads" in Path(server.log_path).read_text(),
                 what="the replacement on version 1")
        wait_for(lambda: len(children(server.proc.pid)) == 2, what="two workers again")
        assert [rest_predict(server.url) for _ in range(30)] == [200] * 30
        assert "trying worker" not in Path(server.log_path).read_text()
    finally:
        assert server.stop() == 0


def test_sigterm_stops_every_worker_and_removes_the_metrics_files(model, tmp_path):
    server = start(model, tmp_path)
    workers = children(server.proc.pid)
    metrics_dir = metrics_dir_of(workers[0])
    assert Path(metrics_dir).is_dir()
    assert server.stop() == 0
    assert not any(alive(pid) for pid in workers)
    assert not Path(metrics_dir).exists()
    with socket.socket() as probe:  # both ports are free again
        probe.bind(("127.0.0.1", server.rest_port))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", server.grpc_port))


def test_a_supervisor_killed_with_sigkill_takes_its_workers_with_it(model, tmp_path):
    server = start(model, tmp_path)
    workers = children(server.proc.pid)
    server.proc.kill()
    server.proc.wait(timeout=30)
    wait_for(lambda: not any(alive(pid) for pid in workers), timeout=30, what="the orphaned workers' exit")
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url + "/ready", timeout=2)
    stale = list(Path(tempfile.gettempdir()).glob(f"gan-serve-metrics-{server.proc.pid}-*"))
    assert stale, "the killed supervisor's metrics directory should be there to clean up"
    again = start(model, tmp_path)  # the next supervisor removes what a dead one left
    try:
        assert not any(path.exists() for path in stale)
    finally:
        assert again.stop() == 0


def metrics_dir_of(pid: int) -> str:
    return next(entry.split("=", 1)[1] for entry in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
                if entry.startswith("PROMETHEUS_MULTIPROC_DIR="))


def test_a_deleted_metrics_directory_is_made_again_and_serving_goes_on(model, tmp_path):
    server = start(model, tmp_path)
    try:
        shutil.rmtree(metrics_dir_of(children(server.proc.pid)[0]))
        assert [rest_predict(server.url) for _ in range(10)] == [200] * 10
        assert grpc_infer(server.grpc_port).shape == (16,)
        for _ in range(4):
            assert httpx.get(server.url + "/metrics", timeout=10).status_code == 200
        assert "was deleted while serving: made again" in Path(server.log_path).read_text()
    finally:
        assert server.stop() == 0


def test_an_inherited_multiprocess_directory_is_ignored_by_one_process(model, tmp_path):
    """A PROMETHEUS_MULTIPROC_DIR from the environment (not our supervisor's) would sum in the counts
    of processes long dead: one process keeps its own metrics, and says so."""
    inherited = tmp_path / "inherited"
    inherited.mkdir()
    server = Server(["--model-base-path", str(model)], tmp_path / "one.log",
                    env={"PROMETHEUS_MULTIPROC_DIR": str(inherited)})
    try:
        assert [rest_predict(server.url) for _ in range(3)] == [200] * 3
        assert server.metrics()['gan_serving_requests_total{api="rest",code="200",method="predict"}'] == 3
        assert "ignoring PROMETHEUS_MULTIPROC_DIR" in Path(server.log_path).read_text()
        assert list(inherited.iterdir()) == []
    finally:
        assert server.stop() == 0


def run_server(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serving.server", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_a_taken_port_is_one_line_and_exit_2(model):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_server("--model-base-path", str(model), "--workers", "2", "--rest-port", str(port),
                          "--grpc-port", str(free_port()))
    assert done.returncode == 2
    assert f"error: cannot listen on 127.0.0.1:{port} (--rest-port)" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_a_model_that_does_not_load_stops_the_workers_with_its_message(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    done = run_server("--model", str(broken), "--workers", "2", "--rest-port", str(free_port()),
                      "--grpc-port", str(free_port()))
    assert done.returncode == 2, done.stderr
    assert "error:" in done.stderr and "broken.onnx" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_workers_below_one_are_refused():
    done = run_server("--model", "x.onnx", "--workers", "0")
    assert done.returncode == 2 and "--workers must be at least 1, got 0" in done.stderr


def test_the_tf_serving_counter_keeps_its_name_whatever_a_client_calls_its_model():
    metrics = ServerMetrics()
    hostile = ':tensorflow:serving:request_count_created{x="1"} 5\n'
    metrics.observe("rest", "predict", "OK", 0.01, model="g")
    metrics.observe("rest", "predict", "NOT_FOUND", 0.01, model=hostile)
    text = metrics.exposition().decode()
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert ':tensorflow:serving:request_count{model_name="g",status="OK"} 1.0' in text
    assert re.search(r'^:tensorflow:serving:request_count\{model_name=":tensorflow:serving:request_count_created'
                     r'.*status="NOT_FOUND"\} 1\.0$', text, re.MULTILINE), "the hostile name's series is kept"
    assert tf_serving_names(b"a_total 1\n") == b"a_total 1\n"


def test_metrics_stay_small_whatever_model_names_clients_send():
    """1,500 made-up 200-character names: one '(not served)' series set, not 1,500."""
    from serving.metrics import NOT_SERVED

    metrics = ServerMetrics()
    metrics.is_served = {"g"}.__contains__
    metrics.observe("rest", "predict", "OK", 0.01, model="g")
    before = len(metrics.exposition())
    for i in range(1500):
        metrics.observe("grpc", "predict", "NOT_FOUND", 0.01, model=f"{i:04d}" + "x" * 196)
    text = metrics.exposition().decode()
    assert len(text) < before + 10_000, len(text)
    assert f':tensorflow:serving:request_count{{model_name="{NOT_SERVED}",status="NOT_FOUND"}} 1500.0' in text
