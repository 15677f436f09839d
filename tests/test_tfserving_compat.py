"""Our onnxruntime server as a drop-in for tensorflow_model_server: its command line, its config
files, its answers (every case of TF Serving's http_rest_api_handler_test.cc and the gRPC
counterparts), its Prometheus series, and new versions without a restart."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import yaml

from common.ports import free_port
from serving import protos
from serving.config import ServerConfig
from serving.engine.model_config import ModelConfig
from serving.protocols.tfserving import config_files as server_config
from serving.engine.onnx_generator import OnnxGenerator
from deploy.tfserving import config as tfs_config
from tests.conftest import REPO, documentation_text
from tests.server_harness import wait_until_ready

from tests.tfserving_cases import (G, GRPC_CASES, RELOAD_CONFIG_METHOD, REST_CASES, Z, ReloadConfigRequest,
                                   ReloadConfigResponse, _predict, _spec)


# -- the command line and the config files (no server needed) ---------------------------------------


def parse(argv):
    return ServerConfig.from_argv(argv)


def test_tf_serving_flags_have_tf_servings_defaults(tmp_path):
    args = parse([f"--model_base_path={tmp_path}"])
    assert list(args.models) == [ModelConfig("default", str(tmp_path), "latest", 1, (), {})]
    assert (args.grpc_port, args.file_system_poll_wait_seconds, args.model_config_file_poll_wait_seconds,
            args.rest_api_timeout_in_ms, args.allow_version_labels_for_unavailable_models) == (8500, 1, 0, 30000, False)
    args = parse(["--port=9000", "--rest_api_port=9001", f"--model_base_path={tmp_path}", "--model_name=g",
                  "--enable_batching=false", "--allow_version_labels_for_unavailable_models"])
    assert (args.grpc_port, args.rest_port, args.models[0].name, args.batching) == (9000, 9001, "g", False)
    assert args.allow_version_labels_for_unavailable_models is True
    ours = parse(["--model-base-path", str(tmp_path), "--grpc-port", "7000", "--labels", "stable=1"])
    assert (ours.grpc_port, ours.models[0].name, ours.models[0].policy, ours.models[0].labels) == \
        (7000, tmp_path.name, "all", {"stable": 1})


@pytest.mark.parametrize("flag", ["--ssl_config_file=/x", "--use_alts_credentials", "--grpc_socket_path=/tmp/s",
                                  "--rest_api_enable_cors_support=true", "--enable_grpc_healthcheck_service"])
def test_tf_serving_flags_a_client_would_miss_are_refused_by_name(flag, tmp_path, capsys):
    from serving.server import main

    assert main([f"--model_base_path={tmp_path}", flag]) == 2
    name = flag[2:].split("=")[0]
    assert f"--{name} is a TensorFlow Serving flag that the onnxruntime server cannot honour" in capsys.readouterr().err


def test_tf_serving_tuning_flags_are_accepted_with_one_warning_and_honoured_where_they_can_be():
    """A tensorflow_model_server manifest's tuning flags, in absl's spellings: they parse, say what
    they did in one line, and the thread count becomes --intra-op-threads."""
    from serving.config import build_parser
    from serving.protocols.tfserving.flags import apply_tuning, split_tuning

    argv = ["--port=8500", "--enable_model_warmup=true", "--rest_api_num_threads", "8", "--enable_model_warmup",
            "--tensorflow_intra_op_parallelism=4", "--tensorflow_inter_op_parallelism=2", "--model_name=g"]
    rest, tuning = split_tuning(argv)
    assert rest == ["--port=8500", "--model_name=g"]
    assert [name for name, _ in tuning] == ["enable_model_warmup", "rest_api_num_threads", "enable_model_warmup",
                                            "tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism"]
    args = build_parser().parse_args(["--model-base-path", "/models/g", *rest])
    assert args.intra_op_threads == 0  # the parser alone does not apply them: ServerConfig.from_argv does
    said = apply_tuning(args, tuning)
    assert args.intra_op_threads == 4 and said.count("\n") == 0
    assert "--rest_api_num_threads=8 (no effect: REST runs on one asyncio event loop)" in said
    assert "--tensorflow_intra_op_parallelism=4 (as --intra-op-threads 4)" in said
    ours = build_parser().parse_args(["--model-base-path", "/models/g", "--intra-op-threads", "2"])
    apply_tuning(ours, [("tensorflow_intra_op_parallelism", "4")])
    assert ours.intra_op_threads == 2  # our own flag wins
    config = parse(["--model-base-path", "/models/g", *argv])  # all of it, as the server takes it
    assert config.intra_op_threads == 4 and config.notices == (said,)


def test_tf_serving_version_flag_prints_a_version_and_exits_0(capsys):
    from serving.server import main

    assert main(["--version"]) == 0
    assert "gan-serve" in capsys.readouterr().out


def test_batching_and_monitoring_files_are_read_with_their_messages(tmp_path):
    settings = server_config.read_batching_parameters(tfs_config.HERE / "batching_parameters_cpu.txt")
    assert (settings.max_batch_size, settings.batch_timeout_micros, settings.num_batch_threads,
            settings.max_enqueued_batches, settings.allowed_batch_sizes) == (32, 2000, 4, 100, (8, 16, 32))
    assert server_config.read_monitoring_config(tfs_config.HERE / "monitoring.config") == "/monitoring/prometheus/metrics"
    args = parse(["--model-base-path", str(tmp_path), "--enable_batching",
                  f"--batching_parameters_file={tfs_config.HERE / 'batching_parameters_cpu.txt'}"])
    assert (args.max_batch_size, args.batch_timeout_ms, args.num_batch_threads, args.max_enqueued_batches) == \
        (32, 2.0, 4, 100)
    off = tmp_path / "monitoring.config"
    off.write_text("prometheus_config { enable: false }\n")
    assert server_config.read_monitoring_config(off) is None


@pytest.mark.parametrize("text, where, message", [
    ('model_config_list {\n  config {\n    name: "g"\n    bas_path: "/m"\n  }\n}\n', ":4:", 'no field named "bas_path"'),
    ('model_config_list {\n  config { name: "g" base_path: "/m" }\n  config { name: "g" base_path: "/n" }\n}\n',
     ":2", "configured twice"),
    ('model_config_list {\n  config {\n    name: "g"\n  }\n}\n', ":3", "has no base_path"),
    ('model_config_list { config { name: "g" base_path: "/m" model_platform: "tflite" } }\n', ":1", "tflite"),
])
def test_models_config_errors_name_the_file_and_line(tmp_path, text, where, message):
    path = tmp_path / "models.config"
    path.write_text(text)
    with pytest.raises(server_config.ConfigError) as err:
        server_config.read_models_config(path)
    assert f"{path}{where}" in str(err.value) and message in str(err.value)


def test_models_config_policies_and_labels():
    text = tfs_config.models_config("generator", "/models/generator", {"stable": 1, "canary": 2})
    config = __import__("google.protobuf.text_format", fromlist=["x"]).Parse(text, protos.ModelServerConfig())
    (model,) = server_config.models_from_proto(config)
    assert (model.policy, model.versions, model.labels) == ("specific", (1, 2), {"stable": 1, "canary": 2})
    assert model.aspired([1, 2, 3]) == {1, 2}
    latest = ModelConfig("g", "/m", "latest", 2)
    assert latest.aspired([1, 5, 3]) == {3, 5}
    assert ModelConfig("g", "/m", "all").aspired([1, 2]) == {1, 2}


# -- a real server started with TF Serving's command line ------------------------------------------


class Served:
    """`python -m serving.server ARGS` on free loopback ports (TF Serving's --port/--rest_api_port)."""

    def __init__(self, args: list[str], log_path: Path):
        self.grpc_port, self.rest_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.rest_port}"
        self.log_path, self.log = log_path, open(log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "serving.server", *args, f"--port={self.grpc_port}",
                                      f"--rest_api_port={self.rest_port}", "--log-level", "info"],
                                     cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until_ready(self.url, self.proc, log_path.read_text)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")

    def call(self, method: str, request, response_class, timeout: float = 10):
        rpc = self.channel.unary_unary(method, request_serializer=lambda m: m.SerializeToString(),
                                       response_deserializer=response_class.FromString)
        return rpc(request, timeout=timeout)

    def stop(self) -> int:
        self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.log.close()
        return code


