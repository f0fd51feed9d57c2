"""Fixtures of the documentation tests: the example plug-in, installed the way pip installs any package."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from swapformer.registry import FAMILIES, load_plugins

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
EXAMPLE_PLUGIN = REPO / "examples" / "swapformer-plugin-example"
registry_module = importlib.import_module("swapformer.registry")  # `swapformer.registry` is also a function


@pytest.fixture(scope="session")
def example_plugin_dir(tmp_path_factory) -> Path:
    """The example plug-in installed by pip into a folder of its own (offline: no dependencies, no build
    isolation), from a copy so that the build leaves nothing in the repository."""
    root = tmp_path_factory.mktemp("plugin")
    source, target = root / "source", root / "site-packages"
    shutil.copytree(
        EXAMPLE_PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture
def example_plugin(example_plugin_dir, monkeypatch) -> Path:
    """The installed example plug-in on ``sys.path`` and loaded, for one test; registries restored after."""
    monkeypatch.syspath_prepend(str(example_plugin_dir))
    for family in FAMILIES.values():
        monkeypatch.setattr(family, "_members", dict(family._members))
    monkeypatch.setattr(registry_module, "_loaded_entry_points", set(registry_module._loaded_entry_points))
    assert load_plugins(force=True) == {}
    yield example_plugin_dir
    for name in [m for m in sys.modules if m.startswith("swapformer_plugin_example")]:
        del sys.modules[name]
