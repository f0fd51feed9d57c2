"""Where the bundled recipes are: ``swapformer/recipes`` in a wheel (setup.py copies the repository's
``recipes/`` there at build time), ``recipes/`` read in place in a source checkout or an editable install.

Apart from :mod:`swapformer.cli.recipes` (the verb, and recipes found by name) so that the command line's error
messages (:mod:`swapformer.cli.errors`) can name a bundled recipe without importing the verb that imports them.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]
_CHECKOUT = _PACKAGE.parents[1] / "recipes"  # src/swapformer -> the repository root


def recipe_dir() -> Path:
    """The folder of bundled recipes: ``swapformer/recipes`` in a wheel, ``recipes/`` in a checkout."""
    installed = _PACKAGE / "recipes"
    return installed if installed.is_dir() else _CHECKOUT


def bundled() -> dict[str, Path]:
    """Every bundled recipe by its full name (``causal_lm/stdlib-tiny``), sorted."""
    root = recipe_dir()
    paths = root.rglob("*.yaml") if root.is_dir() else []
    # sorted by name, not by path: "trainer/fsdp2" before "trainer/fsdp2-tp" (as paths, "-" sorts before ".")
    return dict(sorted((p.relative_to(root).with_suffix("").as_posix(), p) for p in paths))