def export(run_dir: Path, out: Path) -> None:
    from export.run import main

    assert main(["--run-dir", str(run_dir), "--output-dir", str(out)]) == 0


@pytest.fixture(scope="module")
def mounts(tiny_run, tmp_path_factory):
    """What the containers see: /models (the model repository) and /config (the TF Serving files),
    here as two local folders; models.config names the local base path."""
    root = tmp_path_factory.mktemp("mounts")
    exports = root / "exports"
    export(tiny_run, exports)
    export(tiny_run, exports)  # versions 1 and 2
    models, config = root / "models", root / "config"
    shutil.copytree(exports / "onnx-models", models)
    config.mkdir()
    for folder in (models, config):  # the images read them from either place
        (folder / "models.config").write_text(tfs_config.models_config("generator", str(models / "generator"),
                                                                       {"stable": 1, "canary": 2}))
        (folder / "batching_parameters.txt").write_text(tfs_config.batching_parameters("cpu"))
        (folder / "monitoring.config").write_text(tfs_config.monitoring_config())
    return {"/models": models, "/config": config}


def remap(args: list[str], mounts: dict[str, Path]) -> list[str]:
    out = []
    for arg in args:
        for inside, outside in mounts.items():
            arg = re.sub(rf"(?<=[=\s]){re.escape(inside)}(?=/)|^{re.escape(inside)}(?=/)", str(outside), arg)
        out.append(arg)
    return out


