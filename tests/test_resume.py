"""Exact resume, the README's claim, in one harness process (tests/resume_harness.py): the default
recipe (Adam, EMA half-life with ramp-up) with every small-data tool on (DiffAugment, spectral norm,
lazy R1), --eval-every against held-out images, a non-zero seed and --deterministic, run straight and
interrupted mid-epoch (SIGTERM after step 6 of 4-step epochs) then resumed: same weights, bit for bit."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, TINY, run_python
from tests.test_metrics_training import sample_idx

pytestmark = pytest.mark.slow
STOP_AT, STEPS_PER_EPOCH, EPOCHS = 6, 4, 3  # step 6 is inside epoch 2


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    small, held_out = sample_idx(root / "small", slice(0, 320)), sample_idx(root / "held-out", slice(320, 520))
    flags = [*TINY, "--dataset", "idx", "--data-dir", str(small), "--seed", "3",
             "--diffaugment", "translation,cutout,color", "--spectral-norm", "--r1-gamma", "1", "--r1-every", "3",
             "--r2-gamma", "1", "--lr-decay", "cosine", "--lr-final", "0.1",
             "--steps-per-epoch", str(STEPS_PER_EPOCH), "--epochs", str(EPOCHS), "--checkpoint-every", "100",
             "--deterministic", "--eval-every", "1", "--eval-reference-dir", str(held_out), "--eval-samples", "64"]
    result = run_python(str(REPO / "tests" / "resume_harness.py"), str(root / "runs"), str(STOP_AT), *flags,
                        timeout=900, env={"PYTHONPATH": str(REPO), "GAN_SERVE_CACHE": str(root / "cache")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULTS "))
    runs = json.loads(line[len("RESULTS "):])
    for name, run in runs.items():
        assert run["code"] == 0, (name, run["stdout"][-2000:], run["stderr"])
    return root / "runs", runs


def history(root, name):
    return json.loads((root / name / "history.json").read_text())


def test_a_run_interrupted_mid_epoch_and_resumed_ends_bit_identical_to_an_uninterrupted_one(harness):
    root, runs = harness
    total = STEPS_PER_EPOCH * EPOCHS
    assert f"preempted: checkpoint written at step {STOP_AT}/{total}" in runs["interrupted"]["stdout"]
    assert STOP_AT % STEPS_PER_EPOCH, "the interruption must not fall on an epoch boundary"
    assert f"resuming at step {STOP_AT}" in runs["resumed"]["stdout"]
    assert f"done: {total}/{total} steps" in runs["resumed"]["stdout"]
    assert runs["straight"]["digest"] and runs["resumed"]["digest"] == runs["straight"]["digest"]
    straight, resumed = history(root, "straight"), history(root, "resumed")
    assert [row["global_step"] for row in resumed] == [4, 8, 12]
    # Every epoch's evaluation, the interrupted one's too: the same weights at each epoch end.
    assert [row["fid"] for row in resumed] == [row["fid"] for row in straight]
    # The logged losses of the whole epochs; the interrupted epoch's row averages only the steps
    # after the resume (Keras's metrics restart with each `fit`), so it is left out here.
    for key in ("d_loss", "g_loss"):
        assert [resumed[i][key] for i in (0, 2)] == [straight[i][key] for i in (0, 2)], key


def test_eval_every_changes_no_weight_and_trains_its_classifier_once(harness):
    """--eval-every observes: the run without it trains the same weights. FID is against
    --eval-reference-dir, images the runs never trained on; the classifier is trained by the first
    run and found in the cache by the interrupted and the resumed ones."""
    root, runs = harness
    assert runs["unevaluated"]["digest"] == runs["straight"]["digest"]
    assert "training the domain classifier" in runs["straight"]["stdout"]
    assert "against 200 held-out images" in runs["straight"]["stdout"]
    assert json.loads((root / "straight" / "best.json").read_text())["reference"] == "held-out"
    assert "training the domain classifier" not in runs["interrupted"]["stdout"] + runs["resumed"]["stdout"]


def test_deterministic_runs_repeat_bit_for_bit_and_the_seed_matters(harness):
    root, runs = harness
    # straight and unevaluated are two runs of one recipe in different directories.
    assert [r["d_loss"] for r in history(root, "straight")] == [r["d_loss"] for r in history(root, "unevaluated")]
    assert runs["other_seed"]["digest"] != runs["straight"]["digest"]
