"""The small-data tools together: DiffAugment, spectral norm, lazy R1 and the EMA half-life keep
exact resume (their randomness and schedules come from the batch's (seed, step) and the step)."""

import re

import pytest

from tests.conftest import TINY, run_python

pytestmark = pytest.mark.slow


def digest_of(stdout: str) -> str:
    return re.search(r"generator weights sha256 ([0-9a-f]+)", stdout).group(1)


def test_a_resumed_run_with_every_tool_on_ends_bit_identical_to_an_uninterrupted_one(tmp_path):
    tools = ["--diffaugment", "translation,cutout,color", "--spectral-norm", "--r1-gamma", "1", "--r1-every", "3",
             "--ema-kimg", "0.1", "--ema-rampup", "0.5"]
    common = [*TINY, *tools, "--steps-per-epoch", "4", "--checkpoint-every", "100", "--deterministic"]
    straight = run_python("-m", "training.run", *common, "--epochs", "2", "--output-dir", str(tmp_path / "a"))
    first = run_python("-m", "training.run", *common, "--epochs", "1", "--output-dir", str(tmp_path / "b"))
    second = run_python("-m", "training.run", *common, "--epochs", "2", "--output-dir", str(tmp_path / "b"))
    for result in (straight, first, second):
        assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming at step 4" in second.stdout
    assert digest_of(straight.stdout) == digest_of(second.stdout)