def tfserving_command_lines() -> dict[str, list[str]]:
    """TF Serving's argument lists as the repository ships them: the compose service (image
    ENTRYPOINT flags + compose command) and every README `docker run ... tensorflow/serving` line."""
    lines = {}
    dockerfile = (REPO / "Dockerfile").read_text()
    stage = dockerfile[dockerfile.index(" AS tfserving"):]
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*?\])", stage.replace("\\\n", ""), re.M | re.S).group(1))
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    entrypoint = services["tfserving"].get("entrypoint", entrypoint)  # compose may replace the image's
    assert entrypoint[0] == "tensorflow_model_server"
    command = list(services["tfserving"].get("command", []))
    assert services["onnx-serve"].get("command") == command, "one argument list for both servers"
    lines["docker-compose tfserving"] = entrypoint[1:] + command
    lines["docker-compose onnx-serve"] = command
    readme = documentation_text().replace("\\\n", " ")
    for number, line in enumerate(readme.splitlines()):
        if line.lstrip().startswith("docker run") and "tensorflow/serving" in line:
            tokens = shlex.split(line.split("#")[0])
            image = next(i for i, t in enumerate(tokens) if t.startswith("tensorflow/serving"))
            lines[f"README line {number + 1}"] = tokens[image + 1:]
    assert len(lines) >= 2, lines
    return lines


@pytest.mark.slow
def test_starts_with_tf_servings_exact_command_lines(mounts, tmp_path):
    for where, args in tfserving_command_lines().items():
        if not any(a.startswith("--model_config_file=") or a.startswith("--model_base_path=") for a in args):
            continue
        served = Served(remap(args, mounts), tmp_path / "server.log")
        try:
            # A models.config line serves both versions, labelled; a --model_base_path line (docs/tfx.md) the latest.
            single = not any(a.startswith("--model_config_file=") for a in args)
            status = httpx.get(served.url + "/v1/models/generator").json()
            assert [s["state"] for s in status["model_version_status"]] == ["AVAILABLE"] * (1 if single else 2), where
            path = ":predict" if single else "/labels/stable:predict"
            ok = httpx.post(served.url + "/v1/models/generator" + path, json={"instances": [[0.0] * 8]})
            assert ok.status_code == 200, (where, ok.text)
            if any(a.startswith("--monitoring_config_file") for a in args):
                text = httpx.get(served.url + "/monitoring/prometheus/metrics").text
                assert ':tensorflow:serving:request_count{model_name="generator",status="OK"} 1.0' in text, where
        finally:
            assert served.stop() == 0, where


