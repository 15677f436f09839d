"""The quality gate for ONNX variants: what a faster generator costs in FID, measured before publishing.

A variant cannot pass the float32 parity gate (int8 differs by ~1e-2, by design), so it is judged by
what users see instead: the FID of its samples against real images, next to the float32 model's FID
on the very same z (and labels), plus the largest pixel difference between the two. A variant whose
FID is more than `max_fid_increase` (a fraction: 0.1 = 10%) above float32's is rejected.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from common.signature import labels_in_turn, random_z

MIN_RELIABLE_SAMPLES = 2000
DEFAULT_SAMPLES = 2000
DEFAULT_MAX_FID_INCREASE = 0.10

# sample(z, labels) -> images in [-1, 1]; a scorer turns one into {"fid": ..., ...}.
Sample = Callable[[np.ndarray, np.ndarray | None], np.ndarray]
Scorer = Callable[[Sample], dict]


@dataclass
class VariantReport:
    variant: str
    fid: float
    fid_float32: float
    fid_increase: float  # (fid - fid_float32) / fid_float32
    max_fid_increase: float
    max_abs_diff: float  # largest |variant - float32| pixel difference, images in [-1, 1]
    num_samples: int
    reliable: bool
    passed: bool
    published: bool = False

    def to_dict(self) -> dict:
        """JSON-safe: a FID or |diff| that could not be measured (NaN pixels) is null."""
        return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in asdict(self).items()}

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (f"{self.variant}: FID {self.fid:.3f} vs float32 {self.fid_float32:.3f} "
                f"({self.fid_increase:+.1%}, limit +{self.max_fid_increase:.0%}), max |diff| {self.max_abs_diff:.3g}, "
                f"{self.num_samples} samples -> {verdict}")


def onnx_sampler(path: Path, check: bool = True) -> Sample:
    from serving.engine.onnx_generator import OnnxGenerator

    generator = OnnxGenerator(path, device="cpu")

    def sample(z, labels):
        images = generator.run({"z": z, **({"label": labels} if labels is not None else {})})
        if check and not np.all(np.isfinite(images)):  # e.g. a float16 overflow: no FID to speak of, the gate fails it
            raise FloatingPointError(f"{Path(path).name} produced NaN or infinite pixels")
        return images
    return sample


def max_abs_diff(a: Sample, b: Sample, latent_dim: int, num_classes: int | None, n: int = 256, seed: int = 7) -> float:
    z = random_z(n, latent_dim, seed)
    labels = labels_in_turn(n, num_classes) if num_classes else None
    return float(np.max(np.abs(a(z, labels) - b(z, labels))))


def gate_variants(fp32_path: Path, variant_paths: dict[str, Path], scorer: Scorer, num_samples: int,
                  latent_dim: int, num_classes: int | None,
                  max_fid_increase: float = DEFAULT_MAX_FID_INCREASE) -> dict[str, VariantReport]:
    """Score float32 and every variant with the same scorer (same z), and judge each variant."""
    reference = onnx_sampler(fp32_path)
    scored = scorer(reference)
    fid_float32, num_samples = float(scored["fid"]), int(scored.get("num_samples", num_samples))
    reliable = num_samples >= MIN_RELIABLE_SAMPLES
    if not reliable:
        print(f"warning: the variant quality gate uses {num_samples} samples (< {MIN_RELIABLE_SAMPLES}): its FID "
              "numbers are unreliable; fine for tests, never for a release.", file=sys.stderr)
    reports = {}
    for variant, path in variant_paths.items():
        sample = onnx_sampler(path)
        try:
            fid = float(scorer(sample)["fid"])
        except (FloatingPointError, np.linalg.LinAlgError) as err:
            print(f"warning: {variant} cannot be scored ({err}); it fails the gate.", file=sys.stderr)
            fid = float("inf")
        increase = (fid - fid_float32) / max(fid_float32, 1e-12)
        reports[variant] = VariantReport(
            variant=variant, fid=fid, fid_float32=fid_float32, fid_increase=increase,
            max_fid_increase=max_fid_increase, num_samples=num_samples, reliable=reliable,
            max_abs_diff=max_abs_diff(reference, onnx_sampler(path, check=False), latent_dim, num_classes),
            passed=bool(increase <= max_fid_increase))
    return reports


def run_scorer(run, image_shape: tuple[int, int, int], latent_dim: int, num_classes: int | None,
               num_samples: int, seed: int = 0) -> Scorer:
    """FID with the project's evaluator (metrics.evaluator) against the dataset of `run` (a
    `training.finished_run.FinishedRun`). The gate compares two models on the same z against the same
    images, so the training data serves as reference: the evaluator's memorisation warning does not
    apply to a difference."""
    from export import ExportError
    from metrics.evaluator import Evaluator
    from training.data import DataError, load_data
    from training.finished_run import NotARunError

    try:
        config = run.require_config("--variants (its FID is measured against the run's own images)")
    except NotARunError as err:
        raise ExportError(str(err)) from None
    try:
        real = load_data(config.dataset, config.data_dir, image_shape[0], image_shape[-1],
                         conditional=bool(num_classes), keep_labels=True)
    except DataError as err:
        raise ExportError(f"--variants cannot load the run's dataset to measure FID: {err}") from None
    evaluator = Evaluator(real.images, real.labels, num_samples=num_samples, seed=seed)
    return lambda sample: evaluator.evaluate(sample, latent_dim, num_classes)


def build_and_gate(run, spec, fp32_path: Path, staging: Path, variants: tuple[str, ...],
                   max_fid_increase: float, num_samples: int) -> tuple[dict[str, VariantReport], dict[str, Path]]:
    """Write each variant into `staging`, gate them all; returns the reports and the files that passed."""
    from export.variants import write_variant

    if not variants:
        return {}, {}
    paths = {variant: Path(staging) / f"model.{variant}.onnx" for variant in variants}
    for variant, path in paths.items():
        write_variant(variant, fp32_path, path, spec.latent_dim, spec.num_classes)
    scorer = run_scorer(run, spec.image_shape, spec.latent_dim, spec.num_classes, num_samples)
    reports = gate_variants(fp32_path, paths, scorer, num_samples, spec.latent_dim, spec.num_classes, max_fid_increase)
    for report in reports.values():
        report.published = report.passed
    return reports, {variant: path for variant, path in paths.items() if reports[variant].passed}
