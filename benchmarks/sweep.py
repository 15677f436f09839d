"""The sweep the default training recipe is chosen from: quality at a fixed step budget.

    python -m benchmarks.sweep --steps 1500 [--only baseline,default] [--num-samples 10000]

Each variant is the current `TrainConfig` defaults with a few flags changed, trained on
mnist-sample for exactly `--steps` steps (a fixed budget, so other processes on a shared CPU slow a
run down but cannot change its result), one run at a time, then scored by the validated evaluator
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

from benchmarks.common import RESULTS_DIR, machine, table
from common.quiet import quiet_tensorflow

HELD_OUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-test"
# EMA 0.999/step at batch 64 is a half-life of 44k images; its warm-up min(0.999, (1+t)/(10+t)) kept
# the half-life near 0.08 x the images seen, which ramp-up 0.08 reproduces.
OLD_RECIPE = {"upsampling": "transposed", "ema_kimg": 44.0, "ema_rampup": 0.08, "diffaugment": "",
              "spectral_norm": False, "r1_gamma": 0.0, "d_lr": 2e-4, "g_lr": 2e-4}
VARIANTS = {
    "baseline (old recipe)": OLD_RECIPE,
    "old + pixelshuffle": {**OLD_RECIPE, "upsampling": "pixelshuffle"},
    "old + nearest": {**OLD_RECIPE, "upsampling": "nearest"},
    "old + EMA 10 kimg, ramp-up": {**OLD_RECIPE, "ema_kimg": 10.0, "ema_rampup": 0.05},
    "default": {},
    "default, no EMA (raw)": {"ema_kimg": 0.0},
    "default, transposed": {"upsampling": "transposed"},
    "default + translation,cutout": {"diffaugment": "translation,cutout"},
    "default + translation,cutout,color": {"diffaugment": "translation,cutout,color"},
    "default + spectral norm": {"spectral_norm": True},
    "default + R1 gamma 0.1": {"r1_gamma": 0.1},
    "default, batch 128": {"batch_size": 128},
    "default, lr 2e-4 (the default before the full-length sweep)": {"d_lr": 2e-4, "g_lr": 2e-4},
    "default, lr 4e-4": {"d_lr": 4e-4, "g_lr": 4e-4},
    "default, lr 1.2e-3": {"d_lr": 1.2e-3, "g_lr": 1.2e-3},
    "default, arch mlp": {"arch": "mlp"},
}


def evaluator(num_samples: int):
    from metrics.evaluator import Evaluator
    from training.data import load_data, load_idx

    train = load_data("mnist-sample", keep_labels=True)
    if (HELD_OUT / "t10k-images-idx3-ubyte.gz").is_file():
        held_out = load_idx(HELD_OUT)
        return Evaluator(train.images, train.labels, reference_images=held_out.images,
                         reference_labels=held_out.labels, num_samples=num_samples)
    return Evaluator(train.images, train.labels, num_samples=num_samples)


def run_variant(name: str, overrides: dict, steps: int, score) -> dict:
    from export.artifacts import load_sampler
    from training.config import TrainConfig
    from training.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(epochs=1, steps_per_epoch=steps, verbose=0, checkpoint_every=10**9,
                             output_dir=f"{tmp}/run", **overrides)
        started = time.time()
        result = train(config)
        seconds = time.time() - started
        scores = score(load_sampler(f"{tmp}/run/generator.keras").sample, config.latent_dim)
    images = steps * config.batch_size
    return {"variant": name, "overrides": overrides, "steps": result.global_step, "images": images,
            "train_seconds": seconds, "img_per_s": images / seconds, "fid": scores["fid"],
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
    parser.add_argument("--steps", type=int, default=1500, help="Train steps per variant (fixed budget).")
    parser.add_argument("--only", help="Comma list of variant names (prefixes) to run; default all.")
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--list", action="store_true", help="List the variants and exit.")
    parser.add_argument("--speed", action="store_true", help="Measure train-step throughput side by side instead.")
    args = parser.parse_args(argv)
    quiet_tensorflow()  # after parsing, so --help answers without loading TensorFlow
    names = list(VARIANTS)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",")]
        names = [n for n in names if any(n.startswith(w) for w in wanted)]
    if args.list:
        print("\n".join(f"{n}: {VARIANTS[n]}" for n in names))
        return
    if args.speed:
        return speed(names)

    ev = evaluator(args.num_samples)
    path = RESULTS_DIR / "sweep.json"
    RESULTS_DIR.mkdir(exist_ok=True)
    saved = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    for name in names:
        row = run_variant(name, VARIANTS[name], args.steps, lambda s, d: ev.evaluate(s, d))
        saved["rows"] = [r for r in saved["rows"] if (r["variant"], r["steps"]) != (name, row["steps"])] + [row]
        saved["machine"] = machine()
        path.write_text(json.dumps(saved, indent=2) + "\n")
        print(f"{name}: FID {row['fid']:.2f} (floor {row['fid_floor']}), readable {row['readable_rate']}, "
              f"{row['img_per_s']:.0f} img/s", flush=True)
    rows = [[r["variant"], r["steps"], r["fid"], r["kid"], r["readable_rate"] or float("nan"), r["img_per_s"]]
            for r in saved["rows"]]
    print(table(rows, ["variant", "steps", "FID", "KID", "readable", "img/s (shared CPU)"]))


if __name__ == "__main__":
    main()
