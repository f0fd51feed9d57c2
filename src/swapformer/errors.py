"""Errors raised for user mistakes: each names the bad value and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A configuration problem, or several reported at once.

    Args:
        problems: one sentence per problem, each naming the value and the fix.
        title: first line of the message.
    """

    def __init__(self, problems: str | list[str], *, title: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1 and title is None:
            message = self.problems[0]
        else:
            head = title or "invalid configuration"
            message = (
                f"{head} ({len(self.problems)} problem{'s' * (len(self.problems) != 1)}):\n"
                + "\n".join(f"  - {p}" for p in self.problems)
            )
        super().__init__(message)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or ''.

    A choice that ``name`` starts with, or that starts with ``name`` (3 characters at least), comes first:
    ``prenorm`` means ``pre`` more likely than ``deepnorm``.
    """
    text, choices = str(name), list(choices)
    prefixed = [
        c for c in choices if min(len(c), len(text)) >= 3 and (text.startswith(c) or c.startswith(text))
    ]
    close = sorted(prefixed, key=len, reverse=True)[:1] or difflib.get_close_matches(
        text, choices, n=1, cutoff=0.5
    )
    return f" (did you mean '{close[0]}'?)" if close else ""


class TrainingError(ValueError):
    """A run that cannot go on (a non-finite loss): one line naming the step, the likely causes and the fix.

    A ``ValueError`` so that the command line prints it as ``swapformer fit: error: ...`` with exit code 2.
    """


class StoppedBySignal(SystemExit):
    """Ends a run that a SIGTERM or SIGINT stopped, after its checkpoint is saved
    (:class:`~swapformer.training.signals.SaveOnSignal`); the exit code is 128 + the signal's number."""


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used: missing, a folder, not a checkpoint, truncated, written by another
    program, or refused because loading it would run code. The message names the file and says what it is."""


class UsageError(ConfigError):
    """A command line the parser rejected (an unknown option, a value of the wrong type), as one line."""
