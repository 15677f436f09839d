"""--eval-every inside training: the evaluator leaves the run's random
numbers alone, and it is built outside strategy.scope(), so two workers finish."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from common.ports import free_port
from tests.conftest import REPO, TINY, run_python

pytestmark = pytest.mark.slow


def write_idx(directory, images, labels):
    """A small labelled MNIST-format dataset: the classifier for it trains in seconds."""
    directory.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape[:3]
    (directory / "small-images-idx3-ubyte").write_bytes(
        bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (n, h, w)) + images.tobytes())
    (directory / "small-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + labels.tobytes())
    return directory


def sample_idx(directory, rows: slice):
    """Rows of the shipped MNIST sample (in a fixed shuffled order) as an idx dataset."""
    from common.realdata import read_mnist_sample

    images, labels = read_mnist_sample()
    pick = np.random.default_rng(0).permutation(len(images))[rows]
    return write_idx(directory, images[pick, ..., 0], labels[pick].astype(np.uint8))


@pytest.fixture(scope="module")
def small_idx(tmp_path_factory):
    return sample_idx(tmp_path_factory.mktemp("small") / "idx", slice(0, 320))


def test_a_missing_eval_reference_dir_fails_before_the_run_directory_exists(small_idx, tmp_path):
    result = run_python("-m", "training.run", *TINY, "--dataset", "idx", "--data-dir", str(small_idx), "--eval-every",
                        "1", "--eval-reference-dir", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 2 and "--eval-reference-dir" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


@pytest.mark.tier2
def test_two_workers_with_eval_every_finish(small_idx, tmp_path):
    run_dir = tmp_path / "run"
    ports = [free_port(), free_port()]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
           "GAN_SERVE_CACHE": str(tmp_path / "cache")}  # the chief trains the classifier while the other waits
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
        log = open(tmp_path / f"worker{index}.log", "w")
        args = ["--strategy", "multi-worker", "--dataset", "idx", "--data-dir", str(small_idx), *TINY, "--epochs", "2",
                "--steps-per-epoch", "4", "--eval-every", "1", "--eval-samples", "64", "--output-dir", str(run_dir)]
        procs.append((subprocess.Popen([sys.executable, "-m", "training.run", *args], cwd=REPO,
                                       env={**env, "TF_CONFIG": json.dumps(tf_config)},
                                       stdout=log, stderr=subprocess.STDOUT, text=True), log))
    outputs = []
    for index, (proc, log) in enumerate(procs):
        try:
            proc.wait(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
        outputs.append((tmp_path / f"worker{index}.log").read_text())
        assert proc.returncode == 0, outputs[-1][-3000:]
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["global_step"] for row in history] == [4, 8] and all("fid" in row for row in history)
    assert (run_dir / "generator_best.keras").is_file()
    assert "evaluation:" in outputs[0] and "evaluation:" not in outputs[1]
