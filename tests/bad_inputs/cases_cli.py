"""Command-line mistakes: verbs, options and their values."""

from __future__ import annotations

from .harness import Case

CASES = [
    Case(
        id="unknown-recipe-name",
        area="CLI",
        mistake="`swapformer fit --config` with a recipe name that does not exist",
        expect=r"stdlib-tinyy.*swapformer recipes",
        argv=lambda fx: ["fit", "--config", "stdlib-tinyy"],
    ),
    Case(
        id="generate-missing-checkpoint",
        area="checkpoint",
        mistake="`swapformer generate --ckpt_path` of a file that does not exist",
        expect=r"missing\.ckpt",
        argv=lambda fx: ["generate", "--ckpt_path", "missing.ckpt", "--prompt", "hi"],
    ),
]
