"""What README and BENCHMARKS say is what the code does. No TensorFlow."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import REPO, documentation_text
from training.config import RESUMABLE_KEYS

README = documentation_text()  # README.md and docs/*.md


def _paragraph(text: str, containing: str) -> str:
    return " ".join(next(p for p in text.split("\n\n") if containing in p).split())


def test_the_readme_names_every_flag_that_may_change_on_resume():
    said = _paragraph(README, "On resume these may change")
    flags = {"--" + key.replace("_", "-") for key in RESUMABLE_KEYS - {"output_dir"}}  # where, not a flag to change
    assert not {flag for flag in flags if f"`{flag}`" not in said}


def test_the_readme_promises_no_benchmark_time_it_does_not_keep():
    said = _paragraph(README, "benchmarks/results/<name>.json")
    assert "within 10 minutes" not in said and "about 35 minutes" in said


def test_benchmark_results_are_not_ignored_by_git():
    ignored = subprocess.run(["git", "check-ignore", "-q", "benchmarks/results/quality.json"], cwd=REPO)
    assert ignored.returncode == 1, "benchmarks/results/ is ignored: the raw numbers behind BENCHMARKS.md get lost"


def test_the_readme_calls_the_inception_fid_what_it_is():
    assert "standard Inception FID" not in README
    assert "not comparable with published FIDs" in README


def test_the_sweeps_default_row_is_the_default_recipe():
    """BENCHMARKS.md's tables name the default by its sweep row: that row must be TrainConfig's defaults."""
    from benchmarks.sweep import DEFAULT, VARIANTS
    from training.config import TrainConfig

    defaults = TrainConfig()
    differs = {k: (v, getattr(defaults, k)) for k, v in VARIANTS[DEFAULT].items() if getattr(defaults, k) != v}
    assert not differs, f"the sweep's {DEFAULT!r} row differs from TrainConfig's defaults: {differs}"


def test_no_history_or_tracker_words_in_readme_docs_or_code():
    """History lives in benchmarks/HISTORY.md, keyed by commit: a work session's or a tracker issue's
    number means nothing to a reader of the repository (the tracker is not in it)."""
    words = re.compile(r"\b(session|issue)s? #?\d+", re.IGNORECASE)
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    checked = [p for p in tracked if p.endswith((".py", ".md", ".toml", ".yaml", ".yml", ".sh", ".cfg"))
               and p != "benchmarks/HISTORY.md"]
    assert len(checked) > 100
    found = [f"{path}:{n}: {line.strip()[:80]}" for path in checked
             for n, line in enumerate((REPO / path).read_text(errors="replace").splitlines(), 1) if words.search(line)]
    assert not found, "history belongs in benchmarks/HISTORY.md (keyed by commit):\n" + "\n".join(found)
