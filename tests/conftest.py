"""Shared fixtures: the real MNIST test set beside the repo, tiny configs, subprocess helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def documentation_text() -> str:
    """README.md and every docs/*.md page, as one text: what the docs say, wherever a page says it."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    return "\n\n".join(page.read_text(encoding="utf-8") for page in pages)
# The real MNIST test set, when a checkout has ../shared beside it: it only adds checks.
# GAN_TEST_MNIST_DIR points elsewhere (a missing path shows what a fresh clone runs).
MNIST_TEST_DIR = Path(os.environ.get("GAN_TEST_MNIST_DIR", REPO.parent / "shared" / "data" / "mnist-test"))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Domain classifiers are cached per session, never in the user's home.
os.environ.setdefault("GAN_SERVE_CACHE", tempfile.mkdtemp(prefix="gan-serve-test-cache-"))


def pytest_collection_modifyitems(config, items):
    """The second tier (marker `tier2`), the browser tier (`browser`: needs chromium) and the TFX tier
    (`tfx`) run only when `-m` names them (`python -m pytest -m tier2`, `-m browser`, `-m tfx`), so
    `python -m pytest` and `python -m pytest -m "not slow"` stay the fast tier, which needs nothing
    beyond what the README's install command installs."""
    for tier in ("tier2", "browser", "tfx"):
        if tier in (config.option.markexpr or ""):
            continue
        left_out = [item for item in items if item.get_closest_marker(tier)]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = [item for item in items if not item.get_closest_marker(tier)]


@pytest.fixture(scope="session")
def mnist_test_dir(tmp_path_factory) -> Path:
    """A directory of MNIST-format idx files: the real test set from ../shared when it is there,
    else the 5,000 digits of the shipped mnist-sample written as idx files."""
    if has_real_mnist(MNIST_TEST_DIR):
        return MNIST_TEST_DIR
    return write_mnist_sample_as_idx(tmp_path_factory.mktemp("mnist-idx"))


def has_real_mnist(directory: Path = MNIST_TEST_DIR) -> bool:
    return directory == MNIST_TEST_DIR and (directory / "t10k-images-idx3-ubyte.gz").is_file()


def write_mnist_sample_as_idx(directory: Path) -> Path:
    """`t10k-images-idx3-ubyte.gz` and `t10k-labels-idx1-ubyte.gz` holding the mnist-sample digits."""
    from common.realdata import write_idx_dir
    from training.data import load_mnist_sample

    data = load_mnist_sample()
    return write_idx_dir(directory, data.images, data.labels)


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


@pytest.fixture(scope="session")
def tiny_conditional_export(tiny_conditional_run, tmp_path_factory) -> Path:
    """The conditional tiny run exported once per session as model "digits" (tests only read it)."""
    from export.run import main

    out = tmp_path_factory.mktemp("exports_cond")
    assert main(["--run-dir", str(tiny_conditional_run), "--output-dir", str(out), "--model-name", "digits"]) == 0
    return out
