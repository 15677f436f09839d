"""Training throughput of our train step: default flags vs XLA vs steps-per-execution.

    python -m benchmarks.train_throughput [--rounds 5] [--steps 40] [--width 32] [--batch-size 64]

Variants run interleaved in one process on the same data; the table shows median images/s over the
rounds and the ratio to the default flags. Results go to benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import interleaved, median, save, table  # noqa: E402


def variant(config, data, steps):
    import keras

    from training.data import make_pipeline
    from training.trainer import build_gan

    keras.utils.set_random_seed(0)
    gan = build_gan(config, None)
    dataset = make_pipeline(data, config.batch_size, config.latent_dim, config.resolved_d_steps, seed=0)
    gan.fit(dataset, steps_per_epoch=config.steps_per_execution * 2, epochs=1, verbose=0, shuffle=False)  # trace

    def measure():
        start = time.perf_counter()
        gan.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        return steps * config.batch_size / (time.perf_counter() - start)
    return measure


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40, help="Timed steps per round (a multiple of 8).")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)

    import dataclasses

    from training.config import TrainConfig
    from training.data import load_data

    data = load_data("mnist-sample")
    base = TrainConfig(width=args.width, batch_size=args.batch_size, image_size=28, channels=1, d_steps=1)
    configs = {
        "default": base,
        "jit_compile": dataclasses.replace(base, jit_compile=True),
        "steps_per_execution=8": dataclasses.replace(base, steps_per_execution=8),
        "jit_compile + steps_per_execution=8": dataclasses.replace(base, jit_compile=True, steps_per_execution=8),
    }
    results = interleaved({name: variant(c, data, args.steps) for name, c in configs.items()}, args.rounds)
    baseline = median(results["default"])
    rows = [[name, median(v), min(v), max(v), median(v) / baseline] for name, v in results.items()]
    print(f"DCGAN 28x28x1, width {args.width}, global batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds")
    print(table(rows, ["variant", "median img/s", "min", "max", "ratio to default"]))
    path = save("train_throughput", {"args": vars(args), "images_per_second": results,
                                     "ratio_to_default": {r[0]: r[4] for r in rows}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
