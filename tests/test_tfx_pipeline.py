"""The TFX pipeline (pipelines/tfx), end to end, in its own environment: the `tfx` tier.

    python -m pytest -m tfx        (.ci/run runs it; the default run deselects it)

The tier builds `.venv-tfx` with `bash pipelines/tfx/setup.sh` when it is missing or stale, so it never
skips for want of it (the first build downloads ~2 GB and takes minutes). The pipeline then runs with
LocalDagRunner on tiny settings: ExampleGen over the embedded digits, a few training steps, export,
the quality gate, the push. What it pushed is then served by our onnxruntime server (this venv, the
way users run it) and loaded as TF Serving loads a version: a SavedModel with its serving signature.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import REPO
from tests.server_harness import Server

pytestmark = [pytest.mark.tfx, pytest.mark.timeout(3600)]

VENV = Path(os.environ.get("TFX_VENV", REPO / ".venv-tfx"))
TINY_TRAIN = {"epochs": 1, "steps_per_epoch": 4, "batch_size": 16, "width": 4, "latent_dim": 8, "verbose": 0,
              "num_samples": 16, "checkpoint_every": 1000}
GATE_SAMPLES = 200  # too few for a trustworthy FID (the evaluator warns), plenty to test the gate's wiring


@pytest.fixture(scope="module")
def tfx_python() -> Path:
    """The TFX environment's interpreter, built by the one setup command when missing or stale."""
    setup = subprocess.run(["bash", str(REPO / "pipelines" / "tfx" / "setup.sh")], cwd=REPO,
                           capture_output=True, text=True, timeout=3000)
    assert setup.returncode == 0, f"pipelines/tfx/setup.sh failed:\n{setup.stdout[-3000:]}\n{setup.stderr[-3000:]}"
    return VENV / "bin" / "python"


@pytest.fixture(scope="module")
def classifier_cache(tmp_path_factory) -> Path:
    """The quality gate's domain-classifier cache, shared by this module's pipeline runs (trained once)."""
    return tmp_path_factory.mktemp("classifier-cache")


