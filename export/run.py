"""`python -m export.run`: a trained run directory -> TF Serving SavedModel + ONNX, parity-checked.

Exit codes: 0 published; 1 parity failed (nothing published); 2 bad input (nothing published);
3 published, but a requested --variants file failed its quality gate and was left out;
4 the disk filled up (nothing published, staging removed; the message names the path and the space needed).
"""

from __future__ import annotations

import argparse
import sys

from common.atomic import DiskFullError
from common.quiet import quiet_tensorflow
from export import PARITY_TOLERANCE as TOLERANCE, ExportError, ParityError
from export.variant_gate import DEFAULT_MAX_FID_INCREASE, DEFAULT_SAMPLES
from export.variants import parse_variants


EXIT_DISK_FULL = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.run", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: " + __doc__.split("Exit codes: ", 1)[1].strip(),
        description="Export a trained generator for TensorFlow Serving and onnxruntime. Both artifacts "
                    "must match the Keras generator (parity gate) before anything is published.")
    parser.add_argument("--run-dir", help="Run directory written by training.run (default: the run under runs/ "
                        "that finished last, named on the first line).")
    parser.add_argument("--output-dir", default="exports", help="Export root (default: exports).")
    parser.add_argument("--model-name", default="generator", help="Model name in TF Serving and file names (default: generator).")
    parser.add_argument("--version", type=int, default=None,
                        help="TF Serving version number (default: one above the highest existing).")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help=f"Max |difference| allowed between artifacts and Keras (default: {TOLERANCE:g}).")
    parser.add_argument("--variants", default="",
                        help="Faster ONNX variants to publish beside float32, e.g. int8,fp16 (default: none). "
                             "Each is published only if its FID passes --max-fid-increase.")
    parser.add_argument("--max-fid-increase", type=float, default=DEFAULT_MAX_FID_INCREASE,
                        help=f"Largest FID increase a variant may cost over float32, as a fraction "
                             f"(default: {DEFAULT_MAX_FID_INCREASE:g} = {DEFAULT_MAX_FID_INCREASE * 100:.0f}%%).")
    parser.add_argument("--variant-samples", type=int, default=DEFAULT_SAMPLES,
                        help=f"Samples per FID in the variant gate (default: {DEFAULT_SAMPLES}; fewer is unreliable).")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.run_dir is None:
        from training.rundir import newest_finished_run

        newest = newest_finished_run("runs")
        if newest is None:
            print("error: no --run-dir given and no finished run under runs/ (one holding generator.keras); "
                  "train one with python -m training.run, or give --run-dir", file=sys.stderr)
            return 2
        args.run_dir = str(newest)
        print(f"exporting {newest}: the run under runs/ that finished last (--run-dir picks another)", flush=True)
    quiet_tensorflow()  # parse first: --help and flag errors answer without loading TensorFlow
    from export.exporter import export_generator

    try:
        variants = parse_variants(args.variants)
        result = export_generator(args.run_dir, args.output_dir, args.model_name, args.version, args.tolerance,
                                  variants, args.max_fid_increase, args.variant_samples)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ParityError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except DiskFullError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_DISK_FULL
    worst = max(max(d.values()) for d in result.report["max_abs_diff"].values())
    print(f"Published {result.version_dir} and {result.onnx_path} "
          f"(parity passed: max |diff| {worst:.2e} <= {args.tolerance:g}).")
    for report in result.variants.values():
        path = result.onnx_path.with_name(f"{args.model_name}.{report.variant}.onnx")
        print(f"Variant {report.summary()}" + (f": published {path}" if report.published else
              ": NOT published (raise --max-fid-increase only if that quality cost is acceptable)"))
    return 3 if any(not r.published for r in result.variants.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
