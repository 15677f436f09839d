"""`model_card.json`: what a deployer needs to know about an exported generator, in one file."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
from pathlib import Path

from common.atomic import sha256_of
from export.signature import SIGNATURE_NAME, GeneratorSpec



def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "onnxconverter-common",
                    "tensorflow-serving-api"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def build_model_card(*, model_name: str, version: int, spec: GeneratorSpec, training: dict,
                     op_set: list[str], onnx_opset: int, artifacts: dict[str, Path], parity: dict,
                     variants: dict | None = None) -> dict:
    """`artifacts` maps each artifact's published path (relative to the export root) to the file;
    `variants` holds each ONNX variant's quality-gate numbers, published or not."""
    return {
        "model_name": model_name,
        "version": version,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **spec.card_entries(),  # latent_dim, image_shape, channels, value_range, conditional, num_classes, inputs, outputs
        "class_names": (training.get("dataset") or {}).get("class_names"),
        "signature_name": SIGNATURE_NAME,
        "training": training,
        "package_versions": package_versions(),
        "savedmodel_op_set": op_set,
        "onnx_opset": onnx_opset,
        "sha256": {name: sha256_of(path) for name, path in artifacts.items()},
        "parity": {"passed": parity["passed"], "tolerance": parity["tolerance"]},
        "variants": variants or {},
    }
