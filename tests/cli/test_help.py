"""``--help`` as a user reads it: plain words, no reStructuredText markup from the docstrings it is made of."""

from __future__ import annotations

import re

import pytest

from swapformer.cli import main


@pytest.mark.parametrize("verb", ["generate", "evaluate", "export", "import-hf", "check"])
def test_verb_help_has_no_restructuredtext(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: swapformer {verb}")
    markup = re.findall(r"``|:\w+:`|^\s*::\s*$|::$", text, flags=re.M)
    assert not markup, f"{verb} --help shows reST: {markup}\n{text}"
