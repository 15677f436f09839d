"""Docker deliverables, checked short of building (no Docker engine here): lint, structure,
compose consistency, and the onnx-serve stage's dependency set really serving in a fresh venv."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.conftest import REPO, documentation_text

TARGETS = ("train", "tfserving", "onnx-serve", "onnx-serve-gpu")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def stages() -> dict[str, list[dict]]:
    """Instructions per named stage, with ARG defaults substituted into FROM lines."""
    structure = DockerfileParser(str(REPO / "Dockerfile")).structure
    args = {}
    result, current = {}, None
    for item in structure:
        if item["instruction"] == "ARG" and current is None:
            name, _, default = item["value"].partition("=")
            args[name] = default
        if item["instruction"] == "FROM":
            value = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], item["value"])
            image, _, name = value.partition(" AS ")
            current = name.strip()
            result[current] = [{"instruction": "FROM", "value": image.strip()}]
        elif current:
            result[current].append(item)
    return result


def instructions(stage, kind):
    return [i["value"] for i in stages()[stage] if i["instruction"] == kind]


def test_hadolint_passes():
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([binary, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def dockerfile_arg(name: str) -> str:
    return re.search(rf"^ARG {name}=([\d.]+)$", (REPO / "Dockerfile").read_text(), re.M).group(1)


def test_three_targets_on_pinned_bases():
    found = stages()
    assert set(TARGETS) <= set(found)
    assert instructions("train", "FROM") == [f"tensorflow/tensorflow:{dockerfile_arg('TF_VERSION')}-gpu"]
    assert instructions("tfserving", "FROM") == [f"tensorflow/serving:{dockerfile_arg('TF_SERVING_VERSION')}"]
    for target in TARGETS:
        (image,) = instructions(target, "FROM")
        name, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{target} base {image} is not pinned"


# TF Serving releases that exist (2.21 was never released); bump with a checked tag.
RELEASED_TF_SERVING = {"2.18.0", "2.19.0", "2.20.0"}


def test_tfserving_image_is_a_released_tag_checked_against_the_export_tensorflow():
    """Training exports with TF_VERSION; the serving image runs TF_SERVING_VERSION. The two may
    differ only with tools/check_tfserving_compat.py checking that pair (its default)."""
    import tensorflow as tf

    serving = dockerfile_arg("TF_SERVING_VERSION")
    assert serving in RELEASED_TF_SERVING
    assert dockerfile_arg("TF_VERSION") == tf.__version__
    tool = (REPO / "tools" / "check_tfserving_compat.py").read_text()
    assert re.search(rf'"--tf-version", default="{re.escape(serving)}"', tool)
    readme = documentation_text()
    assert set(re.findall(r"tensorflow/serving:([\w.-]+)", readme)) == {serving, f"{serving}-gpu"}


def tfserving_start_lines() -> dict[str, str]:
    """Every place that starts TF Serving: the image's entrypoint, compose, each README command."""
    found = {"Dockerfile ENTRYPOINT": instructions("tfserving", "ENTRYPOINT")[0]}
    service = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["tfserving"]
    found["compose tfserving"] = " ".join(service.get("entrypoint") or []) or found["Dockerfile ENTRYPOINT"]
    commands = re.sub(r"\\\n\s*", " ", documentation_text())  # join continued lines
    for line in commands.splitlines():
        if re.search(r"tensorflow/serving:|tensorflow_model_server", line) and line.lstrip().startswith("docker run"):
            found[f"README: {line.strip()[:60]}"] = line
        elif "docker run" in line and "gan-tfserving" in line:
            assert "--entrypoint" not in line
            found[f"README: {line.strip()[:60]}"] = found["Dockerfile ENTRYPOINT"]
    for manifest in sorted((REPO / "deploy").rglob("*.yaml")):  # Kubernetes and the like
        for document in yaml.safe_load_all(manifest.read_text()):
            for container in _containers(document):
                if str(container.get("image", "")).startswith("tensorflow/serving"):
                    serving = dockerfile_arg("TF_SERVING_VERSION")
                    assert container["image"] in (f"tensorflow/serving:{serving}", f"tensorflow/serving:{serving}-gpu")
                    found[f"{manifest.relative_to(REPO)}"] = " ".join(container.get("command", []) + container.get("args", []))
    return found


def _containers(node):
    if isinstance(node, dict):
        if "image" in node and "name" in node:
            yield node
        for value in node.values():
            yield from _containers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _containers(value)


def test_tf_serving_is_always_started_allowing_labels_for_versions_not_yet_loaded():
    lines = tfserving_start_lines()
    assert sum(key.startswith("README") for key in lines) >= 3, lines
    for where, line in lines.items():
        assert "--allow_version_labels_for_unavailable_models=true" in line, where


def test_every_stage_runs_as_a_non_root_user():
    for target in TARGETS:
        users = instructions(target, "USER")
        assert users and users[-1].split(":")[0] not in ("0", "root"), target