def run_pipeline(tfx_python: Path, cache: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "GAN_SERVE_CACHE": str(cache)}
    env.pop("PYTHONPATH", None)  # the TFX env has its own packages; `-m` from the repo root finds ours
    return subprocess.run([str(tfx_python), "-m", "pipelines.tfx.run", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def pushed(tfx_python, classifier_cache, tmp_path_factory) -> Path:
    """A model base directory after one tiny LocalDagRunner run of the whole pipeline."""
    root = tmp_path_factory.mktemp("tfx")
    serving = root / "models" / "generator"
    result = run_pipeline(tfx_python, classifier_cache, "--pipeline-root", str(root / "pipeline"), "--serving-model-dir",
                          str(serving), "--train-config", json.dumps(TINY_TRAIN), "--gate-samples", str(GATE_SAMPLES),
                          "--max-fid", "1e9")
    assert result.returncode == 0, f"pipeline failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    assert "pushed " in result.stdout
    return serving


def the_version(base: Path) -> Path:
    versions = [p for p in base.iterdir() if p.name.isdigit()]
    assert len(versions) == 1, versions
    return versions[0]


def test_pusher_writes_one_unix_time_version_holding_savedmodel_onnx_and_card(pushed):
    import time

    version = the_version(pushed)
    assert abs(int(version.name) - time.time()) < 3 * 3600, "Pusher names versions by Unix time"
    names = {p.name for p in version.iterdir()}
    assert {"saved_model.pb", "variables", "assets.extra", "model.onnx", "model_card.json"} <= names
    assert (version / "assets.extra" / "tf_serving_warmup_requests").is_file()
    card = json.loads((version / "model_card.json").read_text())
    assert card["parity"]["passed"] and card["training"]["config"]["dataset"] == "folder"


def test_our_server_serves_the_pushed_version(pushed, tmp_path):
    """`python -m serving.server --model-base-path <pushed dir>` in the project venv: the Unix-time
    version is AVAILABLE and answers predictions of the right shape and range."""
    version = int(the_version(pushed).name)
    server = Server(["--model-base-path", str(pushed)], tmp_path / "server.log")
    try:
        status = httpx.get(server.url + "/v1/models/generator", timeout=10).json()
        assert [(int(v["version"]), v["state"]) for v in status["model_version_status"]] == [(version, "AVAILABLE")]
        z = np.random.default_rng(0).standard_normal((3, TINY_TRAIN["latent_dim"])).astype(np.float32)
        answer = httpx.post(f"{server.url}/v1/models/generator/versions/{version}:predict",
                            json={"instances": z.tolist()}, timeout=30)
        assert answer.status_code == 200, answer.text
        images = np.array(answer.json()["predictions"], np.float32)
        assert images.shape == (3, 28, 28, 1) and np.all(np.abs(images) <= 1.0)
    finally:
        assert server.stop() == 0


def test_the_pushed_version_loads_as_tf_serving_loads_it(pushed):
    """TF Serving loads <base>/<version>/saved_model.pb and calls serving_default; the ONNX file and
    card beside it are files it does not read. Same z, same images as the ONNX model our server runs."""
    import tensorflow as tf

    from serving.engine.onnx_generator import OnnxGenerator

    version = the_version(pushed)
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    z = np.random.default_rng(1).standard_normal((2, TINY_TRAIN["latent_dim"])).astype(np.float32)
    saved = signature(z=tf.constant(z))["images"].numpy()
    onnx = OnnxGenerator(version / "model.onnx", device="cpu").run({"z": z})
    np.testing.assert_allclose(saved, onnx, atol=1e-4)


def test_a_model_the_gate_does_not_bless_is_not_pushed(tfx_python, classifier_cache, tmp_path):
    serving = tmp_path / "models" / "generator"
    result = run_pipeline(tfx_python, classifier_cache, "--pipeline-root", str(tmp_path / "pipeline"), "--serving-model-dir",
                          str(serving), "--train-config", json.dumps(TINY_TRAIN), "--gate-samples", str(GATE_SAMPLES),
                          "--max-fid", "0")
    assert result.returncode == 3, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    assert "did not bless" in result.stderr
    assert not serving.exists() or not any(p.name.isdigit() for p in serving.iterdir())


def test_image_folders_become_labelled_png_examples(tfx_python, tmp_path):
    """ExampleGen's source over a folder: class folders give labels (sorted names), a JPEG is stored
    as PNG with the same pixels, and mixing loose images with class folders is refused."""
    from PIL import Image

    for name, colour in (("cats", 40), ("dogs", 200)):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.fromarray(np.full((8, 8, 3), colour, np.uint8)).save(tmp_path / "data" / name / "a.png")
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / "data" / "dogs" / "b.jpg", quality=100)
    script = f"""
import glob, json, numpy as np
from pipelines.tfx.image_example_gen import image_records
from pipelines.tfx.image_examples import decode_png
records = image_records(sorted(glob.glob({str(tmp_path / 'data' / '*')!r})))
print(json.dumps([[r[1], r[2], int(decode_png(r[0]).mean()), r[0][:4] == b'\\x89PNG'] for r in records]))
open({str(tmp_path / 'data' / 'loose.png')!r}, 'wb').write(open({str(tmp_path / 'data' / 'cats' / 'a.png')!r}, 'rb').read())
try:
    image_records(sorted(glob.glob({str(tmp_path / 'data' / '*')!r})))
except ValueError as err:
    print("refused:", err)
"""
    result = subprocess.run([str(tfx_python), "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    records = json.loads(lines[0])
    assert [r[:2] for r in records] == [[0, "cats"], [1, "dogs"], [1, "dogs"]]
    assert all(r[3] for r in records) and abs(records[2][2] - 90) <= 2
    assert lines[1].startswith("refused: the split pattern matched both class folders and loose images")


def test_the_same_pipeline_compiles_for_kubeflow_pipelines_v2(tfx_python, tmp_path):
    """KubeflowV2DagRunner's JSON spec: the four components in order, each on our image, the Trainer's
    run_fn and custom_config (our TrainConfig keys), the gate's limit and the push destination."""
    spec_path = tmp_path / "pipeline.json"
    result = run_pipeline(tfx_python, tmp_path, "--compile-kfp", str(spec_path), "--image", "registry.example/gan-serve-tfx:1",
                          "--images", "/gcs/bucket/images",
                          "--pipeline-root", "/gcs/bucket/tfx", "--serving-model-dir", "/gcs/bucket/models/generator",
                          "--train-config", json.dumps({"epochs": 3, "loss": "rpgan"}), "--max-fid", "25",
                          timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    spec = json.loads(spec_path.read_text())
    pipeline_spec = spec.get("pipelineSpec", spec)
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"ImageExampleGen", "Trainer", "QualityGate", "Pusher"}
    assert tasks["Trainer"]["dependentTasks"] == ["ImageExampleGen"]
    assert set(tasks["Pusher"]["dependentTasks"]) == {"QualityGate", "Trainer"}
    executors = pipeline_spec["deploymentSpec"]["executors"]
    assert len(executors) == 4
    assert {e["container"]["image"] for e in executors.values()} == {"registry.example/gan-serve-tfx:1"}
    params = {name: task["inputs"]["parameters"] for name, task in tasks.items()}
    custom = json.loads(constant(params["Trainer"]["custom_config"]))
    assert custom == {"train_config": {"epochs": 3, "loss": "rpgan"}, "model_name": "generator"}
    assert constant(params["Trainer"]["run_fn"]) == "pipelines.tfx.trainer_module.run_fn"
    assert float(constant(params["QualityGate"]["max_fid"])) == 25.0
    assert "/gcs/bucket/models/generator" in constant(params["Pusher"]["push_destination"])
    assert pipeline_spec["pipelineInfo"]["name"] == "gan-serve"
    assert constant(params["ImageExampleGen"]["input_base"]) == "/gcs/bucket/images"
    splits = json.loads(constant(params["ImageExampleGen"]["output_config"]))["split_config"]["splits"]
    assert {s["name"]: s["hash_buckets"] for s in splits} == {"train": 9, "eval": 1}


def constant(parameter: dict):
    """A task parameter's value, in either of the spec's spellings (runtimeValue.constant[Value])."""
    value = parameter["runtimeValue"]
    value = value.get("constant", value.get("constantValue"))
    return value.get("stringValue", value.get("intValue", value.get("doubleValue"))) if isinstance(value, dict) else value
