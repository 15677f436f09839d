"""The run's progress line: the whole run's steps, time so far, and time left at this run's pace."""

from __future__ import annotations

import pytest


def test_the_line_counts_the_whole_run_and_estimates_the_time_left(capsys):
    from training.callbacks import RunProgress

    clock, step = [100.0], [640]  # resumed at step 640 of 3,200
    progress = RunProgress(3200, lambda: step[0], clock=lambda: clock[0])
    progress.on_train_begin()
    clock[0], step[0] = 130.0, 960  # 320 steps in 30 s: 2,240 left take 210 s
    progress.on_epoch_end(11)
    assert capsys.readouterr().out == ""  # not yet: Keras's progress bar still has its line to end
    progress.on_epoch_begin(12)
    assert capsys.readouterr().out.strip() == "run: step 960 of 3,200 (30%), 0:30 so far, about 3:30 left"
    progress.on_train_begin()  # a second fit in the same process keeps the first's start
    clock[0], step[0] = 100.0 + 3 * 3600 + 60, 3200
    progress.on_epoch_end(49)
    progress.on_train_end()
    assert capsys.readouterr().out.strip() == "run: step 3,200 of 3,200 (100%), 3:01:00 so far"


def test_a_time_budget_caps_the_estimate(capsys):
    from training.callbacks import RunProgress, TimeBudget

    budget = TimeBudget(1.0)  # a deadline 60 s from now, on the real clock
    now = [budget.deadline - 60.0]
    progress = RunProgress(1000, lambda: steps[0], budget, clock=lambda: now[0])
    steps = [0]
    progress.on_train_begin()
    now[0] += 20.0
    steps[0] = 100  # 900 steps left at 5 steps/s would take 180 s; the budget ends in 40 s
    progress.on_epoch_end(0)
    progress.on_train_end()
    assert capsys.readouterr().out.strip() == "run: step 100 of 1,000 (10%), 0:20 so far, 0:40 left (--max-minutes)"


@pytest.mark.slow
def test_the_line_is_a_line_of_its_own_beside_the_progress_bar(tmp_path):
    """Keras ends its progress bar's line after the callbacks' on_epoch_end: the run line comes after."""
    from tests.conftest import TINY, run_python

    result = run_python("-m", "training.run", *TINY, "--epochs", "2", "--steps-per-epoch", "2", "--verbose", "1",
                        "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.split("\n")
    assert any(line.startswith("run: step 2 of 4 (50%), ") for line in lines), result.stdout[-2000:]
    assert any(line.startswith("run: step 4 of 4 (100%), ") for line in lines), result.stdout[-2000:]
