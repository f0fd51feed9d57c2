"""A verb's module docstring as its ``--help`` text: the reStructuredText that Sphinx reads, in plain words.

Example:
    >>> print(plain("Decode with ``--ckpt_path`` (:mod:`swapformer.cli.errors`)::\\n\\n    swapformer generate"))
    Decode with --ckpt_path (swapformer.cli.errors):
    <BLANKLINE>
        swapformer generate
"""

from __future__ import annotations

import argparse
import re

from jsonargparse import DefaultHelpFormatter


def plain(doc: str | None) -> str:
    """``doc`` without reST markup: ``literal`` and :role:`target` as their text, a ``::`` that opens a code block
    as ``:``, and a line holding only ``::`` dropped."""
    text = doc or ""
    text = re.sub(r"^[ \t]*::[ \t]*\n", "", text, flags=re.M)  # a code block's marker on its own line
    text = re.sub(r"\n{3,}", "\n\n", text)
    text = re.sub(r"::$", ":", text, flags=re.M)  # "... as follows::"
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)  # :mod:`x`, :class:`~x.Y`
    text = re.sub(r"``([^`]+)``", r"\1", text)
    return text.strip("\n")


class PlainHelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help formatter with each option's help in plain words: ``fit --help`` shows Lightning's and
    our docstrings, which are reStructuredText written for Sphinx."""

    def _expand_help(self, action: argparse.Action) -> str:
        return plain(super()._expand_help(action))

    def start_section(self, heading: str | None) -> None:  # a group's title: a class docstring's first line
        super().start_section(plain(heading) if heading else heading)

    def _format_text(self, text: str) -> str:  # a group's description: a class docstring
        return super()._format_text(plain(text))
