"""``swapformer components [family ...] [--matrix]``: every registered member, and which combine.

The matrix is rendered here from the data in :mod:`swapformer.compat` (the documentation renders the same rows).
"""

from __future__ import annotations

import sys
from typing import Any

from swapformer.cli.errors import user_errors
from swapformer.compat import capability_rows, compatibility_rows, cross_attention_kernel
from swapformer.components.positional.base import PositionalEncoding
from swapformer.errors import ConfigError, did_you_mean
from swapformer.layer_specs import LAYER_KEYS
from swapformer.registry import ATTENTION, FAMILIES, load_plugins

# Which capability columns apply to which family (the rest keep their defaults and are not shown).
_COLUMNS = {
    "attention": (
        "kv_cache",
        "padding",
        "torch_export",
        "accepts_score_bias",
        "self_attention_only",
        "exact_softmax",
        "soft_cap",
        "sinks",
        "layer",
        "document_mask",
        "document_spans",
        "cpu_backward",
        "attention_dropout",
    ),
    "positional": ("kv_cache", "padding", "torch_export", "adds_score_bias", "relative"),
}


def format_matrix() -> str:
    """The matrix as text: the attention x positional grid, then each member's capabilities."""
    kernels = ATTENTION.available()
    cells = {(r["attention"], r["positional"]): r for r in compatibility_rows()}
    grid = [
        [position] + ["yes" if cells[kernel, position]["supported"] else "NO" for kernel in kernels]
        for position in FAMILIES["positional"].available()
    ]
    lines = [
        "attention x positional (yes: supported; NO: refused at config time)",
        *_table(["positional \\ attention", *kernels], grid),
    ]
    lines += [
        f"  cross-attention with '{kernel}' uses '{cross_attention_kernel(kernel)}'"
        for kernel in kernels
        if cross_attention_kernel(kernel) != kernel
    ]
    rows = capability_rows()
    for family, columns in _COLUMNS.items():
        table = [
            [r["name"], *("yes" if r[c] else "no" for c in columns), r["notes"]]
            for r in rows
            if r["family"] == family
        ]
        lines += ["", f"{family} members", *_table([family, *columns, "notes"], table)]
    lines += ["", "norm, placement, ffn: every member combines with every other component."]
    lines += ["", *format_tensor_parallel()]
    return "\n".join([*lines, "", *format_layer_spec()])


def format_tensor_parallel() -> list[str]:
    """Which members run under tensor parallelism (``trainer/tp``, ``trainer/fsdp2-tp``) and how each splits."""
    from swapformer.training.distributed import tensor_parallel_rows

    rows = [[r["family"], r["name"], r["supported"], r["split"]] for r in tensor_parallel_rows()]
    return [
        "tensor parallel (yes: split or run by every TP rank; NO: refused at config time). The attention layer "
        "splits W_q, W_k, W_v column-wise by heads and W_o row-wise; TP must divide num_heads and num_kv_heads.",
        *_table(["family", "member", "TP", "how"], rows),
    ]


def format_layer_spec() -> list[str]:
    """What a layer of a patterned model (``layers``) may choose: its keys, and the positional members a layer
    may take (those acting inside attention; one that adds positions to the embeddings is the model's alone)."""
    positional = FAMILIES["positional"]
    inside = [
        n for n in positional.available() if positional.get(n).factory.embed is PositionalEncoding.embed
    ]
    embedding = [n for n in positional.available() if n not in inside]
    return [
        "layers (per-layer specs: a pattern of layer types or one mapping per layer)",
        f"  a layer may set: {', '.join(LAYER_KEYS)}",
        f"  positional per layer: {', '.join(inside)} (each layer's attention applies its own)",
        f"  positional for the whole model only: {', '.join(embedding)} (added to the embeddings)",
    ]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  " + "  ".join(f"{cell!s:<{width}}" for cell, width in zip(row, widths)).rstrip()
        for row in [header, *rows]
    ]


def print_components(families: list[str] | None = None, *, file: Any = None) -> None:
    """Print every registry family with its members' names, descriptions and sources."""
    file = file or sys.stdout
    failed = load_plugins()
    for family in families or list(FAMILIES):
        if family not in FAMILIES:
            raise ConfigError(
                f"unknown component family '{family}'{did_you_mean(family, FAMILIES)}; families: "
                f"{', '.join(FAMILIES)}"
            )
        registry = FAMILIES[family]
        print(f"{family}: {registry.description}", file=file)
        members = registry.describe()
        width = max((len(m.name) for m in members), default=0)
        for member in members:
            source = "" if member.source == "swapformer" else f"  [{member.source}]"
            print(f"  {member.name:<{width}}  {member.description}{source}", file=file)
        print(file=file)
    for key, error in failed.items():
        print(f"plug-in {key} failed to load: {error}", file=file)


def print_matrix(*, file: Any = None) -> None:
    """Print the compatibility matrix (:func:`format_matrix`), plug-ins included."""
    load_plugins()
    print(format_matrix(), file=file or sys.stdout)


def main(argv: list[str]) -> None:
    """``swapformer components`` with the arguments after the verb."""
    if any(a in ("-h", "--help") for a in argv):
        print(
            f"usage: swapformer components [family ...] [--matrix]\n\nfamilies: {', '.join(FAMILIES)}\n"
            "--matrix: which kernels and positional members combine, and what each member supports"
        )
        return
    with user_errors("components"):
        options = [a for a in argv if a.startswith("-") and a != "--matrix"]
        if options:
            raise ConfigError(f"unknown option {options[0]}; the options are [family ...] and --matrix")
        if "--matrix" in argv:
            if len(argv) > 1:  # the matrix covers every family: a family named with it would be ignored
                raise ConfigError(
                    "--matrix shows every family at once: give it alone, or list families without it"
                )
            print_matrix()
        else:
            print_components(argv or None)
