"""`python -m export.generate`: a sample grid from an exported artifact, to see what you deploy.

    python -m export.generate --model exports/onnx/generator.onnx --num 64 --seed 0 --out grid.png
    python -m export.generate --model exports/tfserving/generator            # highest version
    python -m export.generate --model exports/tfserving/generator/3 --out v3.png

Class-conditional models draw one row per class. Exit 2 on a path that is not an artifact. An .onnx
model needs no TensorFlow: nothing here imports it until a SavedModel or .keras file is loaded.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def generate(model: str | Path, num: int, seed: int) -> tuple[np.ndarray, int]:
    """Images in [-1, 1] from an artifact, and the grid's row count (one per class when conditional)."""
    from common.grid import sample_inputs
    from export.artifacts import load_sampler

    sampler = load_sampler(model)
    inputs, rows = sample_inputs(sampler.latent_dim, num, sampler.num_classes, seed)
    z, labels = inputs if sampler.conditional else (inputs, None)
    return sampler.sample(z, labels), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="A .onnx file, a SavedModel version dir, or a TF Serving base path.")
    parser.add_argument("--num", type=int, default=64, help="Number of images (default: 64).")
    parser.add_argument("--seed", type=int, default=0, help="Noise seed (default: 0).")
    parser.add_argument("--out", default="grid.png", help="Output PNG (default: grid.png).")
    args = parser.parse_args(argv)
    if args.num <= 0:
        parser.error("--num must be positive")
    from export.artifacts import ArtifactError

    try:
        images, rows = generate(args.model, args.num, args.seed)
    except ArtifactError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from common.grid import save_grid

    save_grid(images, args.out, rows=rows)
    print(f"Wrote {len(images)} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
