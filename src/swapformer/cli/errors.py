"""The command line's one error path: a user error becomes ``swapformer <verb>: error: <one line>`` and exit code
2; ``--debug`` (or ``SWAPFORMER_DEBUG=1``) shows the traceback instead. Anything else is a bug of ours and keeps
its traceback.

User errors are swapformer's ``ValueError`` subclasses (``ConfigError``, ``DataError``, ``CheckpointError``, the
parser's ``UsageError``), ``ValueError``s of the verbs' own checks, and ``OSError``s about a file the user named.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import inspect
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from swapformer.cli.bundle import bundled
from swapformer.errors import UsageError, did_you_mean

DEBUG_ENV = "SWAPFORMER_DEBUG"


def debugging() -> bool:
    """Whether tracebacks were asked for (``--debug`` sets ``$SWAPFORMER_DEBUG`` for the run)."""
    return os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")


def user_error(err: BaseException) -> BaseException | None:
    """The user's mistake behind ``err`` (itself or a cause), or None when ``err`` is a bug."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ValueError) and type(current).__module__.startswith("swapformer"):
            return current
        if isinstance(current, OSError) and getattr(current, "filename", None) is not None:
            return current
        current = current.__cause__ or current.__context__
    return None


def read_text(path: str, option: str) -> str:
    """The text of the file ``path`` that the user gave as ``option``; a file that is not UTF-8 text (a binary
    file, another encoding) is named in one line instead of the codec's message.

    Raises:
        ValueError: not UTF-8 text. OSError: no such file (named by the one error path).
    """
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{option} {path} is not UTF-8 text (byte {err.start}: {err.reason}): give a text file, or convert "
            "it with iconv -t utf-8"
        ) from None


def describe(err: BaseException) -> str:
    """The message of a user error, an ``OSError`` as ``<file>: <reason>``."""
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or err}"
    return str(err)


