"""Export: layout, signature, warmup, parity gate, atomic publish, versions, model card, generate."""

import json
import os
import re

import numpy as np
import onnx
import pytest
import tensorflow as tf

from common.atomic import sha256_of as sha256
from export.parity import TFServingSession
from export.run import main
from export.savedmodel import read_warmup_requests


def signature_def(version_dir):
    from tensorflow.python.tools import saved_model_utils

    return saved_model_utils.get_meta_graph_def(str(version_dir), "serve").signature_def


def test_layout_is_what_tf_serving_and_onnxruntime_expect(tiny_export):
    version = tiny_export / "tfserving" / "generator" / "1"
    for name in ("saved_model.pb", "variables/variables.index", "assets.extra/tf_serving_warmup_requests",
                 "assets.extra/model_card.json"):
        assert (version / name).is_file(), name
    for name in ("onnx/generator.onnx", "export_report.json", "model_card.json"):
        assert (tiny_export / name).is_file(), name
    assert [p.name for p in (tiny_export / "tfserving").iterdir()] == ["generator"], "staging left behind"


def test_signature_has_clean_names_dtypes_and_shapes(tiny_export):
    signatures = signature_def(tiny_export / "tfserving" / "generator" / "1")
    sig = signatures["serving_default"]
    assert list(sig.inputs) == ["z"] and list(sig.outputs) == ["images"]
    assert sig.inputs["z"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in sig.inputs["z"].tensor_shape.dim] == [-1, 8]
    assert sig.outputs["images"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in sig.outputs["images"].tensor_shape.dim] == [-1, 28, 28, 1]
    assert sig.method_name == "tensorflow/serving/predict"


def test_warmup_records_are_prediction_logs_that_run_against_the_signature(tiny_export):
    version = tiny_export / "tfserving" / "generator" / "1"
    requests = read_warmup_requests(version)
    assert [r.model_spec.name for r in requests] == ["generator", "generator"]
    session = TFServingSession(version)
    try:
        for request in requests:
            assert request.model_spec.signature_name == "serving_default"
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            images = session(inputs)
            assert images.shape == (len(inputs["z"]), 28, 28, 1) and np.all(np.abs(images) <= 1)
    finally:
        session.close()


def test_parity_report_numbers(tiny_export):
    report = json.loads((tiny_export / "export_report.json").read_text())
    assert report["passed"] and report["failures"] == []
    assert set(report["max_abs_diff"]) == {"tfserving_session", "saved_model_load", "onnxruntime"}
    for diffs in report["max_abs_diff"].values():
        assert set(diffs) == {"1", "7", "64"} and max(diffs.values()) <= 1e-4
    assert max(report["batch_consistency"].values()) <= 1e-4


