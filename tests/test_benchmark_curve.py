"""benchmarks.curve: a run trained in resumed legs, scored at each mark, tabled and plotted."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_python


@pytest.mark.parametrize("text", ["", "5,x", "0,5", "10,5", "5,5"])
def test_marks_must_be_positive_and_increasing(text):
    from benchmarks.curve import parse_marks

    with pytest.raises(SystemExit, match="--marks"):
        parse_marks(text)


def test_marks_parse():
    from benchmarks.curve import parse_marks

    assert parse_marks("1, 2,5.5") == [1.0, 2.0, 5.5]


@pytest.mark.slow
def test_a_tiny_digit_curve_resumes_one_run_and_plots_it(tmp_path):
    results, png, run = tmp_path / "curve.json", tmp_path / "curve.png", tmp_path / "run"
    result = run_python("-m", "benchmarks.curve", "--data", "mnist", "--marks", "0.04,0.1", "--num-samples", "500",
                        "--results", str(results), "--plot", str(png), "--keep", str(run), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(results.read_text())["rows"]
    assert [r["minutes"] for r in rows] == [0.04, 0.1]
    assert 0 < rows[0]["steps"] < rows[1]["steps"], "the second leg resumes the first leg's run"
    assert all(r["fid"] > 0 and r["fid_floor"] >= 0 for r in rows)
    assert (run / "generator.keras").is_file() and (run / "config.json").is_file()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    assert "mnist (" in result.stdout and "| 0.1 " in result.stdout

    again = run_python("-m", "benchmarks.curve", "--data", "mnist", "--keep", str(run), "--results", str(results))
    assert again.returncode == 2 and "exists; give a new directory" in again.stderr
    report = run_python("-m", "benchmarks.curve", "--report", "--results", str(results))
    assert report.returncode == 0 and "| 0.04 " in report.stdout
