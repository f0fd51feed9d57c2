"""The compatibility matrix: what each member supports, and which combinations a model may use.

Each member declares its :class:`Capabilities` as a class attribute ``capabilities`` (a member without one, such
as a plug-in written before this module, gets the defaults: it works everywhere). Two rules follow from them:

- A positional member that adds a score bias (``alibi``, ``t5_relative``) needs a kernel that can add a float
  mask to the scores. ``linear`` never forms the ``L x S`` scores, so the pair is **refused**: a
  :class:`~swapformer.errors.ConfigError` from :meth:`ModelConfig.problems` names both and a working alternative.
- A kernel that only makes sense for self-attention (``sliding_window``: a window over the *source* has no
  meaning) **falls back** for cross-attention to the full kernel it names (``sdpa``); the builder logs it.

The same data feeds ``swapformer components --matrix`` (:mod:`swapformer.cli.components`) and the documentation
(:func:`capability_rows`, :func:`compatibility_rows`).

Example:
    >>> [r for r in compatibility_rows() if not r["supported"]][0]["attention"]
    'linear'
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Protocol

from swapformer.errors import ConfigError
from swapformer.layer_specs import distinct_layers
from swapformer.registry import (
    ATTENTION,
    DEFAULT,
    FAMILIES,
    Capabilities,
    ComponentSpec,
    capabilities,
    split_spec,
)


class Pair(Protocol):
    """What :func:`problems` reads of a config (a :class:`~swapformer.config.ModelConfig`, which imports this
    module): its kernel and its positional member."""

    attention: ComponentSpec
    positional: ComponentSpec | None


_GENERAL = ("kv_cache", "padding", "torch_export")


def combination_problem(*, attention: ComponentSpec, positional: ComponentSpec) -> str | None:
    """Why kernel ``attention`` cannot run with ``positional`` (one sentence naming an alternative), or None."""
    kernel, position = (
        split_spec(attention, where="attention")[0],
        split_spec(positional, where="positional")[0],
    )
    if not capabilities("positional", position).adds_score_bias:
        return None
    if capabilities("attention", kernel).accepts_score_bias:
        return None
    kernels = [n for n in ATTENTION.available() if capabilities("attention", n).accepts_score_bias]
    plain = [
        n for n in FAMILIES["positional"].available() if not capabilities("positional", n).adds_score_bias
    ]
    return (
        f"positional '{position}' adds a score bias, which attention '{kernel}' cannot apply (it never forms the "
        f"L x S score matrix); use attention {_quoted(kernels)} with '{position}', or keep '{kernel}' with "
        f"positional {_quoted(plain)}"
    )


def problems(config: Pair) -> list[str]:
    """Refused combinations in ``config``, one sentence each (empty when every pair works).

    Names that are unknown are left to the registries' own checks.
    """
    try:
        problem = combination_problem(attention=config.attention, positional=config.positional)
    except ConfigError:  # unknown names or malformed specs: reported by the registries' own checks
        return []
    return [] if problem is None else [f"attention + positional: {problem}"]


def document_mask_problem(config: Any) -> str | None:
    """Why a model of ``config`` (a :class:`~swapformer.config.ModelConfig`) cannot train on packed rows with a
    document mask (``document_ids``): one sentence naming the kernel that declares ``document_mask=False`` and the
    fixes, or None."""
    specs = [
        ("attention", config.attention),
        *((f"{w}.attention", s.attention) for w, s in distinct_layers(config)),
    ]
    for where, spec in specs:
        kernel = split_spec(spec, where="attention")[0]
        if not capabilities("attention", kernel).document_mask:
            kernels = [n for n in ATTENTION.available() if capabilities("attention", n).document_mask]
            return (
                f"{where} '{kernel}' cannot keep attention within each document of a packed row (document_ids); "
                f"use attention {_quoted(kernels)}, or pack without the mask (document_mask: false)"
            )
    return None


def training_problem(config: Any, device_type: str) -> str | None:
    """Why a model of ``config`` cannot be trained on a ``device_type`` device (``cpu``, ``cuda``): one sentence
    naming the kernel and the fix, or None. A kernel declaring ``cpu_backward=False`` has no backward on CPU
    (``flex``); one declaring ``attention_dropout=False`` cannot apply the model's ``dropout`` to its weights."""
    specs = [
        ("attention", config.attention),
        *((f"{w}.attention", s.attention) for w, s in distinct_layers(config)),
    ]
    for where, spec in specs:
        kernel = split_spec(spec, where="attention")[0]
        declared = capabilities("attention", kernel)
        if device_type == "cpu" and not declared.cpu_backward:
            return (
                f"{where} '{kernel}' cannot train on CPU (torch has no backward for it there); train with "
                "attention sdpa (the same numbers), or on a GPU; evaluate and generate run on CPU"
            )
        if config.dropout > 0 and not declared.attention_dropout:
            return (
                f"{where} '{kernel}' has no dropout on the attention weights but the model has dropout="
                f"{config.dropout:g}; set model dropout: 0.0, or train with attention sdpa"
            )
    return None


