"""``benchmarks/extrapolation.py`` runs end to end on a small text (2 steps), and says what to do without data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "extrapolation.py"


@pytest.mark.slow
def test_the_study_runs_and_writes_its_tables_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    text = tmp_path / "input.txt"
    text.write_text(
        "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 300
    )
    out = tmp_path / "extrapolation.png"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(text), "--steps", "2", "--windows", "2", "--lengths", "64",
         "128", "--positional", "learned", "sinusoidal:scaled", "alibi", "--out", str(out), "--threads", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| positional | train loss | L=64 | L=128 | L=128 / L=64 |" in done.stdout
    assert "| `sinusoidal:scaled` |" in done.stdout
    assert "| positional | 0-63 | 64-127 |" in done.stdout
    assert out.stat().st_size > 10_000


def test_missing_data_names_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "nowhere" / "input.txt"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(missing), "--steps", "1", "--out", ""],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"tiny shakespeare not found at {missing}; pass --data path/to/input.txt" in done.stderr
