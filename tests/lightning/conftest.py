"""Fixtures of the Lightning tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in a scratch folder so recipes' relative ``runs/`` outputs land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
