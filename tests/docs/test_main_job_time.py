"""The main job's time is one figure wherever it is given (README, docs, the recipe's purpose line)."""

from __future__ import annotations

import re

from .conftest import DOCS, REPO

PLACES = {
    "README.md": REPO / "README.md",
    "docs/index.md": DOCS / "index.md",
    "docs/recipes.md": DOCS / "recipes.md",
    "stdlib-tiny.yaml": REPO / "recipes" / "causal_lm" / "stdlib-tiny.yaml",
}


def test_the_main_job_takes_one_stated_time_everywhere():
    stated = {}
    for name, path in PLACES.items():
        text = " ".join(path.read_text().split())  # lines joined: a figure may wrap
        stated[name] = set(re.findall(r"about ([\d.]+) (?:CPU )?minutes", text))
    figures = set().union(*stated.values())
    assert all(stated.values()), f"a place gives no time: {stated}"
    assert len(figures) == 1, f"the main job's time is given several ways: {stated}"
