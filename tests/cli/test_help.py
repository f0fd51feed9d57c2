"""``--help`` as a user reads it: plain words, no reStructuredText markup from the docstrings it is made of."""

from __future__ import annotations

import re

import pytest

from swapformer.cli import VERBS, main


@pytest.mark.parametrize("verb", ["generate", "evaluate", "export", "import-hf", "check"])
def test_verb_help_has_no_restructuredtext(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: swapformer {verb}")
    markup = re.findall(r"``|:\w+:`|^\s*::\s*$|::$", text, flags=re.M)
    assert not markup, f"{verb} --help shows reST: {markup}\n{text}"


MARKUP = re.compile(r"``|:\w+:`|^\s*::\s*$|::$", flags=re.M)


@pytest.mark.parametrize(
    "args",
    [
        ["fit", "--help"],
        ["fit", "--config", "stdlib-tiny", "--model.help", "swapformer.tasks.CausalLMModule"],
        ["fit", "--config", "stdlib-tiny", "--data.help", "swapformer.data.CausalLMDataModule"],
        ["fit", "--config", "stdlib-tiny", "--trainer.logger.help", "lightning.pytorch.loggers.CSVLogger"],
    ],
    ids=["fit", "model-class", "data-class", "logger-class"],
)
def test_fit_help_has_no_restructuredtext(args, capsys):
    """fit's help is LightningCLI's, made of Lightning's docstrings and ours, and the parsers jsonargparse builds
    for ``--X.help CLASS``: each shows its options in plain words too."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--trainer.max_steps" in text or "Help for" in text, text[:500]
    markup = MARKUP.findall(text)
    assert not markup, f"{' '.join(args)} shows reST: {markup}"


@pytest.mark.parametrize("verb", sorted(set(VERBS) - {"components"}))  # components reads its own few words
def test_every_argparse_verb_says_a_command_line_mistake_in_one_line(verb, capsys):
    """argparse prints its usage block and exits; swapformer's verbs say one line, the option and the fix."""
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--outt", "x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"swapformer {verb}: error: "), err
