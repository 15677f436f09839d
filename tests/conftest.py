"""Shared fixtures: the real MNIST test set beside the repo, tiny configs, subprocess helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MNIST_TEST_DIR = REPO.parent / "shared" / "data" / "mnist-test"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Domain classifiers are cached per session, never in the user's home.
os.environ.setdefault("GAN_SERVE_CACHE", tempfile.mkdtemp(prefix="gan-serve-test-cache-"))


@pytest.fixture(scope="session")
def mnist_test_dir() -> Path:
    if not (MNIST_TEST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the MNIST test set is expected at {MNIST_TEST_DIR}")
    return MNIST_TEST_DIR


def run_python(*args: str, timeout: float = 600, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run `python ARGS...` from the repo root, as a user would, and capture its output."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


TINY = ["--width", "4", "--latent-dim", "8", "--batch-size", "16", "--verbose", "0", "--num-samples", "16"]


def _train_tiny(root: Path, **overrides) -> Path:
    """Train a tiny model in-process (the CLI path is covered by test_end_to_end)."""
    from training.config import TrainConfig
    from training.trainer import train

    config = TrainConfig(width=4, latent_dim=8, batch_size=16, epochs=1, steps_per_epoch=3, verbose=0,
                         num_samples=16, output_dir=str(root), **overrides)
    train(config)
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return _train_tiny(tmp_path_factory.mktemp("tiny") / "run")


@pytest.fixture(scope="session")
def tiny_conditional_run(tmp_path_factory) -> Path:
    return _train_tiny(tmp_path_factory.mktemp("tiny_cond") / "run", conditional=True)


@pytest.fixture(scope="session")
def tiny_export(tiny_run, tmp_path_factory) -> Path:
    from export.run import main

    out = tmp_path_factory.mktemp("exports")
    assert main(["--run-dir", str(tiny_run), "--output-dir", str(out)]) == 0
    return out
