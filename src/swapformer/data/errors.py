"""Exceptions raised by the data layer."""

from __future__ import annotations

from swapformer.errors import ConfigError

__all__ = ["DataError"]


class DataError(ConfigError):
    """A data source, tokenizer or data-module argument is unusable.

    Every message names the offending value (a path, a line number, an argument) and says how to fix it.
    A :class:`~swapformer.errors.ConfigError`, hence a :class:`ValueError`, so the CLI reports it like any
    other configuration mistake.
    """
