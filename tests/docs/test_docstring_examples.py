"""The ``>>>`` examples in swapformer's docstrings run: the site shows them (API reference, catalogue)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import swapformer

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(swapformer.__path__, prefix="swapformer.")
    if not info.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        if test.examples and test.filename and test.filename.startswith(swapformer.__path__[0]):
            runner.run(test, out=lambda _: None)
    failures = runner.summarize(verbose=False).failed if runner.tries else 0
    assert failures == 0, (
        f"{failures} docstring example(s) of {name} fail; see them with "
        f"python -m pytest --doctest-modules {module.__file__}"
    )
