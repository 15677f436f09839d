"""Training throughput: our train step under different flags, and against the keras-io recipe.

    python -m benchmarks.train_throughput [--rounds 3] [--steps 40] [--width 32] [--batch-size 64]

Part 1, our DCGAN: default flags vs XLA vs steps-per-execution. Part 2, the keras-io "DCGAN
overriding train_step" recipe as shipped (Keras's default jit_compile="auto", which Keras turns off
on CPU-only machines and on for GPUs) vs our
GAN's train_step driving the very same generator and discriminator at the same global batch.
All variants of a part run interleaved in one process (A B C A B C ...); tables show median
images/s and ratios. Results go to benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse

from benchmarks.common import fit_rate, interleaved, median, save, table
from common.quiet import quiet_tensorflow


def variant(config, data, steps):
    import keras

    from training.data import make_pipeline
    from training.trainer import build_gan

    keras.utils.set_random_seed(0)
    gan = build_gan(config, None)
    dataset = make_pipeline(data, config.batch_size, config.latent_dim, config.resolved_d_steps, seed=0)
    gan.fit(dataset, steps_per_epoch=config.steps_per_execution * 2, epochs=1, verbose=0, shuffle=False)  # trace
    return lambda: fit_rate(gan, dataset, steps, config.batch_size, config.steps_per_execution)


def keras_io_variants(data, batch_size: int, steps: int) -> dict:
    import keras

    from benchmarks.references import keras_io_dcgan as kio
    from training.data import make_pipeline
    from training.gan import GAN
    from training.losses import get_loss

    images = data.images.astype("float32") / 255.0
    recipe = kio.make(batch_size=batch_size)
    recipe_data = kio.dataset(images, batch_size)

    def ours(ema_decay=0.999, **compile_flags):
        keras.utils.set_random_seed(0)
        gan = GAN(kio.build_generator(activation="tanh"), kio.build_discriminator(sigmoid=False),
                  latent_dim=kio.LATENT_DIM, ema_decay=ema_decay)
        gan.compile(d_optimizer=keras.optimizers.Adam(1e-4), g_optimizer=keras.optimizers.Adam(1e-4),
                    loss=get_loss("bce"), **compile_flags)
        return gan, make_pipeline(data, batch_size, kio.LATENT_DIM, 1, seed=0)

    def timed(model, dataset, spe=1):
        model.fit(dataset, steps_per_epoch=2 * spe, epochs=1, verbose=0)  # trace
        return lambda: fit_rate(model, dataset, steps, batch_size, spe)

    return {
        "keras-io recipe (as shipped; jit auto = off on CPU)": timed(recipe, recipe_data),
        "ours, default flags": timed(*ours(jit_compile=False)),
        "ours, default flags without EMA (--ema-kimg 0)": timed(*ours(ema_decay=0.0, jit_compile=False)),
        "ours, jit_compile": timed(*ours(jit_compile=True)),
        "ours, steps_per_execution=8": timed(*ours(jit_compile=False, steps_per_execution=8), spe=8),
        "ours, jit + steps_per_execution=8": timed(*ours(jit_compile=True, steps_per_execution=8), spe=8),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="Timed steps per round (a multiple of 8).")
    parser.add_argument("--versus-steps", type=int, default=24,
                        help="Timed steps per round in part 2 (its architecture is ~5x heavier).")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    quiet_tensorflow()  # after parsing, so --help answers without loading TensorFlow

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
    print(f"Part 1. Our DCGAN 28x28x1, width {args.width}, global batch {args.batch_size}, "
          f"{args.steps} steps x {args.rounds} rounds")
    print(table(rows, ["variant", "median img/s", "min", "max", "ratio to default"]))

    versus = interleaved(keras_io_variants(data, args.batch_size, args.versus_steps), args.rounds)
    recipe = median(versus["keras-io recipe (as shipped; jit auto = off on CPU)"])
    vs_rows = [[name, median(v), min(v), max(v), median(v) / recipe] for name, v in versus.items()]
    print(f"\nPart 2. keras-io architecture (28x28 adaptation), global batch {args.batch_size}")
    print(table(vs_rows, ["variant", "median img/s", "min", "max", "ratio to keras-io"]))
    default_ratio = median(versus["ours, default flags"]) / recipe
    best_ratio = max(r[4] for r in vs_rows[1:] if "EMA" not in r[0])
    print(f"targets: default flags >= 1.0 -> {default_ratio:.2f} ({'met' if default_ratio >= 1 else 'MISSED'}); "
          f"best flags >= 1.5 -> {best_ratio:.2f} ({'met' if best_ratio >= 1.5 else 'MISSED'})")
    path = save("train_throughput", {"args": vars(args), "images_per_second": results,
                                     "ratio_to_default": {r[0]: r[4] for r in rows},
                                     "versus_keras_io": versus, "ratio_to_keras_io": {r[0]: r[4] for r in vs_rows}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
