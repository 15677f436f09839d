"""Helpers shared by the benchmarks: interleaved timing, tables, JSON results, machine facts."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

from common.cpu import cpu_model

RESULTS_DIR = Path(__file__).parent / "results"


def machine() -> dict:
    """What a number was measured on: every table says it (CPU model and AVX-512 matter ~2x here)."""
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            **cpu_model()}


def interleaved(variants: dict, rounds: int) -> dict[str, list[float]]:
    """Call each variant once per round, in turn (A B C A B C ...), so drift on a shared machine
    hits all of them alike. Each call returns a measurement; all are kept."""
    results = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            results[name].append(fn())
    return results


def median(values) -> float:
    return float(statistics.median(values))


def table(rows: list[list], headers: list[str]) -> str:
    cells = [headers] + [[f"{c:.4g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in cells[1:]])


def save(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), "unix_time": time.time(), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def keep_row(path: Path, saved: dict, row: dict, key) -> None:
    """Put `row` into `saved["rows"]` in place of any with the same `key(row)` and write `path` at
    once, so an interrupted benchmark keeps its finished rows and a rerun replaces, not repeats, one."""
    saved["rows"] = [r for r in saved["rows"] if key(r) != key(row)] + [row]
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(saved, indent=2) + "\n")


def fit_rate(model, dataset, steps: int, batch_size: int, steps_per_execution: int = 1) -> float:
    """Images/s of `model.fit` over `steps` steps, timed between batch ends so that the first call
    (which may trace the train function) is left out."""
    import keras

    stamps = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stamps.append(time.perf_counter())

    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False, callbacks=[Timer()])
    return (len(stamps) - 1) * steps_per_execution * batch_size / (stamps[-1] - stamps[0])
