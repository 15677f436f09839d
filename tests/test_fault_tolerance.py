"""Training under faults and at scale: crash-resume, preemption, divergence, multi-worker,
mixed precision, XLA and determinism."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from common.ports import free_port
from tests.conftest import REPO, TINY, run_python

pytestmark = pytest.mark.slow


def start(args, env=None, log=None):
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "training.run", *args], cwd=REPO, env=full_env,
                            stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, timeout=120, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc is None or proc.poll() is None, proc.stdout.read() if proc.stdout else "process exited"
        time.sleep(0.05)
    raise TimeoutError("condition not reached")


def checkpoint_step(run_dir):
    pointer = run_dir / "checkpoints" / "checkpoint.json"
    return json.loads(pointer.read_text())["step"] if pointer.is_file() else None


def digest_of(stdout: str) -> str:
    return re.search(r"generator weights sha256 ([0-9a-f]+)", stdout).group(1)


def test_sigkill_after_a_backup_then_rerun_completes_exactly_the_planned_steps(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY, "--epochs", "3", "--steps-per-epoch", "12", "--checkpoint-every", "5", "--output-dir", str(run_dir)]
    proc = start(args)
    wait_for(lambda: (checkpoint_step(run_dir) or 0) >= 5, proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = checkpoint_step(run_dir)
    assert 5 <= killed_at < 36, "the run finished before it could be killed"
    resumed = run_python("-m", "training.run", *args)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"resuming at step {killed_at}" in resumed.stdout
    assert "done: 36/36 steps" in resumed.stdout
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert [row["global_step"] for row in history] == [12, 24, 36]
    assert checkpoint_step(run_dir) == 36 and (run_dir / "generator.keras").is_file()


def test_sigterm_writes_a_backup_and_exits_0_then_the_next_run_resumes(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY, "--epochs", "200", "--steps-per-epoch", "50", "--checkpoint-every", "100000", "--output-dir", str(run_dir)]
    proc = start(args)
    wait_for(lambda: (run_dir / "samples" / "epoch_0001.png").is_file(), proc=proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    # "Within seconds": it finishes one step and writes one checkpoint (~1 s with TensorFlow's exit);
    # 60 s is ten times what a loaded 2-core machine needs, and far less than the 200 planned epochs.
    assert time.monotonic() - sent < 60
    assert "preempted: checkpoint written at step" in out
    step = checkpoint_step(run_dir)
    assert step >= 50 and f"step {step}/10000" in out
    assert not (run_dir / "generator.keras").exists(), "an unfinished run must not publish a generator"
    epochs = step // 50 + 1  # always some steps left to do: the rest of the interrupted epoch at least
    resumed = run_python("-m", "training.run", *[a if a != "200" else str(epochs) for a in args])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming at step {step}" in resumed.stdout
    assert f"done: {epochs * 50}/{epochs * 50} steps" in resumed.stdout


def test_ctrl_c_writes_a_checkpoint_and_names_the_command_that_resumes(tmp_path):
    """No --output-dir: the run's directory is named before training starts, so the message after
    Ctrl-C is a command that resumes this run (not one that starts another), and running it does."""
    args = [*TINY, "--epochs", "200", "--steps-per-epoch", "50", "--checkpoint-every", "100000"]
    proc = subprocess.Popen([sys.executable, "-m", "training.run", *args], cwd=tmp_path,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
                                 "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            # as from a terminal: pytest-xdist's workers ignore SIGINT, and children inherit that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(lambda: list(tmp_path.glob("runs/*/samples/epoch_0001.png")), proc=proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, out[-3000:]
    assert time.monotonic() - sent < 60 and "Traceback" not in out
    found = re.search(r"interrupted: checkpoint written at step (\d+)/10000; resume with: (.+)", out)
    assert found, out[-3000:]
    step, command = int(found.group(1)), found.group(2).split()
    run_dir = next(tmp_path.glob("runs/*"))
    assert checkpoint_step(run_dir) == step >= 50
    assert command[:3] == ["python", "-m", "training.run"] and command[-2:] == ["--output-dir", f"runs/{run_dir.name}"]
    epochs = step // 50 + 1
    resumed = run_python(*command[1:3], *[a if a != "200" else str(epochs) for a in command[3:]], cwd=tmp_path,
                         env={"PYTHONPATH": str(REPO)})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming at step {step}" in resumed.stdout and len(list(tmp_path.glob("runs/*"))) == 1


def _catches_sigterm(pid: int) -> bool:
    caught = next(line for line in open(f"/proc/{pid}/status") if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the signal mask from /proc")
def test_sigterm_while_starting_up_exits_0_with_nothing_half_done(tmp_path):
    """The handler is there from the moment the flags are parsed: before TensorFlow, the data and
    the run directory (the guard inside `fit` came too late for those)."""
    run_dir = tmp_path / "run"
    proc = start([*TINY, "--epochs", "1", "--steps-per-epoch", "2", "--output-dir", str(run_dir)])
    try:
        wait_for(lambda: _catches_sigterm(proc.pid), timeout=60, proc=proc)
    except TimeoutError:
        proc.kill()
        raise
    started_training = run_dir.exists()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert not started_training, "SIGTERM was only handled once the run directory existed"
    assert proc.returncode == 0, out[-3000:]
    assert "preempted before the first training step" in out and "Traceback" not in out
    assert not run_dir.exists()


def test_divergence_stops_with_a_message_and_keeps_the_last_good_artifacts(tmp_path):
    run_dir = tmp_path / "run"
    healthy = run_python("-m", "training.run", *TINY, "--epochs", "1", "--steps-per-epoch", "3", "--output-dir", str(run_dir))
    assert healthy.returncode == 0, healthy.stderr[-3000:]
    generator_bytes = (run_dir / "generator.keras").read_bytes()
    checkpoint_files = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    broken = run_python("-m", "training.run", *TINY, "--epochs", "3", "--steps-per-epoch", "3",
                        "--d-lr", "1e10", "--g-lr", "1e10", "--output-dir", str(run_dir))
    assert broken.returncode == 1
    assert "Training diverged at step" in broken.stderr
    assert "The last good checkpoint (step 3) is intact" in broken.stderr and "Lower --d-lr/--g-lr" in broken.stderr
    assert "Traceback" not in broken.stderr
    assert checkpoint_step(run_dir) == 3
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == checkpoint_files
    assert (run_dir / "generator.keras").read_bytes() == generator_bytes


# Adam divides by a tiny second moment in its first steps and amplifies the rounding of a different
# reduction order: 8 steps at the default rate gave 1.3e-3 (of ~6e-3 moved); a worker training on the
# wrong half-batch moves weights by the full update.
MULTI_WORKER_TOLERANCE = 3e-3


def generator_weights(run_dir):
    import training.models  # noqa: F401  (registers the custom layers load_model needs)

    return keras.models.load_model(run_dir / "generator.keras", compile=False).get_weights()


@pytest.mark.tier2
def test_two_workers_train_the_weights_of_one_worker_and_only_the_chief_writes(tmp_path, mnist_test_dir):
    """Workers agree with each other by construction (mirrored variables): what is tested is that two
    workers, each with half of every global batch, train what one process with the whole batch trains."""
    run_dir = tmp_path / "run"
    data = ["--dataset", "idx", "--data-dir", str(mnist_test_dir), *TINY, "--epochs", "2", "--steps-per-epoch", "4"]
    alone = run_python("-m", "training.run", *data, "--output-dir", str(tmp_path / "alone"))
    assert alone.returncode == 0, alone.stderr[-3000:]
    ports = [free_port(), free_port()]
    procs, temps = [], []
    for index in range(2):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
        temp = tmp_path / f"tmp{index}"
        temp.mkdir()
        temps.append(temp)
        log = open(tmp_path / f"worker{index}.log", "w")
        procs.append((start(["--strategy", "multi-worker", "--dataset", "idx", "--data-dir", str(mnist_test_dir), *TINY,
                             "--epochs", "2", "--steps-per-epoch", "4", "--checkpoint-every", "3",
                             "--output-dir", str(run_dir)],
                            env={"TF_CONFIG": json.dumps(tf_config), "TMPDIR": str(temp)}, log=log), log))
    outputs = []
    for (proc, log), index in zip(procs, range(2)):
        proc.wait(timeout=300)  # two TensorFlow processes on a busy 2-core machine
        log.close()
        outputs.append((tmp_path / f"worker{index}.log").read_text())
        assert proc.returncode == 0, outputs[-1][-3000:]
    assert "2 replica(s)" in outputs[0]
    ours, theirs = generator_weights(run_dir), generator_weights(tmp_path / "alone")
    difference = max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs))
    assert difference < MULTI_WORKER_TOLERANCE, f"2 workers vs 1 process: max |weight difference| {difference}"
    expected = {"config.json", "dataset.json", "history.json", "generator.keras", "discriminator.keras",
                "checkpoints", "samples", "tensorboard"}
    assert {p.name for p in run_dir.iterdir()} == expected
    assert [r["global_step"] for r in json.loads((run_dir / "history.json").read_text())] == [4, 8]
    assert checkpoint_step(run_dir) == 8
    # (TensorFlow's autograph may leave its own generated sources there; only ours are checked.)
    assert not [p for p in temps[1].iterdir() if "gan-worker-backup" in p.name], \
        "the worker's temporary checkpoints were not cleaned up"
    assert "Run directory" in outputs[0] and "Run directory" not in outputs[1]


def test_mixed_bfloat16_on_cpu_trains_finite_and_saves_a_float32_generator(tmp_path):
    from training.config import TrainConfig
    from training.trainer import train

    result = train(TrainConfig(width=4, latent_dim=8, batch_size=16, epochs=1, steps_per_epoch=3, verbose=0,
                               mixed_precision=True, output_dir=str(tmp_path / "run")))
    assert keras.mixed_precision.global_policy().name == "float32", "the policy leaked out of the run"
    row = result.history[-1]
    assert all(np.isfinite(row[k]) for k in ("d_loss", "g_loss"))
    import training.models  # noqa: F401  (registers the custom layers load_model needs)

    generator = keras.models.load_model(tmp_path / "run" / "generator.keras")
    assert {layer.dtype_policy.name for layer in generator.layers} == {"float32"}
    out = generator(np.zeros((2, 8), np.float32))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


def test_mixed_precision_model_computes_in_bfloat16_with_float32_outputs():
    from training.models import build_discriminator, build_generator
    from training.precision import precision_policy

    with precision_policy(True) as policy:
        generator, discriminator = build_generator(28, 1, 8, 4), build_discriminator(28, 1, 4)
    assert policy == "mixed_bfloat16"
    assert generator.get_layer("project").compute_dtype == "bfloat16"
    images = generator(np.zeros((2, 8), np.float32))
    assert keras.backend.standardize_dtype(images.dtype) == "float32"
    assert keras.backend.standardize_dtype(discriminator(images).dtype) == "float32"


def test_a_step_with_and_without_xla_gives_the_same_weights():
    from training.data import load_data, make_pipeline
    from training.gan import GAN
    from training.losses import get_loss
    from training.models import build_discriminator, build_generator

    data = load_data("mnist-sample")
    results = []
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        gan = GAN(build_generator(28, 1, 8, 4), build_discriminator(28, 1, 4), latent_dim=8, ema_decay=0.9)
        gan.compile(d_optimizer=keras.optimizers.SGD(0.01), g_optimizer=keras.optimizers.SGD(0.01),
                    loss=get_loss("bce"), jit_compile=jit, steps_per_execution=2)
        if results:
            gan.set_weights(results[0][0])
        initial = gan.get_weights()
        gan.fit(make_pipeline(data, 16, 8, 1, seed=0), steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
        results.append((initial, gan.get_weights()))
    (initial, plain), (_, xla) = results
    assert max(float(np.abs(a - b).max()) for a, b in zip(plain, initial)) > 1e-4
    assert max(float(np.abs(a - b).max()) for a, b in zip(plain, xla)) < 1e-5
