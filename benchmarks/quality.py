"""Quality at equal wall clock: the default recipe vs the one it replaced, over several seeds.

    python -m benchmarks.quality [--minutes 5] [--seeds 0,1,2] [--references] [--equal-images]

Each model trains on mnist-sample (the 5,000 shipped digits) for `--minutes` of wall clock (what a
user pays for), one after the other, seed by seed (default, previous, default, previous, ...: drift on
a shared machine hits both alike), and is scored by `metrics.evaluator` against the 10,000 real MNIST
test images, which none of them trained on: FID/KID in the features of the domain classifier
(trained on the 5k sample; its accuracy on the test set is printed), readable rate and class KL.
The floor is the 5k sample itself scored the same way. `--references` adds the seeds' MLP GAN and
the keras-io DCGAN recipe (one run each, same budget); `--equal-images` adds a second budget, the
images the keras-io recipe saw in its minutes, for ours and the seeds' GAN. Run it on an otherwise
idle machine: about (2 x seeds + 2) x (`--minutes` + 0.5) minutes with `--references`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, save, table
from common.quiet import quiet_tensorflow

MNIST_TEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-test"
# benchmarks.sweep's name for the default this one replaced: each session that changes the default
# compares it with its immediate predecessor (width 32 -> width 16 -> + lazy R1/R2 and beta_1 0 -> lr 1.6e-3).
PREVIOUS = "width 16, bce + R1 + R2 0.05 every 8"


def train_ours(tmp: str, name: str, **overrides):
    """A recipe (TrainConfig's defaults + overrides) with a budget; returns (sampler, steps, batch, seconds)."""
    from export.artifacts import load_sampler
    from training.config import TrainConfig
    from training.trainer import train

    config = TrainConfig(verbose=0, output_dir=f"{tmp}/{name}", checkpoint_every=10**9, **overrides)
    started = time.monotonic()
    result = train(config)
    seconds = time.monotonic() - started
    return load_sampler(Path(tmp) / name / "generator.keras"), result.global_step, config.batch_size, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="Wall-clock training budget per model.")
    parser.add_argument("--seeds", default="0,1,2", help="Comma list of seeds for the default and previous recipe.")
    parser.add_argument("--previous", default=PREVIOUS, metavar="VARIANT",
                        help="The recipe the default is compared with: a benchmarks.sweep variant name "
                             "(python -m benchmarks.sweep --list).")
    parser.add_argument("--references", action="store_true", help="Also the seeds' MLP GAN and keras-io DCGAN.")
    parser.add_argument("--equal-images", action="store_true", help="Also compare at equal images seen (with --references).")
    parser.add_argument("--num-samples", type=int, default=10_000, help="Generated images scored per model.")
    parser.add_argument("--mnist-test", default=str(MNIST_TEST), help="Directory of the MNIST test set (idx files).")
    args = parser.parse_args(argv)
    from benchmarks.sweep import VARIANTS

    if args.previous not in VARIANTS:
        parser.error(f"--previous {args.previous!r} is not a benchmarks.sweep variant; see python -m benchmarks.sweep --list")
    quiet_tensorflow()  # after parsing, so --help answers without loading TensorFlow

    import numpy as np

    from common.realdata import read_idx_dir, read_mnist_sample
    from metrics.classifier import to_unit_range
    from metrics.evaluator import Evaluator

    images, labels = read_mnist_sample()
    test_images, test_labels = read_idx_dir(args.mnist_test)
    evaluator = Evaluator(images, labels, reference_images=test_images, reference_labels=test_labels,
                          num_samples=args.num_samples)
    test_accuracy = float(np.mean(evaluator.classifier.probabilities(to_unit_range(test_images)).argmax(axis=1)
                                  == test_labels))
    runs = []  # dicts: budget, model, seed, evaluation, steps, batch_size, seconds

    def score(budget, model, seed, sample, latent_dim, steps, batch, seconds):
        result = evaluator.evaluate(sample, latent_dim)
        runs.append({"budget": budget, "model": model, "seed": seed, "evaluation": result, "steps": steps,
                     "batch_size": batch, "seconds": seconds})
        print(f"{budget:>22} | {model:<26} seed {seed}: FID {result['fid']:.3f} after {steps} steps in "
              f"{seconds:.0f} s", flush=True)

    wall = f"{args.minutes:g} min wall clock"
    recipes = {"default": {}, f"previous default ({args.previous})": VARIANTS[args.previous]}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            for model, overrides in recipes.items():
                sampler, steps, batch, seconds = train_ours(tmp, f"{model[:7]}-{seed}", **{
                    **overrides, "epochs": 10**6, "max_minutes": args.minutes, "seed": seed})
                score(wall, model, seed, sampler.sample, sampler.latent_dim, steps, batch, seconds)
        if args.references:
            references(tmp, args, wall, score)

    print(f"\nmnist-sample -> MNIST test set ({evaluator.num_reference} images), {args.num_samples} samples per model; "
          f"classifier: {test_accuracy:.4f} accurate on the test set ({evaluator.classifier.accuracy:.3f} on its "
          f"held-out split); floor (the 5k real sample vs the test set): FID {evaluator.floor['fid']:.3f}; {machine()}")
    print(table([[r["budget"], r["model"], r["seed"], r["evaluation"]["fid"], r["evaluation"]["kid"],
                  r["evaluation"]["readable_rate"], r["evaluation"]["class_coverage"]["kl_from_real"], r["steps"],
                  r["steps"] * r["batch_size"], round(r["seconds"])] for r in runs],
                ["budget", "model", "seed", "FID", "KID", "readable", "class KL", "steps", "images seen", "seconds"]))
    verdict = summarize(runs, wall, list(recipes))
    save("quality", {"args": vars(args), "floor": dict(evaluator.floor), "classifier": evaluator.classifier.describe(),
                     "classifier_test_accuracy": test_accuracy, "results": runs, **verdict})


