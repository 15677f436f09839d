"""Quality per minute: one seed of the default recipe for the data, scored at wall-clock marks.

    python -m benchmarks.curve --data cifar10 --marks 5,10,30,60      # about 70 minutes
    python -m benchmarks.curve --data mnist --marks 1,2,5,10          # about 15 minutes
    python -m benchmarks.curve --report --plot docs/quality_curve.png # the saved table and its plot

One run directory trains in legs: the first leg for the first mark's minutes, each later leg resumes
the same run (the trainer's own resume, exactly as after a crash) for the minutes up to the next
mark, and the generator each leg writes is scored before the next leg starts, so scoring never eats
training time. The recipe has no learning-rate schedule tied to the run's length, so the run at its
30-minute mark is what a 30-minute run is (each leg pays its own start-up, ~10 s of tracing, inside
its budget). A mark's minutes are `--max-minutes` as a user gives it; the table also shows the
seconds the legs really took, start-up included.

Scores: `cifar10` trains on `<cifar10>/train` (what `--dataset folder --data-dir ... --image-size 32
--channels 3` gives: the photo recipe) and scores against the 10,000 test photos; `mnist` is the
default run (`python -m training.run`, embedded digits) scored against the 10,000 MNIST test digits in
../shared/data/mnist-test. Both in the shipped domain classifiers' features (`metrics.evaluator`).
Rows accumulate in benchmarks/results/curve.json (keyed by data, mark and seed). Run it on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, keep_row, machine, table
from common.quiet import quiet_tensorflow

DATA = ("cifar10", "mnist")
DEFAULT_MARKS = {"cifar10": "5,10,30,60", "mnist": "1,2,5,10"}


def parse_marks(text: str) -> list[float]:
    """"5,10,30" -> [5.0, 10.0, 30.0]: positive and strictly increasing, or a one-line error."""
    try:
        marks = [float(m) for m in text.split(",") if m.strip()]
    except ValueError:
        raise SystemExit(f"--marks {text!r}: give minutes separated by commas, e.g. 5,10,30,60.") from None
    if not marks or marks[0] <= 0 or any(b <= a for a, b in zip(marks, marks[1:])):
        raise SystemExit(f"--marks {text!r}: the minutes must be positive and increasing, e.g. 5,10,30,60.")
    return marks


def data_flags(data: str, cifar10: Path) -> dict:
    """The TrainConfig values a user would give for the data; everything else is the default recipe."""
    if data == "cifar10":
        return {"dataset": "folder", "data_dir": str(cifar10 / "train"), "image_size": 32, "channels": 3}
    return {}


def make_evaluator(data: str, cifar10: Path, num_samples: int):
    if data == "cifar10":
        from benchmarks.photos import load_cifar10
        from metrics.evaluator import Evaluator

        train, test = load_cifar10(cifar10)
        return Evaluator(train.images, train.labels, reference_images=test.images, reference_labels=test.labels,
                         num_samples=num_samples)
    from benchmarks.sweep import evaluator

    return evaluator(num_samples)


def run_curve(data: str, marks: list[float], seed: int, run_dir: Path, cifar10: Path, num_samples: int,
              record) -> None:
    """Train `run_dir` leg by leg to each mark; `record(row)` after scoring each one."""
    from export.artifacts import load_sampler
    from training.config import TrainConfig
    from training.trainer import train

    evaluator = make_evaluator(data, cifar10, num_samples)
    print(f"{data}: classifier {evaluator.classifier.describe()}; floor FID {evaluator.floor['fid']:.3f}", flush=True)
    seconds, previous = 0.0, 0.0
    for mark in marks:
        config = TrainConfig.from_dict({**data_flags(data, cifar10), "epochs": 10**6, "max_minutes": mark - previous,
                                        "seed": seed, "verbose": 0, "checkpoint_every": 10**9,
                                        "output_dir": str(run_dir)})
        started = time.monotonic()
        result = train(config.validate())
        seconds += time.monotonic() - started
        previous = mark
        sampler = load_sampler(run_dir / "generator.keras")
        scores = evaluator.evaluate(sampler.sample, sampler.latent_dim, sampler.num_classes)
        record({"data": data, "minutes": mark, "seed": seed, "steps": result.global_step,
                "batch_size": config.batch_size, "leg_seconds_total": seconds, "fid": scores["fid"],
                "kid": scores["kid"], "readable_rate": scores.get("readable_rate"),
                "fid_floor": scores["fid_real_vs_real"], "reference": scores["reference"],
                "classifier": scores["classifier"], "machine": machine()})


def summary(rows: list[dict]) -> str:
    """One table per data set: FID at each mark, and how much each mark gained over the one before."""
    parts = []
    for data in DATA:
        mine = sorted((r for r in rows if r["data"] == data), key=lambda r: (r["seed"], r["minutes"]))
        if not mine:
            continue
        lines, before = [], {}
        for r in mine:
            change = f"{r['fid'] - before[r['seed']]:+.2f}" if r["seed"] in before else ""
            before[r["seed"]] = r["fid"]
            lines.append([f"{r['minutes']:g}", r["seed"], r["steps"], f"{r['leg_seconds_total'] / 60:.1f}",
                          round(r["fid"], 2), change, r["readable_rate"] or 0.0, round(r["fid_floor"], 3)])
        m = mine[-1]["machine"]
        parts.append(f"{data} ({m.get('cpu', '?')}, AVX-512: {'yes' if m.get('avx512') else 'no'}, "
                     f"{m.get('cpus')} cores)\n" + table(lines, ["minutes", "seed", "steps", "took (min)", "FID",
                                                                "change", "readable", "floor"]))
    return "\n\n".join(parts) or "no rows yet"


def plot(rows: list[dict], path: Path) -> None:
    """FID against minutes, one panel per data set, log-scaled time (the marks span 1 to 60 minutes)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    present = [d for d in DATA if any(r["data"] == d for r in rows)]
    if not present:
        raise SystemExit("no rows to plot yet: run python -m benchmarks.curve --data cifar10 (or mnist) first.")
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.4), squeeze=False)
    for ax, data in zip(axes[0], present):
        mine = [r for r in rows if r["data"] == data]
        for seed in sorted({r["seed"] for r in mine}):
            points = sorted((r["minutes"], r["fid"]) for r in mine if r["seed"] == seed)
            ax.plot(*zip(*points), marker="o", label=f"seed {seed}")
        floor = min(r["fid_floor"] for r in mine)
        ax.axhline(floor, color="grey", linestyle=":", label=f"floor {floor:.2f}")
        m = mine[-1]["machine"]
        ax.set(xscale="log", xlabel="training minutes (log scale)", ylabel="FID (lower is better)",
               title=f"{data}: {m.get('cpus')} cores, AVX-512 {'yes' if m.get('avx512') else 'no'}")
        marks = sorted({r["minutes"] for r in mine})
        ax.set_xticks(marks, [f"{x:g}" for x in marks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # the marks only, no 2x10^1
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fig.savefig(partial, format="png", dpi=110)  # written whole, then renamed: never a half PNG
    plt.close(fig)
    partial.replace(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=DATA, help="What to train on and score against (see above).")
    parser.add_argument("--marks", help="Increasing training minutes to score at (default: cifar10 5,10,30,60; "
                        "mnist 1,2,5,10).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cifar10", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"),
                        help="Folder holding train/<class>/ and test/<class>/ image folders.")
    parser.add_argument("--num-samples", type=int, default=10_000, help="Generated images scored per mark.")
    parser.add_argument("--results", default=str(RESULTS_DIR / "curve.json"), help="The JSON file rows accumulate in.")
    parser.add_argument("--keep", metavar="DIR", help="Train into DIR (kept) instead of a temporary directory.")
    parser.add_argument("--plot", metavar="PNG", help="Also draw the saved rows into this PNG.")
    parser.add_argument("--report", action="store_true", help="Print the saved table (and --plot) without training.")
    args = parser.parse_args(argv)
    path = Path(args.results)
    saved = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    if not args.report:
        if not args.data:
            parser.error("--data is required unless --report is given.")
        cifar10 = Path(args.cifar10)
        if args.data == "cifar10" and not ((cifar10 / "train").is_dir() and (cifar10 / "test").is_dir()):
            parser.error(f"--cifar10 {cifar10} must hold train/<class>/ and test/<class>/ image folders.")
        marks = parse_marks(args.marks or DEFAULT_MARKS[args.data])
        if args.keep and Path(args.keep).exists():
            parser.error(f"--keep {args.keep} exists; give a new directory (the first leg would resume what is there).")
        quiet_tensorflow()  # after parsing, so --help answers without loading TensorFlow

        def record(row):
            keep_row(path, saved, row, lambda r: (r["data"], r["minutes"], r["seed"]))
            print(f"{row['data']} {row['minutes']:g} min seed {row['seed']}: FID {row['fid']:.3f} "
                  f"(floor {row['fid_floor']:.3f}), {row['steps']} steps", flush=True)

        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(args.keep) if args.keep else Path(tmp) / "run"
            run_curve(args.data, marks, args.seed, run_dir, cifar10, args.num_samples, record)
    print(summary(saved["rows"]))
    if args.plot:
        plot(saved["rows"], Path(args.plot))
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