@pytest.fixture(scope="module")
def server(mounts, tmp_path_factory):
    config = mounts["/config"]
    served = Served([f"--model_config_file={config / 'models.config'}", "--enable_batching",
                     f"--batching_parameters_file={config / 'batching_parameters.txt'}",
                     f"--monitoring_config_file={config / 'monitoring.config'}"],
                    tmp_path_factory.mktemp("logs") / "server.log")
    yield served
    assert served.stop() == 0




@pytest.mark.slow
@pytest.mark.parametrize("method, path, body, status, expected", REST_CASES,
                         ids=[f"{m} {p[:48]} {str(e)[:30]}" for m, p, _, _, e in REST_CASES])
def test_rest_answers_as_tf_serving(server, method, path, body, status, expected):
    response = httpx.request(method, server.url + path, content=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    if isinstance(expected, str):
        assert list(answer) == ["error"] and expected in answer["error"]
    elif isinstance(expected, list):
        assert sorted(answer) == expected
    else:
        assert answer == expected


@pytest.mark.slow
def test_rest_predict_and_metadata_shapes(server, mounts):
    local = OnnxGenerator(mounts["/models"] / "generator" / "1" / "model.onnx")
    answer = httpx.post(f"{server.url}{G}/versions/1:predict", json={"instances": Z}).json()
    np.testing.assert_allclose(np.array(answer["predictions"], np.float32), local.generate(z=np.array(Z, np.float32)),
                               atol=1e-5)
    meta = httpx.get(f"{server.url}{G}/metadata").json()
    assert meta["model_spec"] == {"name": "generator", "signature_name": "", "version": "2"}
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict" and list(signature["outputs"]) == ["images"]




@pytest.mark.slow
@pytest.mark.parametrize("method, request_message, response_class, code, message", GRPC_CASES,
                         ids=[f"{m.rsplit('/', 1)[1]} {c} {t[:30]}" for m, _, _, c, t in GRPC_CASES])
def test_grpc_answers_as_tf_serving(server, method, request_message, response_class, code, message):
    with pytest.raises(grpc.RpcError) as err:
        server.call(method, request_message, response_class)
    assert err.value.code().name == code and message in err.value.details()


@pytest.mark.slow
def test_grpc_status_and_metrics_use_tf_servings_names(server):
    status = server.call(protos.STATUS_METHOD, _spec(protos.GetModelStatusRequest(), name="generator"),
                         protos.GetModelStatusResponse)
    assert [(s.version, s.state, s.status.error_code) for s in status.model_version_status] == [(1, 30, 0), (2, 30, 0)]
    response = server.call(protos.PREDICT_METHOD, _predict(name="generator", version_label="canary"),
                           protos.PredictResponse)
    assert response.model_spec.version.value == 2
    text = httpx.get(server.url + "/monitoring/prometheus/metrics").text
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert re.search(r':tensorflow:serving:request_count\{model_name="generator",status="OK"\} [1-9]', text)
    # a model the server does not serve is counted under one label, whatever name the client sent
    assert re.search(r":tensorflow:serving:request_count\{model_name=\"\(not served\)\",status=\"NOT_FOUND\"\} [1-9]", text)
    assert re.search(r':tensorflow:serving:request_latency_bucket\{API="Predict",entrypoint="GRPC",'
                     r'le="10\.0",model_name="generator"\}', text)
    assert "gan_serving_requests_total" in text  # ours stay beside TF Serving's


# -- versions without a restart --------------------------------------------------------------------


@pytest.fixture(scope="module")
def second_run(tiny_run, tmp_path_factory):
    """A run directory whose generator has other weights (as after more training), so version 2
    answers with other images; cheaper than training a second model."""
    from export.exporter import load_generator

    run = tmp_path_factory.mktemp("retrained") / "run"
    shutil.copytree(tiny_run, run)
    generator = load_generator(run)
    rng = np.random.default_rng(1)
    for weight in generator.trainable_weights:
        weight.assign(weight.numpy() + 0.1 * rng.standard_normal(weight.shape).astype(weight.dtype))
    generator.save(run / "generator.keras")
    return run


@pytest.mark.tier2
@pytest.mark.slow
def test_rollout_under_load_has_no_failed_request(tiny_run, second_run, tmp_path):
    exports, config = tmp_path / "exports", tmp_path / "models.config"
    export(tiny_run, exports)
    base = exports / "onnx-models" / "generator"

    def write_config(versions, stable):
        specific = " ".join(f"versions: {v}" for v in versions)
        text = (f'model_config_list {{ config {{ name: "generator" base_path: "{base}" model_platform: "tensorflow"\n'
                f'  model_version_policy {{ specific {{ {specific} }} }}\n'
                f'  version_labels {{ key: "stable" value: {stable} }} }} }}\n')
        tmp = config.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(config)

    write_config([1], 1)
    served = Served([f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1",
                     "--file_system_poll_wait_seconds=1"], tmp_path / "server.log")
    z = np.random.default_rng(0).standard_normal((1, 8)).astype(np.float32)
    seen, failures, stop = {i: [] for i in range(3)}, [], threading.Event()  # per client, in order

    def client(seed):
        with httpx.Client(base_url=served.url, timeout=20) as http:
            for _ in range(5000):  # bounded in count; the test stops it once v2 is served
                if stop.is_set():
                    return
                r = http.post("/v1/models/generator/labels/stable:predict", json={"instances": z.tolist()})
                if r.status_code == 200:
                    seen[seed].append(np.array(r.json()["predictions"], np.float32))
                else:
                    failures.append((r.status_code, r.text))
                time.sleep(0.01)  # steady load that leaves the export some CPU on a 2-core machine

    threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        export(second_run, exports)  # export.run's CLI entry point, publishing version 2 atomically
        v1 = OnnxGenerator(base / "1" / "model.onnx").generate(z=z)
        v2 = OnnxGenerator(base / "2" / "model.onnx").generate(z=z)
        assert not np.allclose(v1, v2, atol=1e-3), "the second run must give other images"
        write_config([1, 2], 2)  # load v2 beside v1, move stable
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(s and np.allclose(s[-1], v2, atol=1e-5) for s in seen.values()):
            time.sleep(0.1)
        write_config([2], 2)  # then retire v1: unloaded once its in-flight requests finish
        while time.monotonic() < deadline:
            states = httpx.get(served.url + "/v1/models/generator").json()["model_version_status"]
            if [s["state"] for s in states] == ["END", "AVAILABLE"]:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # requests keep flowing after the unload
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        code = served.stop()
    assert not failures, failures[:3]
    assert [s["state"] for s in states] == ["END", "AVAILABLE"]
    for answers in seen.values():  # each client: v1's images, then v2's from some point on, never back
        is_v2 = [bool(np.allclose(images, v2, atol=1e-5)) for images in answers]
        assert all(is_v2 or np.allclose(images, v1, atol=1e-5) for is_v2, images in zip(is_v2, answers))
        assert not is_v2[0] and is_v2[-1] and is_v2 == sorted(is_v2)
    assert code == 0


@pytest.mark.slow
def test_handle_reload_config_request_applies_at_once(mounts, tmp_path):
    config = mounts["/config"]
    served = Served([f"--model_config_file={config / 'models.config'}"], tmp_path / "server.log")
    try:
        request = ReloadConfigRequest()
        entry = request.config.model_config_list.config.add(name="generator", base_path=str(mounts["/models"] /
                                                                                          "generator"))
        entry.model_version_policy.specific.versions.extend([1, 2])
        entry.version_labels["stable"] = 2
        answer = server_call = served.call(RELOAD_CONFIG_METHOD, request, ReloadConfigResponse)
        assert answer.status.error_code == 0
        response = served.call(protos.PREDICT_METHOD, _predict(name="generator", version_label="stable"),
                               protos.PredictResponse)
        assert response.model_spec.version.value == 2, server_call
        entry.version_labels["stable"] = 7  # not loaded: refused, the old config stays
        with pytest.raises(grpc.RpcError) as err:
            served.call(RELOAD_CONFIG_METHOD, request, ReloadConfigResponse)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "not currently available for inference" in err.value.details()
        response = served.call(protos.PREDICT_METHOD, _predict(name="generator", version_label="stable"),
                               protos.PredictResponse)
        assert response.model_spec.version.value == 2
    finally:
        assert served.stop() == 0
