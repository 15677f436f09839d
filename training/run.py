"""`python -m training.run`: parse, train, report. Exit 0 on success, 2 on bad input."""

from __future__ import annotations

import sys

from training.cli import parse_config
from training.config import ConfigError
from training.data import DataError
from training.guards import TrainingDiverged


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(argv)
        from training.trainer import train

        result = train(config)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted; rerun the same command to resume from the last checkpoint.", file=sys.stderr)
        return 130
    if result.preempted:
        print(f"preempted: checkpoint written at step {result.global_step}/{result.total_steps}; "
              "rerun the same command to resume")
        return 0
    status = "stopped at the time budget" if result.stopped_early else "done"
    print(f"{status}: {result.global_step}/{result.total_steps} steps in {result.wall_seconds / 60:.1f} min "
          f"(generator weights sha256 {result.generator_digest[:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
