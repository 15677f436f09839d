"""The QualityGate component: bless the trained generator only if its FID against held-out images passes.

Like `export/variant_gate.py`, it judges what users see: samples of the exported ONNX generator (the
file our server will serve) scored with the project's evaluator (`metrics.evaluator`: domain-classifier
FID, the classifier trained on the train split) against the ExampleGen's held-out `eval` split, which
training never saw. The blessing carries the numbers; Pusher pushes only a blessed model.

    blessed  <=>  FID <= max_fid  and  the FID is finite

An absolute limit, not a comparison with a previous model: a pipeline's first run has no baseline,
and the real-vs-real floor (printed and recorded beside the FID) says how low FID can go on this data.
"""

# No `from __future__ import annotations`: TFX reads the component's type hints as objects.

import json
import math
from pathlib import Path

from tfx.v1.dsl.components import InputArtifact, OutputArtifact, Parameter, component
from tfx.v1.types.standard_artifacts import Examples, Model, ModelBlessing

from pipelines.tfx.image_examples import read_split, split_files

BLESSED_KEY = "blessed"  # the custom property Pusher reads (what TFX's Evaluator and InfraValidator set)


def judge(fid: float, max_fid: float) -> bool:
    return math.isfinite(fid) and fid <= max_fid


def score(model_dir: Path, examples_uri: str, num_samples: int, seed: int = 0) -> dict:
    """FID (and the evaluator's other numbers) of `model_dir/model.onnx` against the eval split."""
    from export.artifacts import load_sampler
    from metrics.evaluator import Evaluator

    sampler = load_sampler(model_dir / "model.onnx")
    shape = sampler.image_shape  # real images shaped to what the generator draws, as training shaped them
    train_images, train_labels, _ = read_split(split_files(examples_uri, "train"), shape)
    held_out, held_out_labels, _ = read_split(split_files(examples_uri, "eval"), shape)
    evaluator = Evaluator(train_images, train_labels, reference_images=held_out, reference_labels=held_out_labels,
                          num_samples=num_samples, seed=seed)
    result = evaluator.evaluate(sampler.sample, sampler.latent_dim, sampler.num_classes)
    return {"fid": float(result["fid"]), "fid_real_vs_real": float(result["fid_real_vs_real"]),
            "num_samples": int(result.get("num_samples", num_samples)), "num_reference": len(held_out),
            "warnings": list(result.get("warnings", []))}


@component
def QualityGate(model: InputArtifact[Model], examples: InputArtifact[Examples],
                blessing: OutputArtifact[ModelBlessing], max_fid: Parameter[float] = 40.0,
                num_samples: Parameter[int] = 2000) -> None:
    """Score the Trainer's ONNX generator against the held-out split and bless it only if it passes."""

    model_dir = Path(model.uri) / "Format-Serving"
    report = score(model_dir, examples.uri, num_samples)
    blessed = judge(report["fid"], max_fid)
    report.update(max_fid=max_fid, blessed=blessed)
    Path(blessing.uri).mkdir(parents=True, exist_ok=True)
    (Path(blessing.uri) / ("BLESSED" if blessed else "NOT_BLESSED")).write_text("")
    (Path(blessing.uri) / "quality_gate.json").write_text(json.dumps(report, indent=2) + "\n")
    blessing.set_int_custom_property(BLESSED_KEY, int(blessed))
    blessing.set_float_custom_property("fid", report["fid"] if math.isfinite(report["fid"]) else -1.0)
    blessing.set_float_custom_property("fid_real_vs_real", report["fid_real_vs_real"])
    blessing.set_float_custom_property("max_fid", max_fid)
    verdict = "BLESSED" if blessed else "NOT blessed (Pusher will push nothing)"
    print(f"quality gate: FID {report['fid']:.3f} (real-vs-real floor {report['fid_real_vs_real']:.3f}, "
          f"{report['num_samples']} samples vs {report['num_reference']} held-out images), limit {max_fid:g}: {verdict}")
