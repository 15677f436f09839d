"""Where a train step's time goes: each piece of the default step timed alone or removed, side by side.

    python -m benchmarks.step_profile [--rounds 5] [--steps 30] [--set width=32 --set upsampling=transposed]

Everything runs in one process, interleaved (A B C A B C ...), on one fixed batch, so drift on a
shared machine hits every row alike; the table shows median milliseconds per step and each row's
share of the full step. Rows:

- the full compiled train step of the recipe (`TrainConfig` defaults, changed by `--set`);
- the same step without the EMA update, and with BatchNorm's cross-replica statistics off
  (`synchronized=False`; with one replica they are the same numbers by another path);
- the same step with transposed-convolution upsampling instead of pixel shuffle (what the
  pixel-shuffle conv's 4x channels cost);
- the generator alone (forward + backward through its weights) and the discriminator alone
  (forward + backward on a real-and-fake batch), which split the convolutions' cost;
- the tf.data pipeline alone (a batch with its stateless noise), and `fit`'s per-epoch callbacks
  (sample grid, TensorBoard, history, checkpoint) as seconds per epoch.

Results go to benchmarks/results/step_profile.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from benchmarks.common import interleaved, machine, median, save, table
from common.quiet import quiet_tensorflow


def parse_overrides(pairs: list[str]) -> dict:
    """`key=value` pairs into TrainConfig overrides, typed like the field's default."""
    from training.config import TrainConfig

    defaults = TrainConfig()
    overrides = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        key = key.replace("-", "_")
        if not hasattr(defaults, key):
            raise SystemExit(f"--set {pair}: no such setting (see python -m training.run --help)")
        kind = type(getattr(defaults, key))
        overrides[key] = value if kind in (str, type(None)) else kind(float(value) if kind is int else value)
    return overrides


def compiled_step(config, data, ema: bool = True, synchronized: bool = True):
    """The GAN's train step as `fit` compiles it, on one fixed batch; returns (step, gan, batch)."""
    import keras
    import tensorflow as tf

    from training.data import make_pipeline
    from training.ema import batchnorm_layers
    from training.trainer import build_gan

    keras.utils.set_random_seed(0)
    gan = build_gan(dataclasses.replace(config, ema_kimg=config.ema_kimg if ema else 0.0), None)
    for bn in batchnorm_layers(gan.generator):
        bn.synchronized = synchronized
    batch = next(iter(make_pipeline(data, config.batch_size, config.latent_dim, config.d_steps, 0, 0)))
    step = tf.function(gan.train_step)
    return step, gan, batch


def generator_alone(gan, batch):
    """Forward and backward through the generator's weights only."""
    import tensorflow as tf

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(gan.generator(batch["noise"][:, 0], training=True))
        return tape.gradient(loss, gan.generator.trainable_variables)
    return step


def discriminator_alone(gan, batch):
    """Forward and backward through the discriminator on a real-and-fake sized batch."""
    import tensorflow as tf

    images = tf.concat([batch["images"], batch["images"]], axis=0)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(gan.discriminator(images, training=True))
        return tape.gradient(loss, gan.discriminator.trainable_variables)
    return step


def timer(fn, steps: int):
    def run():
        started = time.perf_counter()
        for _ in range(steps):
            out = fn()
        _ = [t.numpy() for t in (out.values() if isinstance(out, dict) else out)][:1]
        return (time.perf_counter() - started) / steps * 1000.0
    return run


def pipeline_ms(config, data, batches: int = 300) -> float:
    from training.data import make_pipeline

    batches_iter = iter(make_pipeline(data, config.batch_size, config.latent_dim, config.d_steps, 0, 0))
    next(batches_iter)
    started = time.perf_counter()
    for _ in range(batches):
        next(batches_iter)
    return (time.perf_counter() - started) / batches * 1000.0


def callbacks_seconds(config, data, steps: int) -> tuple[float, float]:
    """(seconds for an epoch of `steps` with the trainer's callbacks, without): their cost per epoch."""
    import tempfile

    from training.rundir import RunDirectory
    from training.trainer import build_gan, make_callbacks
    from training.data import make_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        run = RunDirectory(f"{tmp}/run")
        run.create(config, False, data.describe(config.dataset))
        gan = build_gan(config, None)
        dataset = make_pipeline(data, config.batch_size, config.latent_dim, config.d_steps, 0, 0)
        callbacks = make_callbacks(config, gan, run, run, None, steps, chief=True).ordered
        timings = []
        for cbs in (callbacks, [], callbacks, []):  # the first pair traces; the second is timed
            started = time.perf_counter()
            gan.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=cbs, verbose=0, shuffle=False)
            timings.append(time.perf_counter() - started)
    return timings[2], timings[3]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30, help="Steps per timed call.")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="Change the recipe, e.g. --set width=16 (repeatable).")
    args = parser.parse_args(argv)
    quiet_tensorflow()

    from training.config import TrainConfig
    from training.data import load_data
    from training.trainer import resolve

    data = load_data("mnist-sample").without_labels()
    config = resolve(dataclasses.replace(TrainConfig(verbose=0), **parse_overrides(args.set)), data)
    full, gan, batch = compiled_step(config, data)
    rows = {
        "full train step": full,
        "  without the EMA update": compiled_step(config, data, ema=False)[0],
        "  BatchNorm synchronized=False": compiled_step(config, data, synchronized=False)[0],
        "  transposed upsampling instead": compiled_step(
            dataclasses.replace(config, upsampling="transposed"), data)[0],
        "generator forward+backward (1 batch)": generator_alone(gan, batch),
        "discriminator forward+backward (2 batches)": discriminator_alone(gan, batch),
    }
    fns = {name: (lambda f=fn: f(batch)) if name.startswith(("full", "  ")) else fn for name, fn in rows.items()}
    for fn in fns.values():
        for _ in range(3):
            fn()  # trace and warm up
    results = interleaved({name: timer(fn, args.steps) for name, fn in fns.items()}, args.rounds)
    full_ms = median(results["full train step"])
    table_rows = [[name, median(v), median(v) / full_ms] for name, v in results.items()]
    table_rows.append(["tf.data pipeline alone (per batch)", pipeline_ms(config, data), pipeline_ms(config, data) / full_ms])
    with_cb, without_cb = callbacks_seconds(config, data, steps=78)
    table_rows.append(["per-epoch callbacks, ms per step of a 78-step epoch", (with_cb - without_cb) / 78 * 1000.0,
                       (with_cb - without_cb) / 78 * 1000.0 / full_ms])
    print(f"recipe: width {config.width}, {config.upsampling}, batch {config.batch_size}, loss {config.loss}, "
          f"R1 {config.r1_gamma} R2 {config.r2_gamma} every {config.r1_every}; {machine()}")
    print(table(table_rows, ["piece", "ms per step", "share of full step"]))
    path = save("step_profile", {"recipe": dataclasses.asdict(config), "rows": [
        {"piece": r[0].strip(), "ms": r[1], "share": r[2]} for r in table_rows], "rounds": args.rounds})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
