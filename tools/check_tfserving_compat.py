"""Prove an export loads in TF Serving's TensorFlow release and computes what the ONNX model computes.

    nice -n 10 python tools/check_tfserving_compat.py --export-dir exports [--tf-version 2.20.0]

Builds a throwaway venv with `tensorflow==<tf-version>` and `tensorflow-serving-api==<tf-version>`
(about 600 MB from PyPI; `--venv DIR` keeps and reuses one), then runs tools/tfserving_load_probe.py
in it: `serve` tag, `serving_default` signature_def, a v1 session run by tensor names, and every
warmup record parsed and replayed, as TF Serving does at load. The outputs are compared with
onnxruntime on the published ONNX model of the same version (and with the Keras generator when
`--run-dir` is given). Not part of CI: it needs the network and a few minutes.
Exit 0 when every output is within --tolerance, 1 when not, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def build_venv(path: Path, tf_version: str) -> Path:
    python = path / "bin" / "python"
    if not python.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    f"tensorflow=={tf_version}", f"tensorflow-serving-api=={tf_version}"], check=True)
    return python


def onnx_images(onnx_path: Path, named: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(["images"], named)[0]


def keras_images(run_dir: Path, named: dict[str, np.ndarray]) -> np.ndarray:
    import keras

    import training.models  # noqa: F401  (registers the custom layers load_model needs)

    generator = keras.models.load_model(run_dir / "generator.keras", compile=False)
    args = [named["z"], named["label"]] if "label" in named else named["z"]
    return keras.ops.convert_to_numpy(generator(args, training=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/check_tfserving_compat.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--export-dir", required=True, help="Export root written by python -m export.run.")
    parser.add_argument("--model-name", default="generator")
    parser.add_argument("--version", type=int, help="Version to check (default: the highest).")
    parser.add_argument("--tf-version", default="2.20.0", help="TensorFlow of the TF Serving image (default: 2.20.0).")
    parser.add_argument("--venv", help="Keep the venv here and reuse it on the next run.")
    parser.add_argument("--run-dir", help="Also compare with this run's generator.keras.")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args(argv)

    export = Path(args.export_dir)
    base = export / "tfserving" / args.model_name
    versions = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit()) if base.is_dir() else []
    version = args.version if args.version is not None else (versions[-1] if versions else None)
    if version not in versions:
        print(f"error: {base} has no version {version} (versions: {versions}); run python -m export.run first.",
              file=sys.stderr)
        return 2
    version_dir = base / str(version)
    onnx_path = export / "onnx-models" / args.model_name / str(version) / "model.onnx"
    card = json.loads((version_dir / "assets.extra" / "model_card.json").read_text())

    rng = np.random.default_rng(0)
    given = {"z": rng.standard_normal((5, card["latent_dim"])).astype(np.float32)}
    if card["num_classes"]:
        given["label"] = rng.integers(0, card["num_classes"], size=5).astype(np.int32)

    with tempfile.TemporaryDirectory(prefix="tfs-compat-") as tmp:
        tmp = Path(tmp)
        print(f"building a venv with tensorflow=={args.tf_version} ...", flush=True)
        python = build_venv(Path(args.venv) if args.venv else tmp / "venv", args.tf_version)
        np.savez(tmp / "in.npz", **given)
        probe = subprocess.run([str(python), str(HERE / "tfserving_load_probe.py"), str(version_dir),
                                str(tmp / "in.npz"), str(tmp / "out.npz")], capture_output=True, text=True,
                               env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"})
        if probe.returncode != 0:
            print(f"FAILED: TensorFlow {args.tf_version} could not load {version_dir} as TF Serving does:\n"
                  f"{probe.stderr[-3000:]}", file=sys.stderr)
            return 1
        facts = json.loads(probe.stdout.strip().splitlines()[-1])
        out = dict(np.load(tmp / "out.npz"))

    print(f"loaded {version_dir} with tensorflow {facts['tensorflow']}: signature serving_default "
          f"({facts['method_name']}) inputs {facts['inputs']} outputs {facts['outputs']}; "
          f"{facts['warmup_records']} warmup records parsed and replayed")
    cases = {"given": given}
    for i in range(facts["warmup_records"]):
        cases[f"warmup{i}"] = {k.split("/")[1]: v for k, v in out.items() if k.startswith(f"warmup{i}/") and
                               not k.endswith("/images")}
    worst = 0.0
    for case, named in cases.items():
        tfs = out[f"{case}/images"]
        refs = {"onnxruntime": onnx_images(onnx_path, named)}
        if args.run_dir:
            refs["keras"] = keras_images(Path(args.run_dir), named)
        for name, ref in refs.items():
            diff = float(np.max(np.abs(tfs - ref))) if tfs.shape == ref.shape else float("inf")
            worst = max(worst, diff)
            print(f"  {case:8s} batch {len(named['z']):3d}: tf {facts['tensorflow']} session vs {name}: "
                  f"shape {list(tfs.shape)}, max |diff| {diff:.2e}")
    ok = worst <= args.tolerance
    print(f"{'PASSED' if ok else 'FAILED'}: worst max |diff| {worst:.2e} (tolerance {args.tolerance:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
