"""Quality at equal budget: our default recipe vs the seeds' MLP GAN vs the keras-io DCGAN recipe.

    python -m benchmarks.quality [--minutes 5] [--num-samples 10000] [--mnist-test ../shared/data/mnist-test]

Every model trains on mnist-sample (the 5,000 shipped digits), one after the other, and is scored by
`metrics.evaluator` against the 10,000 real MNIST test images, which none of them trained on: FID/KID
in the features of the domain classifier (trained on the 5k sample; its accuracy on the test set is
printed), readable rate and class KL. The floor is the 5k sample itself scored the same way.
Two budgets: equal wall clock (`--minutes` each), and equal images seen, at the count the slowest
recipe (keras-io) reached in its wall-clock budget. About 3.5 x `--minutes` + 3 minutes in all.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from benchmarks.common import save, table
from common.quiet import quiet_tensorflow

MNIST_TEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-test"


def train_ours(tmp: str, name: str, **overrides):
    """Our default recipe (TrainConfig's defaults) with a budget; returns (sampler, steps, batch, seconds)."""
    from export.artifacts import load_sampler
    from training.config import TrainConfig
    from training.trainer import train

    config = TrainConfig(verbose=0, output_dir=f"{tmp}/{name}", **overrides)
    started = time.monotonic()
    result = train(config)
    seconds = time.monotonic() - started
    return load_sampler(Path(tmp) / name / "generator.keras"), result.global_step, config.batch_size, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="Wall-clock training budget per model.")
    parser.add_argument("--num-samples", type=int, default=10_000, help="Generated images scored per model.")
    parser.add_argument("--mnist-test", default=str(MNIST_TEST), help="Directory of the MNIST test set (idx files).")
    args = parser.parse_args(argv)
    quiet_tensorflow()  # after parsing, so --help answers without loading TensorFlow

    import numpy as np

    from benchmarks.references import keras_io_dcgan, seed_gan
    from common.realdata import read_idx_dir, read_mnist_sample
    from metrics.classifier import to_unit_range
    from metrics.evaluator import Evaluator

    images, labels = read_mnist_sample()
    test_images, test_labels = read_idx_dir(args.mnist_test)
    evaluator = Evaluator(images, labels, reference_images=test_images, reference_labels=test_labels,
                          num_samples=args.num_samples)
    test_accuracy = float(np.mean(evaluator.classifier.probabilities(to_unit_range(test_images)).argmax(axis=1)
                                  == test_labels))
    unit = to_unit_range(images)
    runs = {}  # (budget, model) -> (scores, steps, batch size, seconds)

    def score(key, sample, latent_dim, steps, batch, seconds):
        runs[key] = (evaluator.evaluate(sample, latent_dim), steps, batch, seconds)
        print(f"{key[0]:>22} | {key[1]:<14} FID {runs[key][0]['fid']:.2f} after {steps} steps in {seconds:.0f} s", flush=True)

    wall = f"{args.minutes:g} min wall clock"
    with tempfile.TemporaryDirectory() as tmp:
        sampler, steps, batch, seconds = train_ours(tmp, "ours", epochs=10**6, max_minutes=args.minutes)
        score((wall, "ours"), sampler.sample, sampler.latent_dim, steps, batch, seconds)
        started = time.monotonic()
        seeds = seed_gan.SeedGAN()
        steps = seeds.train(unit, args.minutes)
        score((wall, "seeds' MLP GAN"), seeds.sample, seed_gan.LATENT_DIM, steps, seed_gan.BATCH_SIZE,
              time.monotonic() - started)
        started = time.monotonic()
        sample, steps = keras_io_dcgan.train(unit, args.minutes)
        score((wall, "keras-io DCGAN"), sample, keras_io_dcgan.LATENT_DIM, steps, keras_io_dcgan.BATCH_SIZE,
              time.monotonic() - started)

        seen = steps * keras_io_dcgan.BATCH_SIZE  # the slowest recipe's count: all three can reach it
        equal = f"{seen:,} images seen"
        ours_batch = runs[(wall, "ours")][2]
        sampler, steps, batch, seconds = train_ours(tmp, "ours-images", epochs=1,
                                                    steps_per_epoch=math.ceil(seen / ours_batch))
        score((equal, "ours"), sampler.sample, sampler.latent_dim, steps, batch, seconds)
        started = time.monotonic()
        seeds = seed_gan.SeedGAN()
        steps = seeds.train(unit, 10 * args.minutes, max_steps=math.ceil(seen / seed_gan.BATCH_SIZE))
        score((equal, "seeds' MLP GAN"), seeds.sample, seed_gan.LATENT_DIM, steps, seed_gan.BATCH_SIZE,
              time.monotonic() - started)
        runs[(equal, "keras-io DCGAN")] = runs[(wall, "keras-io DCGAN")]

    rows = []
    for (budget, model), (r, steps, batch, seconds) in runs.items():
        seeds_fid = runs[(budget, "seeds' MLP GAN")][0]["fid"]
        rows.append([budget, model, r["fid"], r["kid"], r["readable_rate"], r["class_coverage"]["kl_from_real"],
                     steps, steps * batch, round(seconds), r["fid"] / seeds_fid])
    print(f"\nmnist-sample -> MNIST test set ({evaluator.num_reference} images), {args.num_samples} samples per model; "
          f"classifier: {test_accuracy:.4f} accurate on the test set ({evaluator.classifier.accuracy:.3f} on its "
          f"held-out split); floor (the 5k real sample vs the test set): FID {evaluator.floor['fid']:.3f}, "
          f"KID {evaluator.floor['kid']:.5f}")
    print(table(rows, ["budget", "model", "FID", "KID", "readable", "class KL", "steps", "images seen", "seconds",
                       "FID / seeds'"]))
    ratio = runs[(wall, "ours")][0]["fid"] / runs[(wall, "seeds' MLP GAN")][0]["fid"]
    print(f"target: ours <= 1/3 of the seeds' GAN at equal wall clock -> {ratio:.3f} ({'met' if ratio <= 1 / 3 else 'MISSED'})")
    floor = {k: v for k, v in evaluator.floor.items()}
    path = save("quality", {"args": vars(args), "floor": floor, "classifier": evaluator.classifier.describe(),
                            "classifier_test_accuracy": test_accuracy,
                            "results": [{"budget": b, "model": m, "evaluation": r, "steps": s, "batch_size": bs,
                                         "seconds": sec} for (b, m), (r, s, bs, sec) in runs.items()],
                            "ours_over_seeds": ratio})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