def test_onnx_model_is_valid_with_a_dynamic_batch_and_metadata(tiny_export):
    model = onnx.load(str(tiny_export / "onnx" / "generator.onnx"))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 17
    assert [i.name for i in model.graph.input] == ["z"] and [o.name for o in model.graph.output] == ["images"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["latent_dim"] == "8" and meta["num_classes"] == "0"


def test_model_card_describes_the_model_and_hashes_the_published_files(tiny_export):
    card = json.loads((tiny_export / "model_card.json").read_text())
    assert (card["latent_dim"], card["image_shape"], card["value_range"]) == (8, [28, 28, 1], [-1.0, 1.0])
    assert card["conditional"] is False and card["training"]["config"]["width"] == 4
    assert card["training"]["final_metrics"]["global_step"] == 3
    assert {"tensorflow", "keras", "tf2onnx", "onnxruntime"} <= set(card["package_versions"])
    assert {"Conv2D", "Conv2DBackpropInput", "Conv2DBackpropInputV2"} & set(card["savedmodel_op_set"])
    assert "onnx/generator.onnx" in card["sha256"] and "tfserving/generator/1/saved_model.pb" in card["sha256"]
    for relative, digest in card["sha256"].items():
        assert sha256(tiny_export / relative) == digest, relative


def test_a_failure_mid_export_publishes_nothing(tiny_run, tmp_path, monkeypatch):
    import export.exporter

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export.exporter, "write_onnx", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        main(["--run-dir", str(tiny_run), "--output-dir", str(tmp_path)])
    assert list((tmp_path / "tfserving").iterdir()) == []  # no version, no staging directory
    assert list((tmp_path / "onnx").iterdir()) == []


def test_a_parity_failure_exits_1_and_publishes_nothing(tiny_run, tmp_path, monkeypatch, capsys):
    from export.parity import OnnxRuntime

    original = OnnxRuntime.__call__
    monkeypatch.setattr(OnnxRuntime, "__call__", lambda self, inputs: original(self, inputs) + 1e-3)
    assert main(["--run-dir", str(tiny_run), "--output-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "onnxruntime differs from Keras by 0.001" in err and "nothing was published" in err
    assert list((tmp_path / "tfserving").iterdir()) == [] and list((tmp_path / "onnx").iterdir()) == []
    # export_report.json holds the newest published version's numbers: a failure never writes it.
    assert not (tmp_path / "export_report.json").exists()
    assert json.loads((tmp_path / "last_failed_export.json").read_text())["passed"] is False


def test_bad_input_exits_2_with_a_message(tiny_run, tmp_path, capsys):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    assert main(["--run-dir", str(empty), "--output-dir", str(tmp_path / "out")]) == 2
    assert "has no generator.keras" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt_run"
    corrupt.mkdir()
    (corrupt / "generator.keras").write_bytes(b"PK\x03\x04 this is not a keras archive")
    assert main(["--run-dir", str(corrupt), "--output-dir", str(tmp_path / "out")]) == 2
    assert "cannot be loaded" in capsys.readouterr().err
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main(["--run-dir", str(tiny_run), "--output-dir", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_conditional_export_takes_labels_and_passes_parity(tiny_conditional_export):
    sig = signature_def(tiny_conditional_export / "tfserving" / "digits" / "1")["serving_default"]
    assert sorted(sig.inputs) == ["label", "z"] and sig.inputs["label"].dtype == tf.int32.as_datatype_enum
    card = json.loads((tiny_conditional_export / "model_card.json").read_text())
    assert card["num_classes"] == 10 and card["class_names"] == [str(i) for i in range(10)]
    assert json.loads((tiny_conditional_export / "export_report.json").read_text())["passed"]


def test_generate_from_both_artifacts_gives_the_same_grid(tiny_export, tiny_conditional_export, tmp_path):
    from export.generate import main as generate

    onnx_png, sm_png = tmp_path / "onnx.png", tmp_path / "sm.png"
    assert generate(["--model", str(tiny_export / "onnx" / "generator.onnx"), "--num", "9", "--out", str(onnx_png)]) == 0
    assert generate(["--model", str(tiny_export / "tfserving" / "generator"), "--num", "9", "--out", str(sm_png)]) == 0
    assert onnx_png.read_bytes() == sm_png.read_bytes()
    from PIL import Image

    assert Image.open(onnx_png).size == (3 * 29 + 1, 3 * 29 + 1)
    assert generate(["--model", str(tiny_conditional_export / "onnx" / "digits.onnx"), "--num", "20",
                     "--out", str(tmp_path / "c.png")]) == 0
    assert Image.open(tmp_path / "c.png").size == (2 * 29 + 1, 10 * 29 + 1)
    assert generate(["--model", str(tmp_path / "missing.onnx")]) == 2


def test_generator_keras_loads_with_keras_alone_and_exports_depth_to_space(tiny_run, tiny_export):
    """The default (pixel-shuffle) generator.keras needs no import of ours; its ONNX keeps one
    DepthToSpace per block (the form onnxruntime's int8 and NCHWc paths take)."""
    import subprocess
    import sys

    code = ("import sys, keras, numpy as np\n"
            "g = keras.models.load_model(sys.argv[1], compile=False)\n"
            "images = np.asarray(g(np.zeros((2, 8), 'float32'), training=False))\n"
            "ours = sorted(m for m in sys.modules if m.split('.')[0] in ('training', 'export', 'serving', 'common'))\n"
            "print(images.shape, ours)")
    result = subprocess.run([sys.executable, "-c", code, str(tiny_run / "generator.keras")], cwd="/",
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("(2, 28, 28, 1) []"), result.stdout
    op_types = [node.op_type for node in onnx.load(str(tiny_export / "onnx" / "generator.onnx")).graph.node]
    assert op_types.count("DepthToSpace") == 2, op_types


# -- concurrency, crashes, file modes, full disks ----------------------------------------------------

def _run_with_weights(tiny_run, root, scale):
    """A copy of `tiny_run` whose generator's weights are scaled: a different model, same shapes."""
    import shutil

    import keras

    import training.models  # noqa: F401  (registers the custom layers load_model needs)

    run = root / f"run_x{scale}"
    shutil.copytree(tiny_run, run)
    generator = keras.models.load_model(run / "generator.keras", compile=False)
    generator.set_weights([w * scale for w in generator.get_weights()])
    generator.save(run / "generator.keras")
    return run, generator


def _published(out):
    return sorted(int(p.name) for p in (out / "tfserving" / "generator").iterdir() if p.name.isdigit())


@pytest.mark.tier2
@pytest.mark.slow
def test_concurrent_exports_into_one_dir_publish_whole_distinct_versions(tiny_run, tmp_path):
    import subprocess
    import sys

    from export.parity import OnnxRuntime
    from tests.conftest import REPO

    runs = dict(_run_with_weights(tiny_run, tmp_path, scale) for scale in (0.5, 1.5))
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-m", "export.run", "--run-dir", str(run), "--output-dir", str(out)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for run in runs]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert _published(out) == [1, 2]
    assert sorted(p.name for p in (out / "tfserving").iterdir()) == ["generator"]  # no staging left
    z = np.random.default_rng(5).standard_normal((4, 8)).astype(np.float32)
    seen_runs = set()
    for version in (1, 2):
        card = json.loads((out / "tfserving" / "generator" / str(version) / "assets.extra" / "model_card.json").read_text())
        assert card["version"] == version
        run = next(r for r in runs if str(r) == card["training"]["run_dir"])
        seen_runs.add(run)
        expected = np.asarray(runs[run](z, training=False))
        session = TFServingSession(out / "tfserving" / "generator" / str(version))
        try:
            from_savedmodel = session({"z": z})
        finally:
            session.close()
        from_onnx = OnnxRuntime(out / "onnx-models" / "generator" / str(version) / "model.onnx")({"z": z})
        np.testing.assert_allclose(from_savedmodel, expected, atol=1e-4)  # this version's SavedModel ...
        np.testing.assert_allclose(from_onnx, expected, atol=1e-4)  # ... and ONNX come from one run
        for relative, digest in card["sha256"].items():
            if relative != "onnx/generator.onnx":  # the newest version's copy, checked below
                assert sha256(out / relative) == digest, (version, relative)
    assert seen_runs == set(runs)
    newest = json.loads((out / "model_card.json").read_text())
    assert newest["version"] == 2 and json.loads((out / "export_report.json").read_text())["version"] == 2
    assert sha256(out / "onnx" / "generator.onnx") == newest["sha256"]["onnx/generator.onnx"]


@pytest.mark.tier2
@pytest.mark.slow
def test_a_killed_export_leaves_leftovers_the_next_one_removes_without_touching_live_ones(tiny_run, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from common.atomic import staging_dir
    from tests.conftest import REPO

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "export.run", "--run-dir", str(tiny_run), "--output-dir", str(out)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((out / "tfserving").glob(".staging-*/model/saved_model.pb")):  # mid-export
        assert proc.poll() is None and time.monotonic() < deadline, "the export ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (dead,) = (out / "tfserving").glob(".staging-generator-v1.*")
    with staging_dir(out / "tfserving", "generator-v7") as live:  # an export still running beside us
        (live / "model").mkdir()
        assert main(["--run-dir", str(tiny_run), "--output-dir", str(out)]) == 0
        assert not dead.exists(), "the killed export's staging directory was left"
        assert live.is_dir() and (live / "model").is_dir(), "a live export's staging directory was removed"
        assert _published(out) == [8]  # 1 was freed by the dead export; 7 is claimed by the live one
    assert not live.exists() and _published(out) == [8]


def test_temp_files_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    import subprocess
    import sys

    from common.atomic import remove_stale
    from tests.conftest import REPO

    write = "from common.atomic import atomic_path\nwith atomic_path({!r}) as t:\n    t.write_bytes(b'x')\n    {}\n"
    killed = subprocess.run([sys.executable, "-c", write.format(str(tmp_path / "a.json"), "import os; os.kill(os.getpid(), 9)")],
                            cwd=REPO)
    assert killed.returncode == -9
    (leftover,) = tmp_path.glob(".a.json.*.tmp")
    live = subprocess.Popen([sys.executable, "-c", write.format(str(tmp_path / "b.json"), "print('writing', flush=True); input()")],
                            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline().strip() == "writing"
        assert remove_stale(tmp_path) == [] and leftover.exists()  # a writer is busy here: hands off
    finally:
        live.communicate("\n", timeout=30)
    assert live.returncode == 0 and (tmp_path / "b.json").read_bytes() == b"x"
    assert remove_stale(tmp_path) == [leftover] and not leftover.exists()
    assert (tmp_path / "b.json").exists()


def _published_files(out):
    for path in out.rglob("*"):
        if not any(part.startswith(".") for part in path.relative_to(out).parts):
            yield path


def _as_nobody():
    import os
    import pwd

    nobody = pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(nobody.pw_gid)
    os.setuid(nobody.pw_uid)


def _python_nobody_can_run():
    """An interpreter nobody may execute with this venv's packages (a pyenv under /root is not)."""
    import shutil
    import subprocess
    import sys

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for python in filter(None, [sys.executable, shutil.which(f"python{version}"), f"/usr/bin/python{version}"]):
        try:
            if subprocess.run([python, "-c", ""], preexec_fn=_as_nobody, capture_output=True).returncode == 0:
                return python
        except OSError:
            continue
    pytest.skip(f"no python{version} that user nobody may execute")


SERVER_IMPORTS = ("numpy", "onnxruntime", "google.protobuf", "grpc", "starlette", "uvicorn", "prometheus_client",
                  "orjson", "anyio", "h11", "click")


def _readable_copies(python, site_packages, destination):
    """`site_packages` when nobody can import the server's dependencies from them, else a copy of the
    distributions those imports come from (with their requirements) under `destination`."""
    import shutil
    import subprocess
    from importlib import metadata

    probe = f"import {', '.join(SERVER_IMPORTS)}"
    env = {"PYTHONPATH": os.pathsep.join(site_packages), "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"}
    if subprocess.run([python, "-c", probe], env=env, cwd="/", preexec_fn=_as_nobody, capture_output=True).returncode == 0:
        return list(site_packages)
    wanted = {name.split(".")[0] for name in SERVER_IMPORTS}
    by_package = metadata.packages_distributions()
    todo = {dist for package in wanted for dist in by_package.get(package, [])} | {"protobuf"}
    done = set()
    while todo:
        name = todo.pop()
        if name.lower() in done:
            continue
        done.add(name.lower())
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for file in dist.files or []:
            source = dist.locate_file(file)
            if source.is_file():
                target = os.path.join(destination, str(file))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy2(source, target)
        for requirement in dist.requires or []:
            if "extra ==" not in requirement:
                todo.add(re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0])
    return [destination]


def test_published_files_get_umask_modes_and_a_server_running_as_nobody_reads_them(tiny_export, tmp_path):
    import os
    import shutil
    import site
    import subprocess
    import tempfile

    import httpx

    from common.atomic import umask
    from tests.conftest import REPO
    from common.ports import free_port
    from tests.server_harness import wait_until_ready

    mask = umask()
    for path in _published_files(tiny_export):
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        assert path.stat().st_mode & 0o777 == expected, f"{path} is {oct(path.stat().st_mode & 0o777)}"
    python = _python_nobody_can_run()
    rest, grpc_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="nobody-reads-", dir="/tmp") as public:  # pytest's tmp is root-only
        os.chmod(public, 0o755)
        shutil.copytree(tiny_export / "onnx-models", f"{public}/onnx-models")  # copytree keeps the modes
        # nobody cannot enter a checkout inside a 0700 directory (a home, a mktemp -d): it gets a
        # readable copy of the server's code, and of the packages it imports unless it can read them.
        code = f"{public}/code"
        for package in ("common", "serving"):
            shutil.copytree(REPO / package, f"{code}/{package}", ignore=shutil.ignore_patterns("__pycache__"))
        path = [code, *_readable_copies(python, site.getsitepackages(), f"{public}/site-packages")]
        subprocess.run(["chmod", "-R", "a+rX", public], check=True)  # a clone made under umask 077 too
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp",
               "PYTHONPATH": os.pathsep.join(path)}
        server = subprocess.Popen([python, "-m", "serving.server", "--model-base-path", f"{public}/onnx-models/generator",
                                   "--rest-port", str(rest), "--grpc-port", str(grpc_port)], cwd=code, env=env,
                                  preexec_fn=_as_nobody, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            uid = next(line.split()[1] for line in open(f"/proc/{server.pid}/status") if line.startswith("Uid:"))
            assert int(uid) == __import__("pwd").getpwnam("nobody").pw_uid
            wait_until_ready(f"http://127.0.0.1:{rest}", server, server.stdout.read)
            response = httpx.post(f"http://127.0.0.1:{rest}/v1/models/generator:predict",
                                  json={"instances": np.zeros((2, 8)).tolist()}, timeout=10)
            assert response.status_code == 200, response.text
            assert np.array(response.json()["predictions"]).shape == (2, 28, 28, 1)
        finally:
            server.terminate()
            server.wait(timeout=30)


def _mount_tmpfs(path, size):
    import subprocess

    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up ({result.stderr.strip()}): needs root and mount permission")


@pytest.mark.tier2
def test_a_full_disk_exits_4_naming_the_path_and_space_and_leaves_nothing(tiny_run, tmp_path, capsys):
    import subprocess

    disk = tmp_path / "tiny-disk"
    _mount_tmpfs(disk, "160k")
    try:
        out = disk / "exports"
        assert main(["--run-dir", str(tiny_run), "--output-dir", str(out)]) == 4
        err = capsys.readouterr().err
        assert "No space left" in err and str(out) in err
        assert re.search(r"needs about [\d.]+ MiB free", err), err
        assert "Traceback" not in err
        assert [p.name for p in (out / "tfserving").iterdir()] == [], "staging or a version left behind"
        assert list((out / "onnx").iterdir()) == [] and not (out / "onnx-models").exists()
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_export_generate_imports_no_tensorflow_for_an_onnx_model(tiny_export, tmp_path):
    from tests.conftest import run_python

    probe = ("import sys; from export.generate import main; "
             f"assert main(['--model', {str(tiny_export / 'onnx' / 'generator.onnx')!r}, '--num', '4', "
             f"'--out', {str(tmp_path / 'g.png')!r}]) == 0; "
             "print(sorted(m for m in ('tensorflow', 'keras', 'training') if m in sys.modules))")
    result = run_python("-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]" and (tmp_path / "g.png").is_file()
