"""`python -m training.run` in a subprocess, as a user runs it: run directory, reload, resume."""

import json
import re

import numpy as np
import pytest

from tests.conftest import TINY, run_python

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, mnist_test_dir):
    run_dir = tmp_path_factory.mktemp("e2e") / "run"
    args = ["-m", "training.run", "--dataset", "idx", "--data-dir", str(mnist_test_dir), *TINY,
            "--epochs", "2", "--steps-per-epoch", "6", "--checkpoint-every", "4", "--output-dir", str(run_dir)]
    result = run_python(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, args, result


def test_run_directory_is_complete(trained_run):
    run_dir, _, result = trained_run
    for name in ("config.json", "history.json", "generator.keras", "discriminator.keras",
                 "samples/epoch_0001.png", "samples/epoch_0002.png", "checkpoints/checkpoint.json"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["image_size"], config["channels"], config["d_steps"]) == (28, 1, 1)
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert [row["global_step"] for row in history] == [6, 12]
    assert all(np.isfinite(row["d_loss"]) and row["img_per_s"] > 0 for row in history)
    assert json.loads((run_dir / "checkpoints/checkpoint.json").read_text())["step"] == 12
    assert "done: 12/12 steps" in result.stdout
    assert not list(run_dir.rglob("*.tmp*")), "a temporary file was left behind"
    # TensorFlow's C++/absl start-up lines (CUDA probing and the like) are hidden without --tf-logs.
    assert not re.search(r"^[IWEF]\d{4} |absl::InitializeLog", result.stderr, re.M), result.stderr[:2000]


def test_generator_reloads_in_a_fresh_process_that_only_imported_training_models(trained_run):
    run_dir, _, _ = trained_run
    code = (
        "import training.models, keras, numpy as np\n"
        f"g = keras.models.load_model({str(run_dir / 'generator.keras')!r})\n"
        "x = keras.ops.convert_to_numpy(g(np.random.default_rng(0).normal(size=(5, 8)).astype('float32')))\n"
        "print(x.shape, float(np.abs(x).max()) <= 1.0, float(x.std()) > 0)\n"
    )
    result = run_python("-c", code, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(5, 28, 28, 1) True True" in result.stdout


def test_rerun_with_more_epochs_resumes_and_a_different_config_is_refused(trained_run):
    run_dir, args, _ = trained_run
    refused = run_python(*args, "--loss", "hinge", timeout=120)
    assert refused.returncode == 2
    assert "different config (loss: 'bce' -> 'hinge')" in refused.stderr
    resumed = run_python(*[a if a != "2" else "3" for a in args])  # --epochs 3
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at step 12" in resumed.stdout and "done: 18/18 steps" in resumed.stdout
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert [row["global_step"] for row in history] == [6, 12, 18]


def test_conditional_run_with_wgan_gp_draws_one_row_per_class(tmp_path):
    from PIL import Image

    run_dir = tmp_path / "cond"
    result = run_python("-m", "training.run", "--conditional", "--loss", "wgan-gp", "--d-steps", "2", *TINY,
                        "--num-samples", "20", "--epochs", "1", "--steps-per-epoch", "3",
                        "--output-dir", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    grid = Image.open(run_dir / "samples" / "epoch_0001.png")
    # 10 classes x 2 columns of 28-pixel digits with 1-pixel borders.
    assert grid.size == (2 * 29 + 1, 10 * 29 + 1)
    history = json.loads((run_dir / "history.json").read_text())
    assert 0 < history[0]["gp"] < float("inf"), history[0]  # the penalty was computed and logged (never exactly 0)


def test_time_budget_stops_cleanly_and_writes_everything(tmp_path):
    run_dir = tmp_path / "budget"
    result = run_python("-m", "training.run", *TINY, "--epochs", "1000", "--max-minutes", "0.05",
                        "--output-dir", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    stopped = re.search(r"stopped at the time budget: (\d+)/(\d+) steps in ([\d.]+) min", result.stdout)
    assert stopped, result.stdout[-2000:]
    step, total, minutes = int(stopped[1]), int(stopped[2]), float(stopped[3])
    assert (run_dir / "generator.keras").is_file() and list((run_dir / "samples").glob("*.png"))
    history = json.loads((run_dir / "history.json").read_text())
    assert history[-1]["global_step"] == step == json.loads((run_dir / "checkpoints" / "checkpoint.json").read_text())["step"]
    # Stopped by the budget, not by the plan or an error: some steps ran, far fewer than planned,
    # and not before the 3 s budget (0.05 min prints as 0.1 once it has passed; 0.0 would be early).
    assert 0 < step < total == 1000 * 312 and minutes >= 0.05, stopped[0]
