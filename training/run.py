"""`python -m training.run`: parse and validate the flags, then import TensorFlow, train, report.

Exit codes: 0 done (also when preempted, unless --preempted-exit-code says otherwise: a checkpoint
was written, and the message names the command that resumes); 1 training
diverged; 2 bad input (flags, config file, data, run directory); 74 disk full (the last checkpoint is
intact: free space and rerun to resume); 130 interrupted (Ctrl-C: the first one stops after the
current step with a checkpoint, a second one at once).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import sys

from common.quiet import quiet_tensorflow
from training import sigterm
from training.cli import parse_command_line
from training.config import ConfigError, TrainConfig, default_output_dir
from training.data import DataError

EXIT_DISK_FULL = 74  # sysexits.h EX_IOERR


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        config, tf_logs, why = parse_command_line(argv)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    other = "digits" if config.recipe == "photos" else "photos"
    print(f"recipe: {config.recipe} ({why}; --recipe {other} for the other defaults, and any flag you give wins)",
          flush=True)
    if not config.output_dir:  # named now, so that every message can say how to resume this run
        config = dataclasses.replace(config, output_dir=default_output_dir())
        argv = [*argv, "--output-dir", config.output_dir]
    quiet_tensorflow(show=tf_logs)  # before the first TensorFlow import
    with sigterm.noted():  # from here on SIGTERM or Ctrl-C stops at the next safe point
        return leave(config, train_and_report(config, resume_command(argv)))


def resume_command(argv: list[str]) -> str:
    """The command that resumes this run: the same flags, --output-dir included, never --overwrite."""
    return shlex.join(["python", "-m", "training.run", *[a for a in argv if a != "--overwrite"]])


def train_and_report(config: TrainConfig, resume: str | None = None) -> int:
    from common.atomic import is_disk_full
    from training.guards import TrainingDiverged
    from training.trainer import train

    resume = resume or "the same command"
    try:
        result = train(config)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"Interrupted at once; resume from the last checkpoint with: {resume}", file=sys.stderr)
        return 130
    except Exception as err:
        if not is_disk_full(err):
            raise
        print(f"error: {disk_full_message(err, config, resume)}", file=sys.stderr)
        return EXIT_DISK_FULL
    if result.preempted and not result.began:
        what = "interrupted" if sigterm.interrupted() else "preempted"
        print(f"{what} before the first training step; nothing was lost: start (or resume) with: {resume}")
        return 130 if sigterm.interrupted() else config.preempted_exit_code
    if result.preempted:
        what = "interrupted" if sigterm.interrupted() else "preempted"
        print(f"{what}: checkpoint written at step {result.global_step}/{result.total_steps}; resume with: {resume}")
        return 130 if sigterm.interrupted() else config.preempted_exit_code
    status = "stopped at the time budget" if result.stopped_early else "done"
    print(f"{status}: {result.global_step}/{result.total_steps} steps in {result.wall_seconds / 60:.1f} min "
          f"(generator weights sha256 {result.generator_digest[:16]})")
    return 0


def leave(config: TrainConfig, code: int) -> int:
    """Multi-worker processes end here, with everything written and flushed: at interpreter exit
    TensorFlow 2.21's coordination-service shutdown can leave a worker waiting forever (seen with two
    local workers, after success and after errors alike), which a scheduler would take for a hang."""
    if config.strategy != "multi-worker":
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def disk_full_message(err: Exception, config: TrainConfig, resume: str = "the same command") -> str:
    """What ran out of space, about how much a rerun needs, and what it will resume from."""
    from common.atomic import DiskFullError
    from training.rundir import RunDirectory

    run = RunDirectory(config.output_dir) if config.output_dir else None
    if not isinstance(err, DiskFullError):  # a write that failed mid-way (TensorFlow's name the file in the text)
        named = re.search(r"(/[^;\s]+)[;:] No space left on device", str(err))
        path = getattr(err, "filename", None) or (named and named.group(1)) or config.output_dir or "the run directory"
        err = DiskFullError(path, run.space_to_continue() if run else None)
    latest = run.latest_checkpoint() if run else None
    where = f"from its last checkpoint (step {latest[0]}), which is intact" if latest else "from the start"
    return f"{err} Then run {resume}: it resumes {where}."

if __name__ == "__main__":
    sys.exit(main())
