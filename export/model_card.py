"""`model_card.json`: what a deployer needs to know about an exported generator, in one file."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
from pathlib import Path

from common.atomic import sha256_of
from export.signature import OUTPUT_NAME, SIGNATURE_NAME, GeneratorSpec



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
    height, width, channels = spec.image_shape
    inputs = {"z": {"dtype": "float32", "shape": [-1, spec.latent_dim]}}
    if spec.num_classes:
        inputs["label"] = {"dtype": "int32", "shape": [-1], "range": [0, spec.num_classes - 1]}
    return {
        "model_name": model_name,
        "version": version,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "latent_dim": spec.latent_dim,
        "image_shape": [height, width, channels],
        "channels": channels,
        "value_range": [-1.0, 1.0],
        "conditional": bool(spec.num_classes),
        "num_classes": spec.num_classes,
        "class_names": (training.get("dataset") or {}).get("class_names"),
        "signature_name": SIGNATURE_NAME,
        "inputs": inputs,
        "outputs": {OUTPUT_NAME: {"dtype": "float32", "shape": [-1, height, width, channels]}},
        "training": training,
        "package_versions": package_versions(),
        "savedmodel_op_set": op_set,
        "onnx_opset": onnx_opset,
        "sha256": {name: sha256_of(path) for name, path in artifacts.items()},
        "parity": {"passed": parity["passed"], "tolerance": parity["tolerance"]},
        "variants": variants or {},
    }
