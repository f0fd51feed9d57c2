"""Fixtures of the Lightning tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from filelock import FileLock


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in a scratch folder so recipes' relative ``runs/`` outputs land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """The 6-step fits on one process, under DDP and under FSDP2 (2 processes each) that the scale-out tests
    compare with (:func:`scaleout_testlib.make_runs`): made once a session, when a test first asks for them.

    Under pytest-xdist the workers share them through the session's temporary folder, under a file lock: the
    first worker to ask makes them, another one waiting meanwhile reads them. The ``xdist_group`` mark of the
    root conftest should send every test that asks to one worker, but with pytest 9.2 and pytest-xdist 3.8 it
    does not take (pytest-dev/pytest-xdist#1386: ``--dist loadgroup`` renames the tests with their group, which
    pytest 9.2's node ids ignore), and CI made the fits on both workers.
    """
    from scaleout_testlib import make_runs

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return make_runs(tmp_path_factory.mktemp("scaleout"))
    shared = tmp_path_factory.getbasetemp().parent  # the session's, above each worker's popen-gwN
    made = shared / "scaleout" / "runs.json"
    with FileLock(shared / "scaleout.lock"):
        if not made.exists():
            out = make_runs(shared / "scaleout")
            made.write_text(json.dumps({name: [str(root), output] for name, (root, output) in out.items()}))
        return {name: (Path(root), output) for name, (root, output) in json.loads(made.read_text()).items()}
