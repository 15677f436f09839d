"""Export orchestration: stage both artifacts, gate them on parity, then publish them together.

    <out>/tfserving/<name>/<version>/   SavedModel + assets.extra/ (warmup, model card)
    <out>/onnx-models/<name>/<version>/ the same version's ONNX model + card, for serving.server
    <out>/onnx/<name>.onnx              a copy of the newest version's ONNX model (+ its card beside it)
    <out>/export_report.json            the parity numbers of the newest published version
    <out>/last_failed_export.json       the parity numbers of the last export that failed its gate
    <out>/model_card.json               the newest version's model card

Each export claims its version and builds it in a locked staging directory beside the base path
(export.publish), so concurrent exports into one --output-dir get distinct versions, a model server
polling the base path never sees a half-written version, and a failed export leaves none behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import keras

from common.atomic import DiskFullError, is_disk_full, write_json_atomic
from export import ExportError, ParityError
from export.model_card import build_model_card
from export.onnx_export import OPSET, write_onnx
from export.parity import TOLERANCE, check_parity
from export.savedmodel import op_set, write_savedmodel, write_warmup_file
from export.variant_gate import DEFAULT_MAX_FID_INCREASE, DEFAULT_SAMPLES, build_and_gate
from serving.engine.onnx_generator import variant_file
from export.publish import ExportRoot
from export.signature import GeneratorSpec
from training.finished_run import FinishedRun, NotARunError
from training.models import for_export


@dataclass
class ExportResult:
    version_dir: Path
    onnx_path: Path
    report: dict
    card: dict
    variants: dict = field(default_factory=dict)  # variant -> VariantReport (published or not)


def open_run(run_dir: str | Path) -> FinishedRun:
    """The run to export, read-only (`training.finished_run`); ExportError when it is not a finished run."""
    try:
        return FinishedRun.open(run_dir)
    except NotARunError as err:
        raise ExportError(str(err)) from None


def load_generator(run: FinishedRun | str | Path) -> keras.Model:
    import training.models  # noqa: F401  (registers the custom layers load_model needs)

    path = (run if isinstance(run, FinishedRun) else open_run(run)).generator_path
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:
        raise ExportError(f"{path} cannot be loaded ({type(err).__name__}: {err}). It is corrupt or from an "
                          "incompatible version; re-run training to write it again.") from None


def _training_facts(run: FinishedRun) -> dict:
    return {"run_dir": str(run.root), "config": run.config and run.config.to_dict(), "dataset": run.dataset,
            "final_metrics": run.final_metrics}


def needed_bytes(generator: keras.Model) -> int:
    """A generous estimate of the disk an export takes: the weights thrice (SavedModel, ONNX, ONNX
    copy) plus graphs, warmup records and cards."""
    return 3 * 4 * int(generator.count_params()) + (2 << 20)


def export_generator(run_dir: Path, output_dir: Path, model_name: str = "generator",
                     version: int | None = None, tolerance: float = TOLERANCE, variants: tuple[str, ...] = (),
                     max_fid_increase: float = DEFAULT_MAX_FID_INCREASE,
                     variant_samples: int = DEFAULT_SAMPLES) -> ExportResult:
    """Export, check, publish. Raises ExportError (bad input), ParityError or DiskFullError; on any
    of them nothing is published and nothing staged is left."""
    run_dir, output_dir = Path(run_dir), Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ExportError(f"--output-dir {output_dir} is a file; choose a directory path.")
    if not model_name or not all(c.isalnum() or c in "-_." for c in model_name) or model_name.startswith("."):
        raise ExportError(f"--model-name {model_name!r} must be letters, digits, '-', '_' or '.', not starting with '.'.")
    run = open_run(run_dir)
    generator = for_export(load_generator(run))
    spec = GeneratorSpec.of(generator)
    root = ExportRoot(output_dir, model_name)
    try:
        return _export(generator, spec, run, root, version, tolerance, tuple(variants), max_fid_increase,
                       variant_samples)
    except (ExportError, ParityError):
        raise
    except Exception as err:
        if is_disk_full(err):
            raise DiskFullError(output_dir, needed_bytes(generator)) from None
        raise


def _export(generator, spec, run: FinishedRun, root: ExportRoot, version: int | None, tolerance: float,
            variants: tuple[str, ...], max_fid_increase: float, variant_samples: int) -> ExportResult:
    (root.out / "onnx").mkdir(parents=True, exist_ok=True)
    facts = _training_facts(run)
    with root.claim(version) as staged:
        version, stage, name = staged.version, staged.savedmodel, root.name
        write_savedmodel(generator, spec, stage)
        write_warmup_file(spec, stage, name)
        staged.onnx_dir.mkdir()
        write_onnx(generator, spec, staged.onnx, metadata={
            "model_name": name, "version": str(version), "latent_dim": str(spec.latent_dim),
            "num_classes": str(spec.num_classes or 0), "value_range": "[-1, 1]",
            "class_names": json.dumps((facts.get("dataset") or {}).get("class_names"))})

        report = {"version": version, **check_parity(generator, spec, stage, staged.onnx, tolerance=tolerance).to_dict()}
        if not report["passed"]:
            root.write_failure(report)
            raise ParityError(f"Parity check failed, nothing was published (numbers in {root.failure_path}):\n  "
                          + "\n  ".join(report["failures"]))
        # Variants are built and judged beside the staged version; only those that pass go with it.
        variant_reports, passed = build_and_gate(run, spec, staged.onnx, staged.root, variants,
                                                 max_fid_increase, variant_samples)
        for variant, path in passed.items():
            path.rename(staged.onnx_dir / path.name)

        # Keyed by the paths the files will have once published, hashed where they are now.
        published = lambda path: str(path.relative_to(root.out))  # noqa: E731
        version_dir, onnx_dir = root.version_dir(version), root.onnx_version_dir(version)
        artifacts = {published(version_dir / p.relative_to(stage)): p for p in sorted(stage.rglob("*")) if p.is_file()}
        artifacts[published(onnx_dir / "model.onnx")] = staged.onnx
        artifacts[published(root.latest_onnx)] = staged.onnx  # the copy made when this version is the newest
        for variant in passed:
            staged_variant = staged.onnx_dir / f"model.{variant}.onnx"
            artifacts[published(onnx_dir / staged_variant.name)] = staged_variant
            artifacts[published(variant_file(root.latest_onnx, variant))] = staged_variant
        card = build_model_card(model_name=name, version=version, spec=spec, training=facts,
                                op_set=op_set(stage), onnx_opset=OPSET, artifacts=artifacts, parity=report,
                                variants={v: r.to_dict() for v, r in variant_reports.items()})
        write_json_atomic(stage / "assets.extra" / "model_card.json", card)
        write_json_atomic(staged.onnx_dir / "model_card.json", card)
        root.publish(staged, card, report, variants=tuple(passed))
        return ExportResult(version_dir, root.latest_onnx, report, card, variant_reports)
