"""Inference: the Keras generator vs the SavedModel in TensorFlow vs the ONNX model in onnxruntime.

    python -m benchmarks.inference [--run-dir runs/<run>] [--calls 30]

Without --run-dir it builds the default architecture (width 32, latent 64, 28x28x1; speed does not
depend on training) and exports it with export.run. Batch sizes 1, 16, 64, 256; the backends run
interleaved per batch size; latency p50/p99 per call and images/s; ratios to TensorFlow (the
SavedModel). onnxruntime's session options are swept first (threads, graph optimisation) and the
best setting is used; the sweep is printed. Target: onnxruntime >= 3x TensorFlow at batch 1 and
not slower at any batch size.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import save, table  # noqa: E402

BATCHES = (1, 16, 64, 256)


def latencies(fn, inputs, calls: int) -> list[float]:
    fn(inputs)  # warm-up
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn(inputs)
        out.append(time.perf_counter() - start)
    return out


def prepare(run_dir: str | None, tmp: Path) -> tuple[Path, Path, Path]:
    """(run dir, SavedModel version dir, ONNX path), exporting the run's generator into `tmp`."""
    from export.exporter import export_generator

    if run_dir is None:
        import keras

        from training.models import build_generator

        keras.utils.set_random_seed(0)
        run_dir = tmp / "run"
        run_dir.mkdir()
        build_generator(28, 1, 64, 32).save(run_dir / "generator.keras")
    result = export_generator(Path(run_dir), tmp / "exports")
    return Path(run_dir), result.version_dir, result.onnx_path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--calls", type=int, default=45, help="Timed calls per backend and batch size.")
    args = parser.parse_args(argv)

    import keras
    import onnxruntime as ort
    import tensorflow as tf

    import training  # noqa: F401

    with tempfile.TemporaryDirectory() as tmp:
        run_dir, version_dir, onnx_path = prepare(args.run_dir, Path(tmp))
        generator = keras.models.load_model(run_dir / "generator.keras")
        signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
        latent = int(generator.inputs[0].shape[-1])
        rng = np.random.default_rng(0)

        def ort_session(threads: int, level: str):
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
            session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
            return lambda z: session.run(["images"], {"z": z})[0]

        # Sweep session options on batch 1 and 64; keep the setting with the best geometric mean.
        sweep = []
        for threads in (1, 2):
            for level in ("ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"):
                fn = ort_session(threads, level)
                p50 = [float(np.median(latencies(fn, rng.standard_normal((b, latent)).astype(np.float32), 20)))
                       for b in (1, 64)]
                sweep.append([threads, level, p50[0] * 1e3, p50[1] * 1e3, float(np.sqrt(p50[0] * p50[1]))])
        best = min(sweep, key=lambda r: r[-1])
        print("onnxruntime session options tried (p50 ms):")
        print(table([r[:4] for r in sweep], ["intra-op threads", "graph optimisation", "batch 1", "batch 64"]))
        print(f"using intra_op_num_threads={best[0]}, {best[1]}\n")

        backends = {
            "keras (predict_on_batch)": lambda z: generator.predict_on_batch(z),
            "keras (direct call)": lambda z: generator(z, training=False),
            "tensorflow (SavedModel)": lambda z: signature(z=tf.constant(z))["images"],
            "onnxruntime": ort_session(best[0], best[1]),
        }
        rows, raw = [], {}
        for batch in BATCHES:
            z = rng.standard_normal((batch, latent)).astype(np.float32)
            measured = {name: [] for name in backends}
            for _ in range(3):  # interleave backends in three rounds of blocks
                for name, fn in backends.items():
                    time.sleep(0.2)  # let the other runtime's spin-waiting threads go idle
                    measured[name] += latencies(fn, z, max(3, args.calls // 3))
            tf_p50 = float(np.median(measured["tensorflow (SavedModel)"]))
            for name, values in measured.items():
                p50, p99 = float(np.median(values)), float(np.percentile(values, 99))
                rows.append([batch, name, p50 * 1e3, p99 * 1e3, batch / p50, tf_p50 / p50])
            raw[batch] = measured
    print(table(rows, ["batch", "backend", "p50 ms", "p99 ms", "images/s", "speed vs TF"]))
    speedup = {r[0]: r[5] for r in rows if r[1] == "onnxruntime"}
    met = speedup[1] >= 3 and all(v >= 1 for v in speedup.values())
    print(f"target: onnxruntime >= 3x TF at batch 1 ({speedup[1]:.2f}x) and not slower at any batch "
          f"(min {min(speedup.values()):.2f}x) -> {'met' if met else 'MISSED'}")
    path = save("inference", {"args": vars(args), "ort_sweep": sweep, "rows": rows,
                              "latencies_s": {str(k): v for k, v in raw.items()}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
