"""The sweep the default training recipe is chosen from: quality at equal wall clock (or steps).

    python -m benchmarks.sweep --minutes 5 --seeds 0,1,2 [--only "width 16|wide"] [--num-samples 10000]
    python -m benchmarks.sweep --steps 1500 [--only baseline]
    python -m benchmarks.sweep --minutes 5 --report        # the saved table, mean and spread over seeds

Each variant is a full recipe (every key any recipe changes, so a row keeps its meaning when the
defaults move), trained on mnist-sample for `--minutes` of wall clock (what a user pays for: run it
on an otherwise idle machine) or exactly `--steps` steps (other processes slow a run down but cannot
change its result), once per seed, one run at a time, then scored by the validated evaluator
(`metrics.evaluator`: FID in domain-classifier features against the held-out MNIST test set in
`../shared/data/mnist-test`, real-vs-real floor and readable rate beside it; without ../shared,
against the training data with its warning). Images/s is measured in the same run but is only
comparable between rows run on an otherwise idle machine. "no EMA" differs from the default only
in what is sampled (the EMA never feeds back into training), so it is the raw generator of the
same run: the EMA-vs-raw comparison. Results accumulate in benchmarks/results/sweep.json, so a
sweep interrupted part way keeps its finished rows and `--only` can add rows later.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, keep_row, machine, table
from common.quiet import quiet_tensorflow

HELD_OUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-test"
# Recipes are written out in full (every key any recipe changes), so a row means the same thing
# after the defaults move. EMA 0.999/step at batch 64 is a half-life of 44k images; its warm-up
# min(0.999, (1+t)/(10+t)) kept the half-life near 0.08 x the images seen, which ramp-up 0.08 reproduces.
RECIPE_KEYS = {"width": 32, "upsampling": "pixelshuffle", "batch_size": 64, "loss": "bce", "beta_1": 0.5,
               "d_lr": 8e-4, "g_lr": 8e-4, "ema_kimg": 10.0, "ema_rampup": 0.05, "diffaugment": "",
               "spectral_norm": False, "r1_gamma": 0.0, "r2_gamma": 0.0, "r1_every": 16, "lr_decay": "none",
               "lr_final": 0.0, "beta_2": 0.999, "d_width": None}
OLD_RECIPE = {**RECIPE_KEYS, "upsampling": "transposed", "ema_kimg": 44.0, "ema_rampup": 0.08,
              "d_lr": 2e-4, "g_lr": 2e-4}  # the default until 0161dac
WIDE_RECIPE = dict(RECIPE_KEYS)  # the default from 0161dac to a9b789c: chosen by quality per step
R3GAN_PENALTIES = {"loss": "rpgan", "beta_1": 0.0, "r1_gamma": 0.05, "r2_gamma": 0.05, "r1_every": 1}
PENALTIES_EVERY_8 = {**WIDE_RECIPE, "width": 16, **R3GAN_PENALTIES, "loss": "bce", "r1_every": 8}
VARIANTS = {
    "baseline (old recipe)": OLD_RECIPE,
    "old + pixelshuffle": {**OLD_RECIPE, "upsampling": "pixelshuffle"},
    "old + nearest": {**OLD_RECIPE, "upsampling": "nearest"},
    "old + EMA 10 kimg, ramp-up": {**OLD_RECIPE, "ema_kimg": 10.0, "ema_rampup": 0.05},
    "wide (width 32, lr 8e-4)": WIDE_RECIPE,
    "wide, no EMA (raw)": {**WIDE_RECIPE, "ema_kimg": 0.0},
    "wide, transposed": {**WIDE_RECIPE, "upsampling": "transposed"},
    "wide + translation,cutout": {**WIDE_RECIPE, "diffaugment": "translation,cutout"},
    "wide + translation,cutout,color": {**WIDE_RECIPE, "diffaugment": "translation,cutout,color"},
    "wide + spectral norm": {**WIDE_RECIPE, "spectral_norm": True},
    "wide + R1 gamma 0.1": {**WIDE_RECIPE, "r1_gamma": 0.1},
    "wide, batch 128": {**WIDE_RECIPE, "batch_size": 128},
    "wide, lr 2e-4": {**WIDE_RECIPE, "d_lr": 2e-4, "g_lr": 2e-4},
    "wide, lr 4e-4": {**WIDE_RECIPE, "d_lr": 4e-4, "g_lr": 4e-4},
    "wide, lr 1.2e-3": {**WIDE_RECIPE, "d_lr": 1.2e-3, "g_lr": 1.2e-3},
    "wide, arch mlp": {**WIDE_RECIPE, "arch": "mlp"},
    "width 24": {**WIDE_RECIPE, "width": 24},
    "width 16": {**WIDE_RECIPE, "width": 16},  # the default from a9b789c until the penalties' row below
    "width 16, batch 128, lr 1.1e-3": {**WIDE_RECIPE, "width": 16, "batch_size": 128, "d_lr": 1.1e-3, "g_lr": 1.1e-3},
    "width 16, transposed": {**WIDE_RECIPE, "width": 16, "upsampling": "transposed"},
    "width 16, rpgan + R1 + R2 0.05": {**WIDE_RECIPE, "width": 16, **R3GAN_PENALTIES},
    "width 16, rpgan + R1 + R2 0.05 every 4": {**WIDE_RECIPE, "width": 16, **R3GAN_PENALTIES, "r1_every": 4},
    "width 16, rpgan + R1 + R2 0.05, lr 2e-4": {**WIDE_RECIPE, "width": 16, **R3GAN_PENALTIES,
                                                 "d_lr": 2e-4, "g_lr": 2e-4},
    "width 16, bce + R1 + R2 0.05": {**WIDE_RECIPE, "width": 16, **R3GAN_PENALTIES, "loss": "bce"},
    "width 12": {**WIDE_RECIPE, "width": 12},
    "width 16, lr 1.2e-3": {**WIDE_RECIPE, "width": 16, "d_lr": 1.2e-3, "g_lr": 1.2e-3},
    "width 16, lr 5e-4": {**WIDE_RECIPE, "width": 16, "d_lr": 5e-4, "g_lr": 5e-4},
    "width 16, EMA 5 kimg": {**WIDE_RECIPE, "width": 16, "ema_kimg": 5.0},
    "width 16, EMA 20 kimg": {**WIDE_RECIPE, "width": 16, "ema_kimg": 20.0},
    "width 16, bce + R1 + R2 0.05 every 8": PENALTIES_EVERY_8,  # the default before the lr 1.6e-3 row (benchmarks/HISTORY.md)
    "width 16, penalties every 8, beta_2 0.99": {**PENALTIES_EVERY_8, "beta_2": 0.99},
    "width 16, penalties every 8, translation": {**PENALTIES_EVERY_8, "diffaugment": "translation"},
    "width 16, penalties every 8, lr 1.2e-3": {**PENALTIES_EVERY_8, "d_lr": 1.2e-3, "g_lr": 1.2e-3},
    "width 16, penalties every 8, lr 1.6e-3": {**PENALTIES_EVERY_8, "d_lr": 1.6e-3, "g_lr": 1.6e-3},  # the default (DEFAULT below)
    "width 16, penalties every 8, lr 2.4e-3": {**PENALTIES_EVERY_8, "d_lr": 2.4e-3, "g_lr": 2.4e-3},
    "width 16, penalties every 8, G lr 4e-4": {**PENALTIES_EVERY_8, "g_lr": 4e-4},
    "width 12, D width 16, penalties every 8": {**PENALTIES_EVERY_8, "width": 12, "d_width": 16},
    "width 12, penalties every 8": {**PENALTIES_EVERY_8, "width": 12},
    "width 16, D width 24, penalties every 8": {**PENALTIES_EVERY_8, "d_width": 24},
    "width 16, rpgan + R1 + R2 0.05 every 8": {**WIDE_RECIPE, "width": 16, **R3GAN_PENALTIES, "r1_every": 8},
    # Decay runs over the run's steps: compare them with --steps (equal steps at equal step cost is
    # equal wall clock); under --minutes their horizon is --epochs, which the sweep sets out of reach.
    "width 16, cosine decay": {**WIDE_RECIPE, "width": 16, "lr_decay": "cosine"},
    "width 16, cosine decay to 0.2": {**WIDE_RECIPE, "width": 16, "lr_decay": "cosine", "lr_final": 0.2},
    "width 16, linear decay": {**WIDE_RECIPE, "width": 16, "lr_decay": "linear"},
}

DEFAULT = "width 16, penalties every 8, lr 1.6e-3"  # TrainConfig's defaults, written out (a test keeps them equal)


def evaluator(num_samples: int):
    from metrics.evaluator import Evaluator
    from training.data import load_data, load_idx

    train = load_data("mnist-sample", keep_labels=True)
    if (HELD_OUT / "t10k-images-idx3-ubyte.gz").is_file():
        held_out = load_idx(HELD_OUT)
        return Evaluator(train.images, train.labels, reference_images=held_out.images,
                         reference_labels=held_out.labels, num_samples=num_samples)
    return Evaluator(train.images, train.labels, num_samples=num_samples)


def run_variant(name: str, overrides: dict, score, steps: int | None = None, minutes: float | None = None,
                seed: int = 0) -> dict:
    """Train one recipe on mnist-sample for exactly `steps` steps or `minutes` of wall clock, then score it."""
    from export.artifacts import load_sampler
    from training.config import TrainConfig
    from training.trainer import train

    budget = {"epochs": 1, "steps_per_epoch": steps} if steps else {"epochs": 10**6, "max_minutes": minutes}
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(verbose=0, checkpoint_every=10**9, output_dir=f"{tmp}/run", seed=seed,
                             **budget, **overrides)
        started = time.time()
        result = train(config)
        seconds = time.time() - started
        scores = score(load_sampler(f"{tmp}/run/generator.keras").sample, config.latent_dim)
    images = result.global_step * config.batch_size
    return {"variant": name, "overrides": overrides, "seed": seed, "minutes": minutes, "steps": result.global_step,
            "images": images, "train_seconds": seconds, "img_per_s": images / seconds, "fid": scores["fid"],
            "kid": scores["kid"], "readable_rate": scores.get("readable_rate"),
            "fid_floor": scores.get("fid_real_vs_real"), "reference": scores["reference"],
            "warnings": scores.get("warnings", [])}


def speed(names: list[str], steps: int = 30, rounds: int = 3) -> None:
    """Train-step throughput of each variant, side by side: the same compiled step, interleaved
    rounds, images per wall second and per CPU second (the latter less hurt by other processes)."""
    import dataclasses

    import keras

    from benchmarks.common import interleaved, median
    from training.config import TrainConfig
    from training.data import load_data, make_pipeline
    from training.trainer import build_gan

    data = load_data("mnist-sample")
    steppers = {}
    for name in names:
        config = dataclasses.replace(TrainConfig(image_size=28, channels=1), **VARIANTS[name])
        config = dataclasses.replace(config, d_steps=config.resolved_d_steps)
        keras.utils.set_random_seed(0)
        gan = build_gan(config, None)
        batches = iter(make_pipeline(data, config.batch_size, config.latent_dim, config.d_steps, 0, 0))
        gan.make_train_function()
        for _ in range(3):
            gan.train_function(batches)  # trace and warm up

        def run(gan=gan, batches=batches, batch=config.batch_size):
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                gan.train_function(batches)
            return steps * batch / (time.perf_counter() - wall), steps * batch / (time.process_time() - cpu)
        steppers[name] = run
    results = interleaved(steppers, rounds)
    first = median([r[1] for r in results[names[0]]])
    rows = [[name, median([r[0] for r in values]), median([r[1] for r in values]),
             median([r[1] for r in values]) / first] for name, values in results.items()]
    print(table(rows, ["variant", "img/s (wall)", "img per CPU-second", f"vs {names[0]}"]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="Train steps per run (equal steps; default 1500 without --minutes).")
    budget.add_argument("--minutes", type=float, help="Wall-clock training budget per run (equal time): what a user "
                        "pays for. Run on an otherwise idle machine.")
    parser.add_argument("--seeds", default="0", help="Comma list of seeds; each variant runs once per seed.")
    parser.add_argument("--only", help="Variant names to run, separated by | (names hold commas): an exact name picks that variant, "
                        "anything else is a prefix; default all.")
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--list", action="store_true", help="List the variants and exit.")
    parser.add_argument("--speed", action="store_true", help="Measure train-step throughput side by side instead.")
    parser.add_argument("--report", action="store_true", help="Print the saved table without training.")
    args = parser.parse_args(argv)
    names = list(VARIANTS)
    if args.only:
        wanted = [w.strip() for w in args.only.split("|")]
        # An exact name picks that variant alone ("width 16"); anything else is a prefix.
        names = [n for n in names if any(n == w or (w not in VARIANTS and n.startswith(w)) for w in wanted)]
    if args.list:
        print("\n".join(f"{n}: {VARIANTS[n]}" for n in names))
        return
    steps = None if args.minutes else (args.steps or 1500)
    path = RESULTS_DIR / ("sweep_minutes.json" if args.minutes else "sweep.json")
    saved = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    if args.report:
        return print(summary(saved["rows"]))
    quiet_tensorflow()  # after parsing, so --help answers without loading TensorFlow
    if args.speed:
        return speed(names)

    ev = evaluator(args.num_samples)
    RESULTS_DIR.mkdir(exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    for seed in seeds:  # seed-major: an interrupted sweep has every variant at the first seeds
        for name in names:
            row = run_variant(name, VARIANTS[name], lambda s, d: ev.evaluate(s, d), steps, args.minutes, seed)
            row["machine"] = machine()
            keep_row(path, saved, row, lambda r: (r["variant"], r["steps"] if steps else r.get("minutes"),
                                                   r.get("seed", 0)))
            print(f"{name} (seed {seed}): FID {row['fid']:.3f} (floor {row['fid_floor']}), readable "
                  f"{row['readable_rate']}, {row['steps']} steps, {row['img_per_s']:.0f} img/s", flush=True)
    print(summary(saved["rows"]))


def summary(rows: list[dict]) -> str:
    """One line per (variant, budget): mean FID over its seeds, with the spread (min-max) and count."""
    import statistics

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        budget = f"{r['minutes']:g} min" if r.get("minutes") else f"{r['steps']} steps"
        groups.setdefault((r["variant"], budget), []).append(r)
    lines = []
    for (variant, budget), group in sorted(groups.items(), key=lambda kv: statistics.mean(r["fid"] for r in kv[1])):
        fids = [r["fid"] for r in group]
        lines.append([variant, budget, len(group), statistics.mean(fids), min(fids), max(fids),
                      statistics.mean(r["readable_rate"] or float("nan") for r in group),
                      statistics.mean(r["steps"] for r in group), statistics.mean(r["img_per_s"] for r in group)])
    return table(lines, ["variant", "budget", "seeds", "FID mean", "min", "max", "readable", "steps", "img/s"])


if __name__ == "__main__":
    main()
