"""The ``swapformer`` command: one file per verb.

::

    swapformer fit --config recipes/causal_lm/stdlib-tiny.yaml [--config recipes/logger/wandb.yaml] [--key value]
    swapformer validate|test|predict --config ... --ckpt_path path/to/last.ckpt
    swapformer generate --ckpt_path last.ckpt --prompt "..."   # decode with a checkpoint
    swapformer evaluate --ckpt_path last.ckpt --path FILE     # perplexity (seq2seq: --src F --ref F: BLEU, chrF)
    swapformer components [family ...] [--matrix]            # every registered component; what combines
    swapformer check NAME                                     # the conformance suite for one component
    swapformer import-hf HF_DIR --out DIR                     # a Hugging Face model as components + recipe
    swapformer export --ckpt_path last.ckpt --out DIR [--format hf]   # a checkpoint's model and tokenizer
"""

from __future__ import annotations

import sys

from swapformer.cli import check, components, evaluate, fit, generate, interop

VERBS = {
    "generate": generate.main,
    "evaluate": evaluate.main,
    "check": check.main,
    "components": components.main,
    "import-hf": interop.import_hf,
    "export": interop.export,
}
"""Verbs of swapformer's own; every other verb (fit, validate, test, predict) is LightningCLI's."""


def run(args: list[str] | None = None) -> fit.SwapformerCLI | None:
    """Run the command and return the CLI object (its ``model``, ``datamodule``, ``trainer``) for the Lightning
    verbs, None for the others. ``args`` replaces ``sys.argv[1:]``, so tests call it in-process."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in VERBS:
        VERBS[argv[0]](argv[1:])
        return None
    return fit.run(None if args is None else argv)


def main(args: list[str] | None = None) -> None:
    """Entry point of ``swapformer`` (the console script); see :func:`run` for the same with a return value."""
    run(args)


if __name__ == "__main__":
    main()
