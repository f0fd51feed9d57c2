"""``swapformer recipes``: the recipes bundled with the package, found by name.

::

    swapformer recipes                        # every bundled recipe and its one-line purpose
    swapformer recipes cp stdlib-tiny my.yaml # a copy to edit
    swapformer fit --config stdlib-tiny       # a name instead of a path, wherever --config is accepted

A name is a recipe's path below ``recipes/`` without ``.yaml`` (``causal_lm/stdlib-tiny``, ``trainer/ddp``) or,
when only one recipe has it, its file name alone (``stdlib-tiny``, ``ddp``). An existing file always wins over a
name. The repository's ``recipes/`` folder is the only copy: a wheel carries it as ``swapformer/recipes``
(setup.py copies it at build time), and a source checkout or an editable install reads it in place.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from swapformer.cli.bundle import bundled
from swapformer.cli.errors import VerbParser, user_errors
from swapformer.data.tokenizers import TOKENIZER_KINDS
from swapformer.errors import ConfigError, did_you_mean


def purpose(path: Path) -> str:
    """The recipe's one-line purpose: its first comment line."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def find(name: str, *, option: str = "--config") -> Path:
    """The bundled recipe called ``name`` (full name, unique file name, or either with ``recipes/`` and
    ``.yaml`` around it).

    Raises:
        ConfigError: no recipe has that name, or several share it (the message lists them).
    """
    recipes = bundled()
    key = name.removeprefix("recipes/").removesuffix(".yaml").removesuffix(".yml")
    if key in recipes:
        return recipes[key]
    matches = [full for full in recipes if full.rpartition("/")[2] == key]
    if len(matches) == 1:
        return recipes[matches[0]]
    if matches:
        raise ConfigError(f"recipe name {name!r} is ambiguous: use one of {', '.join(matches)}")
    hint = did_you_mean(key, [*recipes, *{full.rpartition("/")[2] for full in recipes}])
    raise ConfigError(
        f"{option} {name!r} is neither a file nor a bundled recipe{hint}; `swapformer recipes` lists them"
    )


def _is_name(value: str) -> bool:
    # --config also takes inline YAML ("{trainer: {max_steps: 2}}"): only a bare word is a name
    return not Path(value).exists() and not any(c in value for c in ":{}[]\n =")


def resolve_config_args(argv: list[str]) -> list[str]:
    """``argv`` with every ``--config NAME`` / ``-c NAME`` / ``--config=NAME`` that is not a file replaced by
    the bundled recipe's path; a file that is not valid YAML is named, with the line of the mistake. A relative
    ``init_from`` or tokenizer path in a recipe file is read relative to the file (:func:`relative_paths`).

    Raises:
        ConfigError: an unknown recipe name, or a recipe file with a YAML syntax error.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config", "-c") and i + 1 < len(argv):
            value = str(find(argv[i + 1])) if _is_name(argv[i + 1]) else argv[i + 1]
            out += [arg, value, *relative_paths(value)]
            i += 2
            continue
        if arg.startswith("--config="):
            value = arg.partition("=")[2]
            value = str(find(value)) if _is_name(value) else value
            out += [f"--config={value}", *relative_paths(value)]
        else:
            out.append(arg)
        i += 1
    return out


PATH_KEYS = (("model", "init_from"), ("data", "tokenizer"))
"""The recipe values that name a file or folder (``section.init_args.key``)."""


def relative_paths(path: str) -> list[str]:
    """Options that give the relative paths of the recipe file ``path`` (``init_from: .``, as ``import-hf``
    writes it beside the model) as seen from the working folder: a path in a recipe file is relative to the
    file when it exists there, so the recipe keeps working wherever the command runs and wherever its folder
    moves. Nothing for inline YAML, absolute paths, tokenizer kinds or a recipe in the working folder.

    Raises:
        ConfigError: the file is not valid YAML.
    """
    config = check_yaml(path)
    folder = Path(path).parent
    if not isinstance(config, dict) or folder.resolve() == Path.cwd().resolve():
        return []
    options = []
    for section, key in PATH_KEYS:
        init_args = (
            config.get(section, {}).get("init_args") if isinstance(config.get(section), dict) else None
        )
        value = init_args.get(key) if isinstance(init_args, dict) else None
        if (
            not isinstance(value, str)
            or value in TOKENIZER_KINDS
            or "://" in value
            or Path(value).is_absolute()
        ):
            continue
        if (folder / value).exists():
            options.append(f"--{section}.init_args.{key}={os.path.normpath(folder / value)}")
    return options


def check_yaml(path: str) -> Any:
    """The contents of the YAML file ``path`` (None for inline YAML and names: jsonargparse's to read); a
    one-line :class:`ConfigError` when it is not valid YAML."""
    file = Path(path)
    if not file.is_file():
        return None
    try:
        return yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path} is not a text file: give a YAML recipe") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"--config {path}:{where}: YAML syntax error: {problem}; fix the file") from None


def list_recipes() -> None:
    recipes = bundled()
    width = max(map(len, recipes), default=0)
    for name, path in recipes.items():
        print(f"{name:<{width}}  {purpose(path)}")


def copy(name: str, dest: str) -> Path:
    """Copy the recipe ``name`` to ``dest`` (a file, or a folder to copy into); never overwrites. The copy's runs go
    to ``runs/<its name>`` (``my.yaml``: ``runs/my``), not into the bundled recipe's folder."""
    source = find(name, option="recipe")
    target = Path(dest)
    if target.is_dir() or dest.endswith(("/", "\\")):
        target = target / source.name
    if target.exists():
        raise ConfigError(f"{target} already exists; pass another destination")
    target.parent.mkdir(parents=True, exist_ok=True)
    text = source.read_text(encoding="utf-8")
    own = re.sub(
        rf"^(\s*default_root_dir:\s*)runs/{re.escape(source.stem)}\s*$",
        lambda m: f"{m[1]}runs/{target.stem}",
        text,
        flags=re.M,
    )
    target.write_text(own, encoding="utf-8")
    return target


def main(argv: list[str]) -> None:
    parser = VerbParser(
        allow_abbrev=False,
        prog="swapformer recipes",
        description="List the bundled recipes, or copy one to edit. Any of these names works as "
        "`--config NAME`; a file of that name in the working folder takes precedence.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("ls", help="list the bundled recipes (the default)")
    cp = commands.add_parser("cp", help="copy a bundled recipe to edit it")
    cp.add_argument("name", help="e.g. stdlib-tiny or causal_lm/stdlib-tiny")
    cp.add_argument("dest", help="a file name, or a folder to copy into")
    with user_errors("recipes"):
        args = parser.parse_args(argv)
        if args.command == "cp":
            print(f"copied {find(args.name, option='recipe')} to {copy(args.name, args.dest)}")
        else:
            list_recipes()
