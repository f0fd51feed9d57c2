"""The command line's one error path: a user error becomes ``swapformer <verb>: error: <one line>`` and exit code
2; ``--debug`` (or ``SWAPFORMER_DEBUG=1``) shows the traceback instead. Anything else is a bug of ours and keeps
its traceback.

User errors are swapformer's ``ValueError`` subclasses (``ConfigError``, ``DataError``, ``CheckpointError``, the
parser's ``UsageError``), ``ValueError``s of the verbs' own checks, and ``OSError``s about a file the user named.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import sys
from collections.abc import Iterable, Iterator

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


# ---- jsonargparse's messages, as one line naming the key first ----------------------------------------------


def parser_message(message: str, options: Iterable[str] = ()) -> str:
    """One line for a jsonargparse error ``message`` (which lists every type alternative over many lines).

    Args:
        message: what jsonargparse would print after ``error:``.
        options: the parser's option strings, for a did-you-mean on an unknown option.
    """
    text = message.strip()
    if match := re.match(r"unrecognized arguments: (\S+)", text):
        option = match[1].split("=")[0]
        names = [o for o in options if o.startswith("--")]
        names = [o for o in names if not any(other.startswith(o + ".") for other in names)]  # leaves only
        return f"unknown option {option}{did_you_mean(option, names)}; --help lists the options"
    if match := re.match(r"the following arguments are required: (.*)", text):
        missing = [name.partition(".")[2] or name for name in match[1].split(", ")]
        return (
            f"no {' and no '.join(missing)} given: pass --config NAME|FILE (a recipe; `swapformer recipes` "
            "lists the bundled ones)"
        )
    keys = re.findall(r'Parser key "([^"]+)"', text)
    if not keys:
        return _joined(text)
    key = "--" + (".init_args.".join(keys[:2]) if len(keys) > 1 else keys[0])
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


def usage_error(message: str, options: Iterable[str] = ()) -> UsageError:
    """A :class:`UsageError` with :func:`parser_message`'s line."""
    return UsageError(parser_message(message, options))