def document_spans(config: Any) -> bool:
    """Whether a model of ``config`` may hand packed rows' documents to its kernels as spans (every kernel, the
    layers' too, declares ``document_spans`` and no positional member adds a score bias, which needs the dense
    ``L x L`` mask); the dense block-diagonal mask otherwise."""
    members = [(config.attention, config.positional)]
    members += [(spec.attention, spec.positional) for _, spec in distinct_layers(config)]
    for attention, positional in members:
        if not capabilities("attention", split_spec(attention, where="attention")[0]).document_spans:
            return False
        if positional is not None:
            name = split_spec(positional, where="positional")[0]
            if capabilities("positional", name).adds_score_bias:
                return False
    return True


def cross_attention_kernel(attention: ComponentSpec) -> ComponentSpec:
    """The kernel spec cross-attention uses: ``attention`` itself, or the full kernel a self-attention-only
    kernel names (``sliding_window`` -> ``sdpa``)."""
    declared = capabilities("attention", attention)
    if declared.self_attention_only:
        return declared.cross_attention or "sdpa"
    return attention


def capability_rows() -> list[dict[str, Any]]:
    """One row per registered member: ``family``, ``name``, ``source``, every capability field, ``notes``.

    Example:
        >>> row = next(r for r in capability_rows() if r["name"] == "linear")
        >>> row["family"], row["accepts_score_bias"]
        ('attention', False)
    """
    rows = []
    for family, registry in FAMILIES.items():
        for member in registry.describe():
            declared = capabilities(family, member.name)
            rows.append({"family": family, "name": member.name, "source": member.source, **asdict(declared)})
    return rows


def compatibility_rows() -> list[dict[str, Any]]:
    """One row per (attention kernel, positional member) pair, the cells of the matrix.

    Keys: ``attention``, ``positional``, ``supported`` (False = refused at config time), ``reason`` (why not,
    naming an alternative; empty when supported), ``cross_attention`` (the kernel cross-attention uses),
    ``kv_cache``, ``padding``, ``torch_export`` (both members support it). Norms, placements and feed-forward
    members combine freely with everything, so they have no pair rows.
    """
    rows = []
    for kernel in ATTENTION.available():
        kernel_caps = capabilities("attention", kernel)
        for position in FAMILIES["positional"].available():
            position_caps = capabilities("positional", position)
            reason = combination_problem(attention=kernel, positional=position)
            rows.append(
                {
                    "attention": kernel,
                    "positional": position,
                    "supported": reason is None,
                    "reason": reason or "",
                    "cross_attention": cross_attention_kernel(kernel),
                    **{k: getattr(kernel_caps, k) and getattr(position_caps, k) for k in _GENERAL},
                }
            )
    return rows


def _quoted(names: list[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return " or ".join(quoted) if len(quoted) < 3 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


__all__ = [
    "DEFAULT",
    "Capabilities",
    "capabilities",
    "capability_rows",
    "combination_problem",
    "compatibility_rows",
    "cross_attention_kernel",
    "document_mask_problem",
    "problems",
]
