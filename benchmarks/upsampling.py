"""Generator upsampling, side by side: inference speed in TensorFlow and onnxruntime (float32, int8).

    python -m benchmarks.upsampling [--image-size 28 --channels 1 --width 32 --rounds 15]

Builds the default generator with each upsampling (`pixelshuffle`: 3x3 conv + depth_to_space;
`transposed`: Conv2DTranspose; `nearest`: UpSampling2D + conv), exports each the way `export.run`
does (tf2onnx, then onnxruntime's static int8 QDQ quantization as `--variants int8`), and times
batches of 64 and 256 interleaved (A B C A B C ...) so this shared machine's drift hits all alike.
Reports ms per batch and each backend's speed relative to the transposed-conv float32 onnxruntime
model, plus the ONNX op types each one exports to. Weights are untrained (speed does not depend
on them); quality per upsampling comes from `benchmarks/sweep.py`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import interleaved, machine, median, save, table
from common.quiet import quiet_tensorflow

MODES = ("pixelshuffle", "transposed", "nearest")


def _timer(fn, feed):
    def timed():
        start = time.perf_counter()
        fn(feed)
        return (time.perf_counter() - start) * 1000
    return timed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--latent-dim", type=int, default=64)
    parser.add_argument("--batches", default="64,256")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    quiet_tensorflow()  # after parsing, so --help answers without loading TensorFlow

    import numpy as np
    import onnx
    import onnxruntime as ort
    import tensorflow as tf

    from export.onnx_export import write_onnx
    from export.signature import GeneratorSpec, serving_function
    from export.variants import write_variant
    from training.ema import recalibrate_batchnorm
    from training.models import build_generator

    rng = np.random.default_rng(0)
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    backends, ops_used = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in MODES:
            generator = build_generator(args.image_size, args.channels, args.latent_dim, args.width, upsampling=mode)
            recalibrate_batchnorm(generator)
            spec = GeneratorSpec.of(generator)
            fp32, int8 = Path(tmp) / f"{mode}.onnx", Path(tmp) / f"{mode}.int8.onnx"
            write_onnx(generator, spec, fp32, {})
            write_variant("int8", fp32, int8, args.latent_dim, None)
            ops_used[mode] = sorted({node.op_type for node in onnx.load(str(fp32)).graph.node}
                                    - {"Identity", "Shape", "Cast", "Reshape", "Unsqueeze", "Concat", "Slice",
                                       "Squeeze", "Gather", "Transpose"} | {n.op_type for n in onnx.load(str(fp32)).graph.node
                                                                            if n.op_type in ("Gather", "Tile")})
            tf_fn = serving_function(generator, spec)
            backends[f"{mode} TensorFlow"] = lambda feed, f=tf_fn: f(tf.constant(feed["z"]))["images"].numpy()
            for name, path in ((f"{mode} onnxruntime fp32", fp32), (f"{mode} onnxruntime int8", int8)):
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                backends[name] = lambda feed, s=session: s.run(None, feed)[0]

        rows, results = [], {}
        for batch in (int(b) for b in args.batches.split(",")):
            feed = {"z": rng.standard_normal((batch, args.latent_dim)).astype(np.float32)}
            for fn in backends.values():  # warm-up: graph building, kernel selection
                fn(feed), fn(feed)
            timings = interleaved({name: _timer(fn, feed) for name, fn in backends.items()}, args.rounds)
            base = median(timings["transposed onnxruntime fp32"])
            for name, values in timings.items():
                results[f"{name} @ {batch}"] = median(values)
                rows.append([batch, name, median(values), base / median(values)])
    print(f"{args.image_size}x{args.image_size}x{args.channels} generator, width {args.width}, "
          f"median of {args.rounds} interleaved rounds; speed relative to transposed-conv onnxruntime fp32")
    print(table(rows, ["batch", "generator / backend", "ms per batch", "speed vs transposed ort fp32"]))
    for mode, types in ops_used.items():
        print(f"{mode}: ONNX ops {', '.join(types)}")
    save("upsampling", {"machine": machine(), "args": vars(args), "ms": results, "onnx_ops": ops_used})


if __name__ == "__main__":
    main()
