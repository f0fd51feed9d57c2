"""Fixtures of the Lightning tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in a scratch folder so recipes' relative ``runs/`` outputs land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """The 6-step fits on one process, under DDP and under FSDP2 (2 processes each) that the scale-out tests
    compare with (:func:`scaleout_testlib.make_runs`): made once, when a test first asks for them."""
    from scaleout_testlib import make_runs

    return make_runs(tmp_path_factory.mktemp("scaleout"))
