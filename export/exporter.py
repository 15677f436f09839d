"""Export orchestration: stage both artifacts, gate them on parity, then publish atomically.

    <out>/tfserving/<name>/<version>/   SavedModel + assets.extra/ (warmup, model card)
    <out>/onnx/<name>.onnx              ONNX model (+ <name>.model_card.json beside it)
    <out>/onnx-models/<name>/<version>/ the same ONNX model + card, versioned for serving.server
    <out>/export_report.json            the parity numbers
    <out>/model_card.json               the model card

A version is staged in `<out>/tfserving/.staging-*` (beside the base path, on the same filesystem)
and renamed into place only after every check passed: a model server polling the base path never
sees a half-written version, and a failed export leaves none behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras

from export import ExportError, ParityError
from export.model_card import build_model_card
from export.onnx_export import OPSET, write_onnx
from export.parity import TOLERANCE, check_parity
from export.savedmodel import op_set, write_savedmodel, write_warmup_file
from export.signature import GeneratorSpec
from common.atomic import write_json_atomic


@dataclass
class ExportResult:
    version_dir: Path
    onnx_path: Path
    report: dict
    card: dict


def load_generator(run_dir: Path) -> keras.Model:
    import training  # noqa: F401  (registers the package's Keras objects)

    path = run_dir / "generator.keras"
    if not run_dir.is_dir():
        raise ExportError(f"--run-dir {run_dir} does not exist; point it at a directory written by training.run.")
    if not path.is_file():
        raise ExportError(f"{run_dir} has no generator.keras: the run has not finished. Train it to the end "
                          "(or with --max-minutes) first.")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:
        raise ExportError(f"{path} cannot be loaded ({type(err).__name__}: {err}). It is corrupt or from an "
                          "incompatible version; re-run training to write it again.") from None


def versions_in(base: Path) -> list[int]:
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit()) if base.is_dir() else []


def choose_version(base: Path, requested: int | None) -> int:
    existing = versions_in(base)
    if requested is None:
        return (existing[-1] + 1) if existing else 1
    if requested <= 0:
        raise ExportError(f"--version must be a positive integer, got {requested}.")
    if requested in existing:
        raise ExportError(f"Version {requested} already exists in {base}; versions are immutable. "
                          f"Omit --version to publish {existing[-1] + 1}, or choose a new number.")
    return requested


def _training_facts(run_dir: Path) -> dict:
    def read(name):
        path = run_dir / name
        return json.loads(path.read_text()) if path.is_file() else None

    history = read("history.json") or []
    return {"run_dir": str(run_dir), "config": read("config.json"), "dataset": read("dataset.json"),
            "final_metrics": history[-1] if history else None}


def export_generator(run_dir: Path, output_dir: Path, model_name: str = "generator",
                     version: int | None = None, tolerance: float = TOLERANCE) -> ExportResult:
    """Export, check, publish. Raises ExportError (bad input) or ParityError (nothing published)."""
    run_dir, output_dir = Path(run_dir), Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ExportError(f"--output-dir {output_dir} is a file; choose a directory path.")
    if not model_name or not all(c.isalnum() or c in "-_." for c in model_name) or model_name.startswith("."):
        raise ExportError(f"--model-name {model_name!r} must be letters, digits, '-', '_' or '.', not starting with '.'.")
    generator = load_generator(run_dir)
    spec = GeneratorSpec.of(generator)
    base = output_dir / "tfserving" / model_name
    version = choose_version(base, version)
    (output_dir / "onnx").mkdir(parents=True, exist_ok=True)
    base.parent.mkdir(parents=True, exist_ok=True)

    staging = Path(tempfile.mkdtemp(prefix=f".staging-{model_name}-{version}-", dir=base.parent))
    onnx_tmp = output_dir / "onnx" / f".{model_name}.onnx.staging"
    try:
        stage = staging / "model"
        write_savedmodel(generator, spec, stage)
        write_warmup_file(spec, stage, model_name)
        training = _training_facts(run_dir)
        write_onnx(generator, spec, onnx_tmp, metadata={
            "model_name": model_name, "version": str(version), "latent_dim": str(spec.latent_dim),
            "num_classes": str(spec.num_classes or 0), "value_range": "[-1, 1]",
            "class_names": json.dumps((training.get("dataset") or {}).get("class_names"))})

        report = check_parity(generator, spec, stage, onnx_tmp, tolerance=tolerance)
        write_json_atomic(output_dir / "export_report.json",
                          {"model_name": model_name, "version": version, **report.to_dict()})
        if not report.passed:
            raise ParityError("Parity check failed, nothing was published:\n  " + "\n  ".join(report.failures))

        version_dir, onnx_path = base / str(version), output_dir / "onnx" / f"{model_name}.onnx"
        # Keyed by the paths the files will have once published, hashed where they are now.
        published = lambda path: str(path.relative_to(output_dir))  # noqa: E731
        artifacts = {published(version_dir / p.relative_to(stage)): p for p in sorted(stage.rglob("*")) if p.is_file()}
        artifacts[published(onnx_path)] = onnx_tmp
        card = build_model_card(model_name=model_name, version=version, spec=spec, training=training,
                                op_set=op_set(stage), onnx_opset=OPSET, artifacts=artifacts,
                                parity=report.to_dict())
        write_json_atomic(stage / "assets.extra" / "model_card.json", card)

        onnx_base = output_dir / "onnx-models" / model_name
        onnx_stage = staging / "onnx"
        onnx_stage.mkdir()
        shutil.copyfile(onnx_tmp, onnx_stage / "model.onnx")
        write_json_atomic(onnx_stage / "model_card.json", card)
        onnx_base.mkdir(parents=True, exist_ok=True)
        if (onnx_base / str(version)).exists():
            raise ExportError(f"{onnx_base / str(version)} already exists; choose another --version.")

        base.mkdir(exist_ok=True)
        os.rename(stage, version_dir)  # the atomic publish of the TF Serving version
        os.rename(onnx_stage, onnx_base / str(version))
        os.replace(onnx_tmp, onnx_path)
        write_json_atomic(output_dir / "onnx" / f"{model_name}.model_card.json", card)
        write_json_atomic(output_dir / "model_card.json", card)
        return ExportResult(version_dir, onnx_path, report.to_dict(), card)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        onnx_tmp.unlink(missing_ok=True)
