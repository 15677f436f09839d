"""Photos at equal wall clock: the photo recipe, the rows it was chosen from, and two peers, on CIFAR-10.

    python -m benchmarks.photos --minutes 10 --seeds 0,1,2                   # photo recipe vs the peers
    python -m benchmarks.photos --minutes 3 --only "photos|width 16" --seeds 0   # screening rows
    python -m benchmarks.photos --report                                     # the saved table

Every row trains on CIFAR-10's 50,000 train photos (`<cifar10>/train/<class>/*.jpg`, the layout of
`../shared/data/cifar10`) for `--minutes` of wall clock (what a user pays for; data loading and
model building are not counted, for ours or the peers), one run at a time, seed-major (seed 0's rows
first, in the order given, then seed 1's: drift on a shared machine hits every row alike), and is
scored by `metrics.evaluator` against the 10,000 test photos, which none of them trained on: FID and
KID in the features of the shipped CIFAR-10 classifier, readable rate, class KL, and the floor (10,000
train photos scored the same way). Our rows are `python -m training.run --dataset folder --data-dir
<cifar10>/train --image-size 32 --channels 3` plus the row's flags, so "photos" is exactly what a user
who describes photos gets. The peers are adapted to 32x32x3 as little as possible
(`benchmarks.references`): the seeds' MLP GAN with a 3,072-pixel output layer, and the keras-io DCGAN
with its original 8x8 start and its first two upsampling blocks. Rows accumulate in
benchmarks/results/photos.json, so an interrupted run keeps its finished rows. Run it on an otherwise
idle machine: about rows x seeds x (`--minutes` + 1) minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, keep_row, machine, table
from common.quiet import quiet_tensorflow

CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
PEERS = ("seeds' MLP GAN", "keras-io DCGAN")
# Our rows: flags on top of what `--dataset folder ... --image-size 32 --channels 3` gives. "photos" is
# whatever the photo recipe is now; every other row starts from the digit recipe and writes out what
# it changes, so a row keeps its meaning when the photo recipe moves (the digit recipe is the dataclass).
DIGITS = {"recipe": "digits"}
W32 = {**DIGITS, "width": 32, "upsampling": "nearest", "d_lr": 4e-4, "g_lr": 4e-4}
W16 = {**W32, "width": 16}
VARIANTS: dict[str, dict] = {
    "photos": {},  # the photo recipe, chosen by the data's shape
    "digits recipe": DIGITS,  # what colour photos got before the photo recipe
    "width 32, nearest, lr 4e-4": W32,
    "width 32, pixelshuffle, lr 4e-4": {**W32, "upsampling": "pixelshuffle"},
    "width 32, nearest, lr 1.6e-3": {**W32, "d_lr": 1.6e-3, "g_lr": 1.6e-3},
    "width 32, nearest, lr 2e-4": {**W32, "d_lr": 2e-4, "g_lr": 2e-4},
    "width 24, nearest, lr 4e-4": {**W32, "width": 24},
    "width 16, nearest, lr 4e-4": W16,
    "width 16, pixelshuffle, lr 4e-4": {**W16, "upsampling": "pixelshuffle"},
    "width 16, nearest, lr 8e-4": {**W16, "d_lr": 8e-4, "g_lr": 8e-4},
    "width 16, nearest, lr 2e-4": {**W16, "d_lr": 2e-4, "g_lr": 2e-4},
    "width 12, nearest, lr 4e-4": {**W32, "width": 12},
    "width 32, D width 16, nearest, lr 4e-4": {**W32, "d_width": 16},
    "width 16, nearest, lr 4e-4, translation,color": {**W16, "diffaugment": "translation,color"},
    "width 16, nearest, lr 4e-4, no R1/R2": {**W16, "r1_gamma": 0.0, "r2_gamma": 0.0},
    "width 16, nearest, lr 4e-4, R1/R2 every 16": {**W16, "r1_every": 16},
    "width 16, nearest, lr 4e-4, EMA 20 kimg": {**W16, "ema_kimg": 20.0},
    "width 16, nearest, lr 4e-4, batch 128": {**W16, "batch_size": 128},
    "width 16, nearest, lr 4e-4, conditional": {**W16, "conditional": True},
    "resnet width 32, hinge, lr 2e-4": {**DIGITS, "arch": "resnet", "loss": "hinge", "width": 32,
                                        "d_lr": 2e-4, "g_lr": 2e-4},
}


def load_cifar10(root: Path):
    from training.data import load_folder

    return load_folder(root / "train", 32, 3, labelled=True), load_folder(root / "test", 32, 3, labelled=True)


def train_ours(root: Path, overrides: dict, minutes: float, seed: int, output_dir: str):
    """One of our rows, trained into `output_dir`: (sampler, steps, batch size, seconds)."""
    from export.artifacts import load_sampler
    from training.config import TrainConfig
    from training.trainer import train

    config = TrainConfig.from_dict({"dataset": "folder", "data_dir": str(root / "train"), "image_size": 32,
                                    "channels": 3, **overrides, "epochs": 10**6, "max_minutes": minutes,
                                    "seed": seed, "verbose": 0, "checkpoint_every": 10**9,
                                    "output_dir": output_dir, "overwrite": True})  # a kept row is redone
    started = time.monotonic()
    result = train(config.validate())
    seconds = time.monotonic() - started
    return load_sampler(Path(result.run_dir) / "generator.keras"), result.global_step, config.batch_size, seconds


def train_peer(name: str, unit_images, minutes: float, seed: int):
    """A peer on images in [-1, 1]: (sample function, latent size, steps, batch size, seconds)."""
    from benchmarks.references import keras_io_dcgan, seed_gan

    started = time.monotonic()
    if name == PEERS[0]:
        gan = seed_gan.SeedGAN(seed, image_shape=unit_images.shape[1:])
        steps = gan.train(unit_images, minutes)
        return gan.sample, seed_gan.LATENT_DIM, steps, seed_gan.BATCH_SIZE, time.monotonic() - started
    sample, steps = keras_io_dcgan.train(unit_images, minutes, seed=seed)
    return sample, keras_io_dcgan.LATENT_DIM, steps, keras_io_dcgan.BATCH_SIZE, time.monotonic() - started


def select(only: str | None) -> list[str]:
    names = list(VARIANTS) + list(PEERS)
    if not only:
        return ["photos", *PEERS]
    wanted = [w.strip() for w in only.split("|")]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise SystemExit(f"unknown row(s) {unknown}; the rows are: {', '.join(names)}")
    return wanted


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="Wall-clock training budget per row.")
    parser.add_argument("--seeds", default="0,1,2", help="Comma list of seeds; every row runs once per seed.")
    parser.add_argument("--only", help="Rows to run, separated by | (default: photos and the two peers); see --list.")
    parser.add_argument("--cifar10", default=str(CIFAR10), help="Folder holding train/<class>/ and test/<class>/.")
    parser.add_argument("--num-samples", type=int, default=10_000, help="Generated images scored per row.")
    parser.add_argument("--keep", metavar="DIR", help="Keep our rows' run directories under DIR (to export or "
                        "look at them), as DIR/<row>-seed<N>-<minutes>min, replaced when the row runs again; default: deleted "
                        "after scoring.")
    parser.add_argument("--list", action="store_true", help="List the rows and exit.")
    parser.add_argument("--report", action="store_true", help="Print the saved table without training.")
    args = parser.parse_args(argv)
    path = RESULTS_DIR / "photos.json"
    saved = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    if args.list:
        return print("\n".join([f"{n}: {v}" for n, v in VARIANTS.items()] + [f"{p}: a peer" for p in PEERS]))
    if args.report:
        return print(summary(saved["rows"]))
    names, root = select(args.only), Path(args.cifar10)
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        parser.error(f"--cifar10 {root} must hold train/<class>/ and test/<class>/ image folders.")
    quiet_tensorflow()  # after parsing, so --help answers without loading TensorFlow

    from metrics.classifier import to_unit_range
    from metrics.evaluator import Evaluator

    train, test = load_cifar10(root)
    evaluator = Evaluator(train.images, train.labels, reference_images=test.images, reference_labels=test.labels,
                          num_samples=args.num_samples)
    unit = to_unit_range(train.images)
    print(f"CIFAR-10: {len(train)} train, {len(test)} test photos; classifier {evaluator.classifier.describe()}; "
          f"floor FID {evaluator.floor['fid']:.3f}", flush=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in names:
            with tempfile.TemporaryDirectory() as tmp:
                if name in PEERS:
                    sample, latent_dim, steps, batch, seconds = train_peer(name, unit, args.minutes, seed)
                    num_classes = None
                else:
                    where = (Path(args.keep) if args.keep else Path(tmp)) / (
                        f"{name.replace(' ', '_').replace(',', '').replace('/', '-')}-seed{seed}-{args.minutes:g}min")
                    sampler, steps, batch, seconds = train_ours(root, VARIANTS[name], args.minutes, seed, str(where))
                    sample, latent_dim, num_classes = sampler.sample, sampler.latent_dim, sampler.num_classes
                result = evaluator.evaluate(sample, latent_dim, num_classes)
            row = {"variant": name, "flags": VARIANTS.get(name), "seed": seed, "minutes": args.minutes,
                   "steps": steps, "batch_size": batch, "train_seconds": seconds, "fid": result["fid"],
                   "kid": result["kid"], "readable_rate": result.get("readable_rate"),
                   "class_kl": result.get("class_coverage", {}).get("kl_from_real"),
                   "fid_floor": result["fid_real_vs_real"], "classifier": result["classifier"], "machine": machine()}
            keep_row(path, saved, row, lambda r: (r["variant"], r["minutes"], r["seed"]))
            print(f"{args.minutes:g} min | {name} seed {seed}: FID {row['fid']:.3f} (floor {row['fid_floor']:.3f}), "
                  f"{steps} steps of {batch}", flush=True)
    print(summary(saved["rows"]))


def summary(rows: list[dict]) -> str:
    """Mean and spread per (row, budget), then ours over the best peer at every seed."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["variant"], r["minutes"]), []).append(r)
    lines = [[v, f"{m:g} min", len(g), statistics.mean(r["fid"] for r in g), min(r["fid"] for r in g),
              max(r["fid"] for r in g), statistics.mean(r["readable_rate"] or 0.0 for r in g),
              statistics.mean(r["steps"] for r in g)]
             for (v, m), g in sorted(groups.items(), key=lambda kv: (kv[0][1], statistics.mean(r["fid"] for r in kv[1])))]
    text = table(lines, ["row", "budget", "seeds", "FID mean", "min", "max", "readable", "steps"])
    verdicts = []
    for minutes in sorted({r["minutes"] for r in rows}):
        at = {(r["variant"], r["seed"]): r["fid"] for r in rows if r["minutes"] == minutes}
        for seed in sorted({s for v, s in at if v == "photos"}):
            peers = [at[(p, seed)] for p in PEERS if (p, seed) in at]
            if peers:
                ratio = at[("photos", seed)] / min(peers)
                verdicts.append(f"{minutes:g} min, seed {seed}: photos / best peer = {ratio:.3f} "
                                f"({'meets' if ratio <= 0.5 else 'misses'} the 0.5x goal)")
    return "\n".join([text, *verdicts])


if __name__ == "__main__":
    main()