def summarize(runs: list[dict], wall: str, recipes: list[str]) -> dict:
    """Mean and spread per model at equal wall clock; is the default ahead of the previous one?"""
    by_model: dict[str, list[float]] = {}
    for r in runs:
        if r["budget"] == wall:
            by_model.setdefault(r["model"], []).append(r["evaluation"]["fid"])
    rows = [[m, len(f), statistics.mean(f), min(f), max(f)] for m, f in by_model.items()]
    print(table(rows, ["model", "seeds", "FID mean", "min", "max"]))
    new, old = by_model[recipes[0]], by_model[recipes[1]]
    ratio = statistics.mean(new) / statistics.mean(old)
    ahead = max(new) < min(old)
    print(f"default vs previous default at {wall}: mean FID {statistics.mean(new):.3f} vs {statistics.mean(old):.3f} "
          f"(ratio {ratio:.3f}); worst default seed {'beats' if ahead else 'does NOT beat'} the best previous seed")
    return {"summary": {m: {"fids": f, "mean": statistics.mean(f)} for m, f in by_model.items()},
            "default_over_previous": ratio, "default_ahead_at_every_seed": ahead}


def references(tmp: str, args, wall: str, score) -> None:
    """The seeds' MLP GAN and the keras-io recipe at the same wall clock (and optionally equal images)."""
    from benchmarks.references import keras_io_dcgan, seed_gan
    from common.realdata import read_mnist_sample
    from metrics.classifier import to_unit_range

    unit = to_unit_range(read_mnist_sample()[0])
    started = time.monotonic()
    seeds = seed_gan.SeedGAN()
    steps = seeds.train(unit, args.minutes)
    score(wall, "seeds' MLP GAN", 0, seeds.sample, seed_gan.LATENT_DIM, steps, seed_gan.BATCH_SIZE,
          time.monotonic() - started)
    started = time.monotonic()
    sample, steps = keras_io_dcgan.train(unit, args.minutes)
    score(wall, "keras-io DCGAN", 0, sample, keras_io_dcgan.LATENT_DIM, steps, keras_io_dcgan.BATCH_SIZE,
          time.monotonic() - started)
    if not args.equal_images:
        return
    seen = steps * keras_io_dcgan.BATCH_SIZE  # the slowest recipe's count: all three can reach it
    equal = f"{seen:,} images seen"
    from training.config import TrainConfig

    batch = TrainConfig().batch_size
    sampler, steps, batch, seconds = train_ours(tmp, "ours-images", epochs=1, steps_per_epoch=math.ceil(seen / batch))
    score(equal, "default", 0, sampler.sample, sampler.latent_dim, steps, batch, seconds)
    started = time.monotonic()
    seeds = seed_gan.SeedGAN()
    steps = seeds.train(unit, 10 * args.minutes, max_steps=math.ceil(seen / seed_gan.BATCH_SIZE))
    score(equal, "seeds' MLP GAN", 0, seeds.sample, seed_gan.LATENT_DIM, steps, seed_gan.BATCH_SIZE,
          time.monotonic() - started)


if __name__ == "__main__":
    main()