@contextlib.contextmanager
def user_errors(verb: str, *, also: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Turn a user error raised inside into ``swapformer <verb>: error: ...`` and ``SystemExit(2)``.

    Args:
        verb: the verb the message names.
        also: more exception types the verb raises for user mistakes (its own ``ValueError`` checks).
    """
    try:
        yield
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as err:
        cause = err if isinstance(err, also) else user_error(err)
        if cause is None or debugging():
            raise
        print(f"swapformer {verb}: error: {describe(cause)}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


# ---- argparse's messages (swapformer's own verbs), as one line naming the option first ----------------------


class VerbParser(argparse.ArgumentParser):
    """The argument parser of swapformer's own verbs (``generate``, ``evaluate``, ``export``, ...): a mistake on
    the command line raises a :class:`UsageError` of one line naming the option and the fix, which the verb's one
    error path prints, instead of argparse's usage block and its bare ``unrecognized arguments``."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._given = list(sys.argv[1:] if args is None else args)  # error() sees only the message
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(argparse_message(message, self, getattr(self, "_given", [])))


def argparse_message(message: str, parser: argparse.ArgumentParser, given: list[str]) -> str:
    """One line for argparse's ``message`` about the command line ``given`` to ``parser``."""
    listed = f"{parser.prog} --help lists the options"
    options = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    if match := re.match(r"unrecognized arguments: (\S+)", message):
        word = match[1]
        if word.startswith("-"):
            option = word.split("=")[0]
            return f"unknown option {option}{did_you_mean(option, options)}; {listed}"
        before = given[given.index(word) - 1] if word in given[1:] else None
        flags = [o for a in parser._actions if a.nargs == 0 for o in a.option_strings]
        if before in flags:
            return f"{before} takes no value (it is on when given, off when left out): drop {word!r}"
        return f"unexpected argument {word!r}; {listed}"
    if match := re.match(r"argument ([^:]+): invalid (int|float) value: (.*)", message):
        kind = "a whole number" if match[2] == "int" else "a number"
        return f"{_long(match[1])} {match[3]} is not {kind}"
    if match := re.match(r"argument ([^:]+): invalid choice: ('[^']*') \(choose from (.*)\)", message):
        choices = [c.strip().strip("'") for c in match[3].split(",")]
        hint = did_you_mean(match[2].strip("'"), choices)
        return f"{_long(match[1])} {match[2]} is not one of: {', '.join(choices)}{hint}"
    if match := re.match(r"argument ([^:]+): expected one argument", message):
        return f"{_long(match[1])} needs a value; {listed}"
    return f"{message}; {listed}"


def _long(names: str) -> str:
    """The long name of argparse's ``--config/-c``: ``--config``."""
    return next((n for n in names.split("/") if n.startswith("--")), names)


# ---- jsonargparse's messages, as one line naming the key first ----------------------------------------------


def parser_message(message: str, options: Iterable[str] = (), files: Iterable[str] = ()) -> str:
    """One line for a jsonargparse error ``message`` (which lists every type alternative over many lines).

    Args:
        message: what jsonargparse would print after ``error:``.
        options: the parser's option strings, for a did-you-mean on an unknown option.
        files: the recipe files given with ``--config``: a mistake inside one is named with the file.
    """
    text = message.strip()
    files = list(files)
    if match := re.match(r"unrecognized arguments: (\S+)", text):
        option = match[1].split("=")[0]
        return f"unknown option {option}{did_you_mean(option, _leaves(options))}; --help lists the options"
    if match := re.match(r"the following arguments are required: (.*)", text):
        missing = [name.partition(".")[2] or name for name in match[1].split(", ")]
        return (
            f"no {' and no '.join(missing)} given: pass --config NAME|FILE (a recipe; `swapformer recipes` "
            "lists the bundled ones)"
        )
    if match := re.match(_UNKNOWN_KEY, text):
        key = f"{match[1]}.{match[2]}" if match[1] else match[3] or match[4]
        return _unknown_key(key, [o.removeprefix("--") for o in _leaves(options)], files, "--help lists them")
    keys = re.findall(r'Parser key "([^"]+)"', text)
    if not keys:
        return _joined(text)
    key = "--" + (".init_args.".join(keys[:2]) if len(keys) > 1 else keys[0])
    problem = r"Problem with given class_path '([^']+)':\s*((?:module '[^']+' has no attribute|No module named|Option '[^']+' is not accepted).*)"
    if match := re.search(problem, text):
        return _class_problem(key, match[1], match[2], files)
    if match := re.search(r"Option '([^']+)' is not accepted", text):
        option = f"{key}.init_args.{match[1]}"
        siblings = [o for o in options if o.startswith(f"{key}.init_args.")]
        return f"{option} is not an option of this class{did_you_mean(option, siblings)}; --help lists them"
    value = _given_value(text)
    if "Expected a dot import path string" in text or "Expected a path but" in text:
        return (
            f"{key} {value!r} is neither a class path (module.Class) nor a file; a recipe names one with "
            "class_path and init_args"
        )
    choices = _literal_choices(text)
    if choices:
        hint = did_you_mean(value, choices) if value is not None else ""
        return f"{key} {value!r} is not one of: {', '.join(choices)}{hint}"
    expected = [t for t in re.findall(r"Expected a <class '(\w+)'>", text) if t != "NoneType"]
    if expected and value is not None:
        kinds = " or ".join(
            dict.fromkeys({"int": "a whole number", "float": "a number"}.get(t, t) for t in expected)
        )
        return f"{key} {value!r} is not {kinds}"
    return f"{key}: {_joined(text.split(':', 1)[1] if ':' in text else text)}"


_UNKNOWN_KEY = (
    r"Group '([^']+)' does not accept option '([^']+)'|Option '([^']+)' is not accepted"
    r"|Subcommand '\w+' does not accept option '([^']+)'"
)
"""jsonargparse's words for a key no parser has (a recipe file's key; Lightning's verbs are subcommands)."""


def _leaves(options: Iterable[str]) -> list[str]:
    """The long options that are not a group of others (``--trainer.max_steps``, not ``--trainer``)."""
    names = [o for o in options if o.startswith("--")]
    return [o for o in names if not any(other.startswith(o + ".") for other in names)]


def _unknown_key(key: str, choices: list[str], files: list[str], where_listed: str) -> str:
    """``<file>: <key> is not an option (did you mean ...?)``: the file is the recipe that holds the key."""
    file = _file_holding(key, files)
    name = key if file else f"--{key}"
    choices = choices if file else [f"--{c}" for c in choices]
    return (
        f"{file + ': ' if file else ''}{name} is not an option{did_you_mean(name, choices)}; {where_listed}"
    )


def _class_problem(key: str, class_path: str, problem: str, files: list[str]) -> str:
    """A class_path that names no class, or an option its class does not take: one line with a did-you-mean."""
    module_path = class_path.rpartition(".")[0]
    if _is_task_base(class_path):  # no recipe named the model's class: jsonargparse fell back on the base
        return _no_model_class(files)
    if match := re.match(r"Option '([^']+)' is not accepted", problem):
        option = f"{key.removeprefix('--')}.init_args.{match[1]}"
        parameters = _parameters(class_path)
        choices = [f"{key.removeprefix('--')}.init_args.{p}" for p in parameters]
        return _unknown_key(option, choices, files, f"{key}.help {class_path} lists them")
    try:
        module = importlib.import_module(module_path) if module_path else None
    except ImportError:
        module = None
    if module is None:
        return f"{key}: unknown class {class_path}: there is no module {module_path or class_path!r}"
    classes = [
        f"{module_path}.{n}" for n, v in vars(module).items() if isinstance(v, type) and not n.startswith("_")
    ]
    file = _file_holding_value(class_path, files)
    hint = did_you_mean(class_path, classes).replace("'", "")
    where = f"{file}: {key.removeprefix('--')}.class_path" if file else key
    return f"{where}: unknown class {class_path}{hint}"


TASK_BASE = "swapformer.tasks.base.SwapformerModule"
"""The base of the task modules, which trains no kind of model itself: by name, so that the command line's
errors do not load Lightning to recognize it."""


def _is_task_base(class_path: str) -> bool:
    """Whether ``class_path`` names :data:`TASK_BASE` (itself or where a package re-exports it)."""
    module_path, _, name = class_path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_path), name, None)
    except ImportError:
        return False
    return f"{getattr(found, '__module__', '')}.{getattr(found, '__qualname__', '')}" == TASK_BASE


