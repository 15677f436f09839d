"""Inference: the TensorFlow SavedModel vs onnxruntime float32 vs its int8 and fp16 variants.

    python -m benchmarks.inference [--run-dir runs/<run>] [--calls 30] [--variant-samples 2000]

The generator is exported with `export.run --variants int8,fp16`, whose quality gate measures each
variant's FID against float32's on the same z; that FID cost is printed beside its speed. Give a
trained `--run-dir` for FID costs that mean something; without one the benchmark times the default
architecture untrained (speed does not depend on training) and its FID column is only a smoke check.
Batch sizes 1, 16, 64, 256; backends interleaved per batch size in three rounds; p50/p99 per call,
images/s and the ratio to the SavedModel. fp16 is timed where it runs: on CPU it is correct but
slow (it is meant for CUDA). Target: the fastest variant that passes a 10% gate is >= 2x the
SavedModel at batch 64 and 256.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import save, table
from common.quiet import quiet_tensorflow

BATCHES = (1, 16, 64, 256)
TARGET_BATCHES = (64, 256)


def latencies(fn, inputs, calls: int) -> list[float]:
    fn(inputs)  # warm-up
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn(inputs)
        out.append(time.perf_counter() - start)
    return out


def prepare(run_dir: str | None, tmp: Path, variant_samples: int):
    """Export the run's generator (or the default architecture, untrained) with every variant, the
    gate measuring but not rejecting; returns the export result and whether the model is trained."""
    from export.exporter import export_generator

    trained = run_dir is not None
    if not trained:
        import keras

        from training.models import build_generator

        keras.utils.set_random_seed(0)
        run_dir = tmp / "run"
        run_dir.mkdir()
        build_generator().save(run_dir / "generator.keras")  # the default architecture
        (run_dir / "config.json").write_text(json.dumps({"dataset": "mnist-sample", "data_dir": None, "width": 32}))
    result = export_generator(Path(run_dir), tmp / "exports", variants=("int8", "fp16"),
                              max_fid_increase=float("inf"), variant_samples=variant_samples)
    return result, trained, Path(run_dir)


def unfolded_onnx(run_dir: Path, path: Path) -> Path:
    """The same generator as tf2onnx converts it, without `export.onnx_graph`'s folding: what it buys."""
    from export.exporter import load_generator, open_run
    from export.onnx_export import write_onnx
    from export.signature import GeneratorSpec
    from training.models import for_export

    run = open_run(run_dir)
    generator = for_export(load_generator(run))
    write_onnx(generator, GeneratorSpec.of(generator), path, {}, fold=False)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default=None, help="A trained run (default: the default architecture, untrained).")
    parser.add_argument("--calls", type=int, default=30, help="Timed calls per backend and batch size.")
    parser.add_argument("--variant-samples", type=int, default=2000, help="Samples per FID in the variant gate.")
    args = parser.parse_args(argv)
    quiet_tensorflow()  # after parsing, so --help answers without loading TensorFlow

    import onnxruntime as ort
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        result, trained, run_dir = prepare(args.run_dir, Path(tmp), args.variant_samples)
        signature = tf.saved_model.load(str(result.version_dir)).signatures["serving_default"]
        latent, num_classes = result.card["latent_dim"], result.card["num_classes"]
        print(f"architecture: {(result.card['training'].get('config') or {}).get('arch', 'default')} "
              f"({'trained' if trained else 'untrained'}), {result.card['image_shape']}, latent {latent}")

        def ort_backend(path: Path):
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            return lambda feed: session.run(["images"], feed)[0]

        paths = {"float32": result.onnx_path, "float32, not folded": unfolded_onnx(run_dir, Path(tmp) / "unfolded.onnx")}
        paths.update({v: result.onnx_path.with_name(f"{result.onnx_path.stem}.{v}.onnx") for v in result.variants})
        backends = {"tensorflow (SavedModel)": lambda feed: signature(**{k: tf.constant(v) for k, v in feed.items()})}
        backends.update({f"onnxruntime {name}": ort_backend(path) for name, path in paths.items()})
        quality = {f"onnxruntime {v}": r for v, r in result.variants.items()}
        rows, raw = [], {}
        rng = np.random.default_rng(0)
        for batch in BATCHES:
            feed = {"z": rng.standard_normal((batch, latent)).astype(np.float32)}
            if num_classes:
                feed["label"] = (np.arange(batch) % num_classes).astype(np.int32)
            measured = {name: [] for name in backends}
            for _ in range(3):  # interleave backends in three rounds of blocks
                for name, fn in backends.items():
                    time.sleep(0.2)  # let the other runtime's spin-waiting threads go idle
                    measured[name] += latencies(fn, feed, max(3, args.calls // 3))
            tf_p50 = float(np.median(measured["tensorflow (SavedModel)"]))
            for name, values in measured.items():
                p50, p99 = float(np.median(values)), float(np.percentile(values, 99))
                gate = quality.get(name)
                fid = f"{gate.fid:.2f} ({gate.fid_increase:+.1%})" if gate else (
                    f"{next(iter(quality.values())).fid_float32:.2f}" if "float32" in name and quality else "")
                passes = "" if not gate else ("yes" if gate.fid_increase <= 0.10 else "no")
                rows.append([batch, name, p50 * 1e3, p99 * 1e3, batch / p50, tf_p50 / p50, fid, passes])
            raw[batch] = measured
    print(table(rows, ["batch", "backend", "p50 ms", "p99 ms", "images/s", "speed vs TF", "FID (cost)", "10% gate"]))
    published = [r[1] for r in rows if r[7] == "yes"] + ["onnxruntime float32"]
    fastest = {b: max((r for r in rows if r[0] == b and r[1] in published), key=lambda r: r[5]) for b in TARGET_BATCHES}
    met = all(r[5] >= 2 for r in fastest.values())
    print("target: fastest published variant >= 2x the SavedModel at batch 64 and 256: "
          + ", ".join(f"batch {b}: {r[1]} {r[5]:.2f}x" for b, r in fastest.items()) + f" -> {'met' if met else 'MISSED'}")
    if not trained:
        print("note: untrained generator; its FID cost only shows the gate runs. Pass --run-dir for real costs.")
    path = save("inference", {"args": vars(args), "trained": trained, "rows": rows,
                              "gate": {v: r.to_dict() for v, r in result.variants.items()},
                              "latencies_s": {str(k): v for k, v in raw.items()}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