def test_ports_entrypoints_volumes_and_healthcheck():
    for target in ("tfserving", "onnx-serve", "onnx-serve-gpu"):
        assert set(" ".join(instructions(target, "EXPOSE")).split()) == {"8500", "8501"}
    assert "training.run" in instructions("train", "ENTRYPOINT")[0]
    assert "/runs" in instructions("train", "VOLUME")[0]
    tfs_entry = instructions("tfserving", "ENTRYPOINT")[0]
    for flag in ("--port=8500", "--rest_api_port=8501", "--enable_batching", "--batching_parameters_file",
                 "--monitoring_config_file"):
        assert flag in tfs_entry
    assert "--model_config_file" in instructions("tfserving", "CMD")[0]
    assert "serving.server" in instructions("onnx-serve", "ENTRYPOINT")[0]
    assert "/ready" in instructions("onnx-serve", "HEALTHCHECK")[0]


def test_onnx_serve_stage_installs_no_tensorflow():
    serve = PYPROJECT["project"]["optional-dependencies"]["serve"]
    names = {re.split(r"[<>=\[ ]", d)[0].lower() for d in serve}
    assert not names & {"tensorflow", "keras", "tf2onnx", "tensorflow-serving-api", "tensorboard"}
    for target in ("onnx-serve", "onnx-serve-gpu"):
        runs = " ".join(instructions(target, "RUN"))
        assert "['optional-dependencies']['serve']" in runs and "--no-deps ." in runs
        assert "find_spec('tensorflow')" in runs  # the build itself fails if TensorFlow sneaked in
    assert "onnxruntime-gpu" in " ".join(instructions("onnx-serve-gpu", "RUN"))
    assert "--device" in instructions("onnx-serve-gpu", "ENTRYPOINT")[0]


def test_layer_order_installs_dependencies_before_copying_code():
    for target in ("train", "onnx-serve", "onnx-serve-gpu"):
        items = [(i["instruction"], i["value"]) for i in stages()[target]]
        deps = next(n for n, (k, v) in enumerate(items) if k == "RUN" and "tomllib" in v)
        first_code = next(n for n, (k, v) in enumerate(items) if k == "COPY" and v.split()[0] in ("training/", "serving/"))
        assert deps < first_code


def test_dockerignore_keeps_runs_exports_and_caches_out():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {"runs/", "exports/", ".git", "**/__pycache__"} <= ignored


def test_compose_file_refers_to_targets_paths_and_modules_that_exist(tiny_export):
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"train", "export", "tfserving", "onnx-serve"}
    for name, service in services.items():
        if "build" in service:
            assert service["build"]["target"] in stages() and service["build"]["context"] == "."
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            assert source in compose["volumes"], (name, source)
    assert services["train"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert services["export"]["image"] == services["train"]["image"]
    text = " ".join(services["export"]["command"])
    for module in re.findall(r"python -m ([\w.]+)", text):
        assert (REPO / (module.replace(".", "/") + ".py")).is_file(), module
    # The subpaths the servers mount are what export.run writes.
    for service in ("tfserving", "onnx-serve"):
        subpath = services[service]["volumes"][0]["volume"]["subpath"]
        assert (tiny_export / subpath / "generator").is_dir(), subpath
    assert services["tfserving"]["depends_on"]["export"]["condition"] == "service_completed_successfully"


@pytest.mark.tier2
@pytest.mark.slow
def test_the_onnx_serve_dependency_set_really_serves(tiny_export, tmp_path):
    venv = tmp_path / "slim"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    serve = PYPROJECT["project"]["optional-dependencies"]["serve"]
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + ["-c", str(REPO / "requirements" / "lock.txt"), *serve], check=True, timeout=600)
    subprocess.run(pip + ["--no-deps", str(REPO)], check=True, timeout=300, cwd=tmp_path)
    probe = subprocess.run([python, "-c", "import importlib.util as u; print(u.find_spec('tensorflow'), u.find_spec('keras'))"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert probe.stdout.strip() == "None None"

    from common.ports import free_port
    from tests.server_harness import wait_until_ready

    rest, grpc_port = free_port(), free_port()
    server = subprocess.Popen([python, "-m", "serving.server", "--model-base-path",
                               str(tiny_export / "onnx-models" / "generator"), "--rest-port", str(rest),
                               "--grpc-port", str(grpc_port)], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    try:
        wait_until_ready(f"http://127.0.0.1:{rest}", server, server.stdout.read)
        response = httpx.post(f"http://127.0.0.1:{rest}/v1/models/generator:predict",
                              json={"instances": np.zeros((2, 8)).tolist()}, timeout=10)
        assert response.status_code == 200
        assert np.array(response.json()["predictions"]).shape == (2, 28, 28, 1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert server.returncode == 0
