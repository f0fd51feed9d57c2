"""Every code example in docs/ runs, and every quotation of the source is still in the source.

Fenced blocks, by their info string:

- ```` ```python ````: executed, the blocks of one page in order in one namespace, in a fresh interpreter (only
  the page's own imports) in a scratch folder;
- ```` ```python title="path" ````: a quotation of that file; each of its lines must still be in it;
- ```` ```bash ````: every ``swapformer fit|validate|test|predict`` command is parsed with ``--print_config``
  (recipes found, keys and types valid), every ``swapformer compare`` checked with ``--dry-run``, ``swapformer components`` runs, the options of other subcommands
  (``generate``) are in their ``--help``, and the repository paths named (``scripts/...``) exist; a command
  with a ``<placeholder>`` is a template, and only its paths are checked;
- ```` ```yaml ```` and ```` ```toml ````: parsed;
- ```` ```text ```` or a bare ```` ``` ````: not code (diagrams, layouts, signatures, output).

Snippet lines (``--8<-- "path"``) are expanded first, as pymdownx.snippets does when the site is built.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

import swapformer
from swapformer.cli import run

from .conftest import DOCS, REPO

FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)(?P<attrs>[^\n]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.M | re.S,
)
SNIPPET = re.compile(r'^[ \t]*--8<-- "(?P<path>[^"]+)"[ \t]*$', re.M)
TITLE = re.compile(r'title="(?P<path>[^"]+)"')
PAGES = sorted(p for p in DOCS.rglob("*.md"))
CLI_SUBCOMMANDS = ("fit", "validate", "test", "predict")
PLACEHOLDER = re.compile(r"<[^<>]+>")


def blocks(page: Path) -> list[tuple[str, str, str]]:
    """``(language, attributes, code)`` of every fenced block of ``page``, snippets expanded, dedented."""
    found = []
    for match in FENCE.finditer(page.read_text()):
        indent = match["indent"]
        body = "".join(line.removeprefix(indent) for line in match["body"].splitlines(keepends=True))
        body = SNIPPET.sub(lambda m: (REPO / m["path"]).read_text(), body)
        found.append((match["lang"], match["attrs"].strip(), body))
    return found


def page_id(page: Path) -> str:
    return page.relative_to(DOCS).as_posix()


def test_every_page_has_been_found_and_the_fence_parser_sees_their_blocks():
    assert {"index.md", "concepts/attention.md", "plugins.md", "recipes.md"} <= {page_id(p) for p in PAGES}
    languages = {lang for page in PAGES for lang, _, _ in blocks(page)}
    assert {"python", "bash", "yaml", "text"} <= languages
    unknown = languages - {"python", "bash", "yaml", "toml", "text", ""}
    assert not unknown, f"no test handles code blocks in {unknown}: add them to this file"


@pytest.mark.parametrize(
    "page", [p for p in PAGES if any(lang == "python" for lang, _, _ in blocks(p))], ids=page_id
)
def test_python_examples_run(page, request, tmp_path):
    """The page's python blocks, in order, in a fresh interpreter in a scratch folder: a block sees only what the
    page itself imported and defined, never a module another test happened to import first."""
    paths = [str(Path(swapformer.__file__).parents[1])]
    if page.name == "plugins.md":  # the guide's examples use the installed example plug-in
        paths.insert(0, str(request.getfixturevalue("example_plugin_dir")))
    code = [
        (f"{page_id(page)} (python block {number})", body)
        for number, body in enumerate(
            body for lang, attrs, body in blocks(page) if lang == "python" and not TITLE.search(attrs)
        )
    ]
    script = tmp_path / "page.py"
    script.write_text(RUN_BLOCKS.format(blocks=repr(code)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, (
        f"{page_id(page)}: a python block fails as printed:\n{result.stderr[-3000:]}"
    )


RUN_BLOCKS = """\
import contextlib, io
namespace = {{"__name__": "__main__"}}
for name, code in {blocks}:
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, name, "exec"), namespace)
"""


def quotations() -> list[tuple[Path, str, str]]:
    return [
        (page, TITLE.search(attrs)["path"], code)
        for page in PAGES
        for lang, attrs, code in blocks(page)
        if TITLE.search(attrs)
    ]


@pytest.mark.parametrize(("page", "path", "code"), quotations(), ids=lambda v: getattr(v, "name", None))
def test_quoted_source_lines_are_still_in_the_source(page, path, code):
    source = {line.strip() for line in (REPO / path).read_text().splitlines()}
    missing = [line for line in code.splitlines() if line.strip() and line.strip() not in source]
    assert not missing, f"{page_id(page)} quotes {path}, which no longer has: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_yaml_and_toml_examples_parse(page):
    for lang, _, code in blocks(page):
        if lang == "yaml":
            yaml.safe_load(code)
        elif lang == "toml":
            tomllib.loads(code)


def shell_commands(page: Path) -> list[list[str]]:
    """The commands of the page's bash blocks as argument lists, without comments or ``VAR=value``."""
    commands = []
    for lang, _, code in blocks(page):
        if lang != "bash":
            continue
        for line in code.replace("\\\n", " ").splitlines():
            for part in re.split(r"\s*&&\s*", line):
                words = shlex.split(part, comments=True)
                while words and re.match(r"^\w+=", words[0]):
                    words.pop(0)
                if words:
                    commands.append(words)
    return commands


@pytest.mark.parametrize("page", [p for p in PAGES if shell_commands(p)], ids=page_id)
def test_shell_examples_name_real_recipes_keys_and_files(page, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the commands are written for the repository root
    for words in shell_commands(page):
        for word in words:  # every repository path a command names exists (globs match something)
            if re.match(r"^(recipes|scripts|examples|src|docs|benchmarks)/", word):
                assert list(REPO.glob(word)), f"{page_id(page)}: `{' '.join(words)}` names missing {word}"
        if words[0] != "swapformer" or PLACEHOLDER.search(" ".join(words)):
            continue  # another program, or a template such as `--config <your recipe>`
        if words[1] == "components":
            with contextlib.redirect_stdout(io.StringIO()):
                run(words[1:])
            continue
        if words[1] == "compare" and "--collect" not in words:  # every variant checked as fit would; no run
            with contextlib.redirect_stdout(io.StringIO()):
                run([*_without_option(words[1:], "--emit"), "--dry-run"])
            continue
        if words[1] not in CLI_SUBCOMMANDS:  # e.g. generate: needs a checkpoint; its options must exist
            help_text = io.StringIO()
            with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
                run([words[1], "--help"])
            for option in (w.split("=")[0] for w in words[2:] if w.startswith("--")):
                assert option in help_text.getvalue(), f"{page_id(page)}: `{words[1]}` has no {option}"
            continue
        args = _without_option(words[1:], "--ckpt_path")
        with contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as exit_info:
            run([*args, "--print_config"])
        assert exit_info.value.code in (0, None), f"{page_id(page)}: `{' '.join(words)}` does not parse"


def _without_option(args: list[str], option: str) -> list[str]:
    # --ckpt_path names a checkpoint that only exists after training; the rest of the command must parse
    out, skip = [], False
    for arg in args:
        if not skip and arg != option and not arg.startswith(f"{option}="):
            out.append(arg)
        skip = arg == option
    return out
