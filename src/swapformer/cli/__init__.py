"""The ``swapformer`` command: one file per verb.

::

    swapformer fit --config stdlib-tiny [--config logger/wandb] [--key value]  # a bundled recipe or a file
    swapformer validate|test|predict --config ... --ckpt_path last            # the newest last.ckpt of the root
    swapformer prepare SOURCE --tokenizer T --out DIR         # a corpus tokenized once into token shards
    swapformer recipes [cp NAME DEST]                         # the bundled recipes; a copy to edit
    swapformer generate --ckpt_path last.ckpt --prompt "..."   # decode with a checkpoint
    swapformer evaluate --ckpt_path last.ckpt --path FILE     # perplexity (seq2seq: --src F --ref F: BLEU, chrF)
    swapformer components [family ...] [--matrix]            # every registered component; what combines
    swapformer check NAME                                     # the conformance suite for one component
    swapformer compare --config NAME --vary KEY=V1,V2 --seeds 1,2,3   # variants at an equal budget, tabulated
    swapformer import-hf HF_DIR --out DIR                     # a Hugging Face model as components + recipe
    swapformer export --ckpt_path last.ckpt --out DIR [--format hf]   # a checkpoint's model and tokenizer

A user error of any verb prints ``swapformer VERB: error: <one line>`` and exits with code 2 (see
:mod:`swapformer.cli.errors`); ``--debug`` anywhere on the line, or ``SWAPFORMER_DEBUG=1``, shows the traceback.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING

import torch

from swapformer.cli.errors import DEBUG_ENV, user_errors
from swapformer.errors import StoppedBySignal, UsageError, did_you_mean

if TYPE_CHECKING:
    from swapformer.cli.fit import SwapformerCLI


def _verb(module: str, function: str = "main") -> Callable[[list[str]], None]:
    """A verb's entry point, imported when the verb runs: ``swapformer fit`` does not pay for sacrebleu, the
    conformance suite or the interop code."""

    def call(argv: list[str]) -> None:
        getattr(_import_verb(module), function)(argv)

    return call


def _import_verb(module: str) -> ModuleType:
    """Import ``swapformer.cli.<module>`` with the garbage collector paused, then freeze what is alive.

    A verb's import (Lightning with torch._dynamo and torchmetrics, for fit) leaves ~470,000 objects tracked, and
    the collector, left on, walks them all in full collections five times over: about 0.5 s of the start-up on
    2 CPU cores, for almost no garbage. Frozen afterwards, the modules stay out of every later collection too
    (the run's own objects are collected as usual), and the interpreter's shutdown no longer walks them (about
    1 s at the end of a fit). Once per process: a later call finds the module imported.
    """
    name = f"swapformer.cli.{module}"
    if name in sys.modules:  # imported before: nothing to pause, nothing new to freeze
        return sys.modules[name]
    collecting = gc.isenabled()
    gc.disable()
    try:
        return importlib.import_module(name)
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


VERBS = {
    "prepare": _verb("prepare"),
    "generate": _verb("generate"),
    "evaluate": _verb("evaluate"),
    "check": _verb("check"),
    "components": _verb("components"),
    "compare": _verb("compare"),
    "recipes": _verb("recipes"),
    "import-hf": _verb("interop", "import_hf"),
    "export": _verb("interop", "export"),
}
"""Verbs of swapformer's own; every other verb (fit, validate, test, predict) is LightningCLI's."""

HELP = {
    "fit": "train a model from a recipe (LightningCLI: --config NAME|FILE, --key value, --print_config)",
    "validate": "the validation metrics of a checkpoint (--ckpt_path FILE|last)",
    "test": "the test metrics of a checkpoint (--ckpt_path FILE|last)",
    "predict": "a checkpoint's predictions on the recipe's data",
    "prepare": "tokenize a corpus once into token shards that fit reads by memory map (--tokenizer, --out)",
    "generate": "decode text with a checkpoint (--ckpt_path, --prompt)",
    "evaluate": "perplexity and bits per byte of a text file (seq2seq: BLEU and chrF of --src against --ref)",
    "components": "every registered component, by family; which combine (--matrix)",
    "check": "run the conformance suite on one component",
    "compare": "train variants of a recipe at an equal budget over seeds; a table with spread and p-values",
    "recipes": "the bundled recipes with their purpose; `recipes cp NAME DEST` copies one to edit",
    "import-hf": "a Hugging Face model as swapformer components, weights and a recipe",
    "export": "a checkpoint's model and tokenizer as a folder (--format hf for Hugging Face)",
}
"""One line per verb for ``swapformer --help``."""

LIGHTNING_VERBS = ("fit", "validate", "test", "predict")


def usage() -> str:
    width = max(map(len, HELP))
    lines = [f"  {verb:<{width}}  {text}" for verb, text in HELP.items()]
    return "\n".join(
        [
            "usage: swapformer VERB [options]     (swapformer VERB --help: the verb's options)",
            "",
            "verbs:",
            *lines,
            "",
            "Recipes: `swapformer recipes` lists them; every output of a run lies under --trainer.default_root_dir.",
        ]
    )


def run(args: list[str] | None = None) -> SwapformerCLI | None:
    """Run the command and return the CLI object (its ``model``, ``datamodule``, ``trainer``) for the Lightning
    verbs, None for the others. ``args`` replaces ``sys.argv[1:]``, so tests call it in-process."""
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        raise SystemExit(0 if argv else 2)
    if argv[0] in VERBS:
        with user_errors(argv[0]):
            VERBS[argv[0]](argv[1:])
        return None
    if argv[0] not in LIGHTNING_VERBS:
        with user_errors(argv[0]):
            verbs = [*LIGHTNING_VERBS, *VERBS]
            raise UsageError(
                f"unknown verb {argv[0]!r}{did_you_mean(argv[0], verbs)}; verbs: {', '.join(verbs)}"
            )
    return _import_verb("fit").run(None if args is None else argv)


def main(args: list[str] | None = None) -> None:
    """Entry point of ``swapformer`` (the console script); see :func:`run` for the same with a return value.

    ``--debug`` is taken off the command line and sets ``$SWAPFORMER_DEBUG`` for the run (processes that DDP
    starts inherit it): user errors then show their traceback.
    """
    argv = list(sys.argv[1:] if args is None else args)
    if "--debug" not in argv:
        with closing_process_group():
            run(args)
        return
    argv = [a for a in argv if a != "--debug"]
    if args is None:
        sys.argv[1:] = argv  # DDP's launcher re-runs sys.argv in every process
    previous = os.environ.get(DEBUG_ENV)
    os.environ[DEBUG_ENV] = "1"
    try:
        with closing_process_group():
            run(None if args is None else argv)
    finally:
        if previous is None:
            os.environ.pop(DEBUG_ENV, None)
        else:
            os.environ[DEBUG_ENV] = previous


@contextlib.contextmanager
def closing_process_group() -> Iterator[None]:
    """Destroy the process group a DDP / FSDP2 run made once the command is done with it.

    Lightning destroys it at exit for NCCL only; a gloo group left to the interpreter's shutdown has worker
    threads still alive while Python is torn down, and the process then sometimes aborts (SIGABRT,
    "terminate called without an active exception") after a run that succeeded. Done after a normal end and
    after a stop on a signal (every process stops at the same step, see :mod:`swapformer.training.signals`); not
    after another error, where the other processes may still be inside a collective and the call could hang.
    """
    try:
        yield
    except StoppedBySignal:
        _destroy_process_group()
        raise
    _destroy_process_group()


def _destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
