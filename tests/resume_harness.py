"""Exact resume, in one TensorFlow process: the training runs test_resume.py compares.

    python tests/resume_harness.py OUT_DIR STOP_AT_STEP [training.run flags...]

Runs `training.run.main` (the CLI path users take) several times in this process and prints one JSON
line with each run's exit code, output and generator digest:

  straight     the flags as given, uninterrupted;
  interrupted  the same flags into another directory, with a SIGTERM sent to this process right after
               step STOP_AT_STEP (a test-only first callback): the PreemptionGuard checkpoints there
               and stops, exactly as a scheduler's SIGTERM would, but at a step chosen in advance
               (`--max-minutes` could not be, and a SIGTERM from outside lands at any step);
  resumed      the same command again into the interrupted run's directory;
  unevaluated  the flags without --eval-every/--eval-reference-dir/--eval-samples (evaluation must
               not move the run's random numbers);
  other_seed   the unevaluated flags with --seed + 1 (a different seed must give other weights).

One process instead of five: the runs share TensorFlow's start-up and traced steps, so the phases
cost seconds each. Each run seeds everything itself (training.trainer.seed_everything).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys


class Tee(io.TextIOBase):
    """Keep what a run prints while still showing it."""

    def __init__(self, stream):
        self.stream, self.parts = stream, []

    def write(self, text):
        self.parts.append(text)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()


def run(argv: list[str], stop_at: int | None = None) -> dict:
    import keras

    from training import run as cli
    from training import sigterm, trainer

    original = trainer.make_callbacks

    class SigtermAfterStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.model.step == stop_at:
                os.kill(os.getpid(), signal.SIGTERM)  # noted by training.sigterm; the guard sees it this step

    def with_stop(*args, **kwargs):
        callbacks = original(*args, **kwargs)
        callbacks.ordered.insert(0, SigtermAfterStep())  # first, so the PreemptionGuard sees it at this step
        return callbacks

    out, err = Tee(sys.stdout), Tee(sys.stderr)
    if stop_at is not None:
        trainer.make_callbacks = with_stop
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    finally:
        trainer.make_callbacks = original
        sigterm._requested.clear()  # the flag outlives a run only because these runs share a process
    stdout = "".join(out.parts)
    digest = next((line.split("sha256 ")[1].rstrip(")") for line in stdout.splitlines() if "weights sha256" in line), None)
    return {"code": code, "stdout": stdout, "stderr": "".join(err.parts)[-3000:], "digest": digest}


def without(argv: list[str], flags: set[str]) -> list[str]:
    """argv less each flag in `flags` and its value."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in flags:
            skip = True
        else:
            kept.append(arg)
    return kept


def main() -> None:
    out_dir, stop_at, flags = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    plain = without(flags, {"--eval-every", "--eval-reference-dir", "--eval-samples"})
    seed = int(plain[plain.index("--seed") + 1]) if "--seed" in plain else 0
    other = [*without(plain, {"--seed"}), "--seed", str(seed + 1)]
    results = {
        "straight": run([*flags, "--output-dir", f"{out_dir}/straight"]),
        "interrupted": run([*flags, "--output-dir", f"{out_dir}/resumed"], stop_at=stop_at),
        "resumed": run([*flags, "--output-dir", f"{out_dir}/resumed"]),
        "unevaluated": run([*plain, "--output-dir", f"{out_dir}/unevaluated"]),
        "other_seed": run([*other, "--output-dir", f"{out_dir}/other_seed"]),
    }
    print("RESULTS " + json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
