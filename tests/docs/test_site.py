"""The documentation site builds with no warning, reads offline, and its catalogue is the registries' content.

This is where the site is built in CI (`mkdocs build --strict`, every warning an error), once.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from swapformer import compat
from swapformer.registry import FAMILIES

from .conftest import DOCS, REPO


def load_hooks():
    spec = importlib.util.spec_from_file_location("swapformer_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env={
            **os.environ,
            "NO_MKDOCS_2_WARNING": "1",
        },  # Material's notice about MkDocs 2, not a build warning
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "WARNING" not in log, log
    return out


def test_every_page_of_the_nav_is_built(site):
    config = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)  # BaseLoader: no !tags

    def pages(nav):
        for item in nav:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            yield from pages(value) if isinstance(value, list) else [value]

    for page in pages(config["nav"]):
        assert (site / page.replace(".md", ".html")).is_file(), page


def test_formulas_are_mathml_and_nothing_is_fetched_from_the_network(site):
    attention = (site / "concepts" / "attention.html").read_text()
    assert attention.count("<math") >= 6
    assert 'class="arithmatex"' not in attention  # every marked formula was converted
    for page in site.rglob("*.html"):
        html = page.read_text()
        external = re.findall(r'<(?:script|link|img)\b[^>]*(?:src|href)="(https?:)?//[^"]*"', html)
        assert not external, f"{page.relative_to(site)} loads {external} from the network"
        assert "fonts.googleapis" not in html and "fonts.gstatic" not in html


def test_pictures_are_in_the_site_and_commit_sized(site):
    pictures = ("attention-dates.png", "sinusoidal.png", "training-curves.png")
    for name in (*pictures, "softcap.png", "rope-scaling.png", "layer-patterns.png"):
        picture = DOCS / "assets" / name
        assert picture.stat().st_size < 200_000, f"{name} is {picture.stat().st_size} bytes"
        assert (site / "assets" / name).is_file()
    assert 'src="../assets/attention-dates.png"' in (site / "concepts" / "attention.html").read_text()
    assert 'src="../assets/softcap.png"' in (site / "concepts" / "attention.html").read_text()
    assert 'src="../assets/layer-patterns.png"' in (site / "concepts" / "layers.html").read_text()


def test_catalogue_pages_show_every_member_with_its_options(site):
    for family, registry in FAMILIES.items():
        html = (site / "catalogue" / f"{family}.html").read_text()
        for member in registry.describe():
            assert f'id="{member.name}"' in html, (family, member.name)
    rope = (site / "catalogue" / "positional.html").read_text()
    assert "<code>base</code>" in rope and "<code>10000.0</code>" in rope


def test_catalogue_markdown_is_generated_from_the_registries_and_the_matrix():
    pages = load_hooks().catalogue_pages()
    assert set(pages) == {"catalogue/index.md", *(f"catalogue/{f}.md" for f in FAMILIES)}
    norm = pages["catalogue/norm.md"]
    assert "| `eps` | `float` | `1e-05` | you (recipe or mapping) |" in norm  # layernorm's own option
    assert "| `d_model` | `int` | required | the model (from its config) |" in norm
    index = pages["catalogue/index.md"]
    for row in compat.compatibility_rows():
        if not row["supported"]:
            line = next(li for li in index.splitlines() if li.startswith(f"| `{row['positional']}` |"))
            assert "**no**" in line
            assert row["reason"] in pages["catalogue/attention.md"]


def test_installed_plugins_appear_in_the_catalogue(example_plugin):
    pages = load_hooks().catalogue_pages()
    assert "## `softcap`" in pages["catalogue/attention.md"]
    assert "`swapformer_plugin_example`" in pages["catalogue/attention.md"]
    assert "| `cap` | `float` | `50.0` | you (recipe or mapping) |" in pages["catalogue/attention.md"]
    assert "## `reglu`" in pages["catalogue/ffn.md"]


def test_math_conversion_reports_the_formula_it_cannot_read():
    hooks = load_hooks()
    html = '<p><span class="arithmatex">\\(a &lt; b\\)</span></p>'
    assert hooks.mathml(html).startswith("<p><math")
    assert "<mo>&#x0003C;</mo>" in hooks.mathml(html)  # the HTML-escaped "<" is read as TeX "<"
    with pytest.raises(ValueError, match=r"formula '\\\\left\( x' to MathML: ExtraLeftOrMissingRightError"):
        hooks.mathml('<div class="arithmatex">\\[\\left( x\\]</div>')
    with pytest.raises(ValueError, match=r"unknown command \\sofmax"):
        hooks.mathml('<span class="arithmatex">\\(\\sofmax(x)\\)</span>')


def test_every_recipe_is_listed_on_the_recipes_page(site):
    html = (site / "recipes.html").read_text()
    for recipe in sorted((REPO / "recipes").rglob("*.yaml")):
        assert recipe.relative_to(REPO).as_posix() in html, recipe