def _no_model_class(files: list[str]) -> str:
    """Model options with no ``model.class_path`` in any recipe: name the recipe that layers over a model recipe
    (``causal_lm/finetune-imported`` over import-hf's ``recipe.yaml``) and the order that fixes it."""
    names = {path.resolve(): name for name, path in bundled().items()}
    shown = {f: names.get(Path(f).resolve(), f) for f in files}
    layered = next((f for f in files if _model_without_class(f)), None)
    if layered is None:
        return (
            "model options given, but no recipe names the model's class (model.class_path): give a model recipe "
            "first, e.g. --config stdlib-tiny (`swapformer recipes` lists them)"
        )
    later = files[files.index(layered) + 1 :]
    model = next((f for f in later if "class_path" in (_recipe(f) or {}).get("model", {})), None)
    if model is not None:  # the model's recipe is there, after the one that layers over it
        return (
            f"{shown[layered]} sets model options but names no model class (model.class_path): it layers over "
            f"a model recipe, given before it: --config {shown[model]} --config {shown[layered]}"
        )
    return (
        f"{shown[layered]} sets model options but names no model class (model.class_path): it layers over a "
        f"model recipe, given before it: --config <model recipe> --config {shown[layered]} (import-hf writes one "
        "as <out>/recipe.yaml; or a bundled one, e.g. stdlib-tiny)"
    )


def _model_without_class(file: str) -> bool:
    node = _recipe(file)
    model = node.get("model") if isinstance(node, dict) else None
    return isinstance(model, dict) and "class_path" not in model


def _parameters(class_path: str) -> list[str]:
    """The keyword parameters of the class ``class_path`` (none when it cannot be imported)."""
    module_path, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_path), name)
        parameters = inspect.signature(cls.__init__).parameters
    except (ImportError, AttributeError, TypeError, ValueError):
        return []
    return [
        p
        for p in parameters
        if p != "self"
        and parameters[p].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]


def _recipe(file: str) -> Any:
    try:
        return yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def _file_holding(key: str, files: list[str]) -> str | None:
    """The last of ``files`` (the one that wins) whose YAML has the dotted ``key``."""
    for file in reversed(files):
        node = _recipe(file)
        for part in key.split("."):
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        if node is not _MISSING:
            return file
    return None


def _file_holding_value(value: str, files: list[str]) -> str | None:
    """The last of ``files`` whose text names ``value`` (a class_path)."""
    return next(
        (
            f
            for f in reversed(files)
            if value in (Path(f).read_text(errors="replace") if Path(f).is_file() else "")
        ),
        None,
    )


_MISSING = object()


def _given_value(text: str) -> str | None:
    for pattern in (r"Got value: (.*)", r"NestedArg\(key='[^']*', val='(.*)'\)", r"Given value: (.*)"):
        if match := re.search(pattern, text):
            return match[1].strip()
    return None


def _literal_choices(text: str) -> list[str]:
    choices: dict[str, None] = {}
    for inside in re.findall(r"Literal\[([^\]]*)\]", text):
        with contextlib.suppress(ValueError, SyntaxError):
            for item in ast.literal_eval(f"[{inside}]"):
                choices[str(item)] = None
    return list(choices)


def _joined(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\n", " ")).strip()


def usage_error(message: str, options: Iterable[str] = (), files: Iterable[str] = ()) -> UsageError:
    """A :class:`UsageError` with :func:`parser_message`'s line."""
    return UsageError(parser_message(message, options, files))
