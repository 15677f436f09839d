"""`python -m export.run`: a trained run directory -> TF Serving SavedModel + ONNX, parity-checked.

Exit codes: 0 published; 1 parity failed (nothing published); 2 bad input (nothing published).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from export import ExportError, ParityError  # noqa: E402
from export.parity import TOLERANCE  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.run",
        description="Export a trained generator for TensorFlow Serving and onnxruntime. Both artifacts "
                    "must match the Keras generator (parity gate) before anything is published.")
    parser.add_argument("--run-dir", required=True, help="Run directory written by training.run.")
    parser.add_argument("--output-dir", default="exports", help="Export root (default: exports).")
    parser.add_argument("--model-name", default="generator", help="Model name in TF Serving and file names (default: generator).")
    parser.add_argument("--version", type=int, default=None,
                        help="TF Serving version number (default: one above the highest existing).")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help=f"Max |difference| allowed between artifacts and Keras (default: {TOLERANCE:g}).")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from export.exporter import export_generator

    try:
        result = export_generator(args.run_dir, args.output_dir, args.model_name, args.version, args.tolerance)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ParityError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    worst = max(max(d.values()) for d in result.report["max_abs_diff"].values())
    print(f"Published {result.version_dir} and {result.onnx_path} "
          f"(parity passed: max |diff| {worst:.2e} <= {args.tolerance:g}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
