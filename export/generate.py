"""`python -m export.generate`: a sample grid from an exported artifact, to see what you deploy.

    python -m export.generate --model exports/onnx/generator.onnx --num 64 --seed 0 --out grid.png
    python -m export.generate --model exports/tfserving/generator            # highest version
    python -m export.generate --model exports/tfserving/generator/3 --out v3.png

Class-conditional models draw one row per class. Exit 2 on a path that is not an artifact.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class ArtifactError(ValueError):
    pass


def _onnx_runner(path: Path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    latent_dim = int(session.get_inputs()[0].shape[1])
    num_classes = int(meta.get("num_classes", "0")) or None
    return (lambda inputs: session.run(["images"], inputs)[0]), latent_dim, num_classes


def _savedmodel_runner(path: Path):
    import tensorflow as tf

    if not (path / "saved_model.pb").is_file():
        versions = sorted(int(p.name) for p in path.iterdir() if p.name.isdigit()) if path.is_dir() else []
        if not versions:
            raise ArtifactError(f"{path} is neither a SavedModel nor a base path with numbered versions.")
        path = path / str(versions[-1])
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    latent_dim = int(specs["z"].shape[1])
    card_path = path / "assets.extra" / "model_card.json"
    num_classes = json.loads(card_path.read_text()).get("num_classes") if card_path.is_file() else None
    if "label" in specs and not num_classes:
        raise ArtifactError(f"{path} is class-conditional but has no assets.extra/model_card.json to give its classes.")
    return (lambda inputs: fn(**{k: tf.constant(v) for k, v in inputs.items()})["images"].numpy()), latent_dim, num_classes


def generate(model: str | Path, num: int, seed: int) -> tuple[np.ndarray, int | None]:
    """Images in [-1, 1] from an artifact, and the grid's row count (classes, when conditional)."""
    path = Path(model)
    if not path.exists():
        raise ArtifactError(f"--model {path} does not exist.")
    run, latent_dim, num_classes = _onnx_runner(path) if path.suffix == ".onnx" else _savedmodel_runner(path)
    rng = np.random.default_rng(seed)
    if num_classes:
        per_class = max(1, -(-num // num_classes))
        labels = np.repeat(np.arange(num_classes, dtype=np.int32), per_class)
        z = rng.standard_normal((len(labels), latent_dim)).astype(np.float32)
        return run({"z": z, "label": labels}), num_classes
    return run({"z": rng.standard_normal((num, latent_dim)).astype(np.float32)}), None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="A .onnx file, a SavedModel version dir, or a TF Serving base path.")
    parser.add_argument("--num", type=int, default=64, help="Number of images (default: 64).")
    parser.add_argument("--seed", type=int, default=0, help="Noise seed (default: 0).")
    parser.add_argument("--out", default="grid.png", help="Output PNG (default: grid.png).")
    args = parser.parse_args(argv)
    if args.num <= 0:
        parser.error("--num must be positive")
    try:
        images, rows = generate(args.model, args.num, args.seed)
    except ArtifactError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from training.grid import save_grid

    save_grid(images, args.out, rows=rows)
    print(f"Wrote {len(images)} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
