"""The wheel carries the repository's ``recipes/`` as ``swapformer/recipes`` (package data copied at build
time, so that folder stays the only copy); everything else is in pyproject.toml. An editable install or a
source checkout reads ``recipes/`` in place (swapformer.cli.bundle.recipe_dir)."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

RECIPES = Path(__file__).resolve().parent / "recipes"


class BuildWithRecipes(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for source in sorted(RECIPES.rglob("*.yaml")):
            target = Path(self.build_lib, "swapformer", "recipes", source.relative_to(RECIPES))
            self.mkpath(str(target.parent))
            self.copy_file(str(source), str(target))


setup(cmdclass={"build_py": BuildWithRecipes})
