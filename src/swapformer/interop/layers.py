"""Layers that differ, between a family's per-layer settings (Hugging Face's ``layer_types``, SmolLM3's
``no_rope_layers``) and a config's ``layers`` (:mod:`swapformer.layer_specs`): each layer's spec to write, and the
most compact ``layers`` for the overrides read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swapformer.config import ModelConfig
from swapformer.layer_specs import LayerSpec, resolve
from swapformer.registry import split_spec


def decoder_specs(cfg: ModelConfig) -> list[LayerSpec]:
    """Each layer's spec of a causal LM, its ``layers`` overrides applied (what a family writes per layer)."""
    return resolve(cfg, "decoder")


def layers_of(
    changes: list[dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any] | list[dict[str, Any]] | None]:
    """``(uniform changes, layers)`` for layers whose overrides of the uniform config are ``changes`` (one
    mapping per layer): the same overrides everywhere change the uniform fields; a repeating sequence becomes a
    pattern (its period need not divide the depth: it restarts at each period); anything else a list.

    Example:
        >>> nope = {"positional": "none"}
        >>> layers_of([{}, {}, nope, {}, {}])
        ({}, {'pattern': ['full', 'full', 'nope'], 'types': {'full': {}, 'nope': {'positional': 'none'}}})
    """
    if not any(changes):
        return {}, None
    if all(change == changes[0] for change in changes):
        return dict(changes[0]), None
    depth = len(changes)
    period = next(p for p in range(1, depth + 1) if all(changes[i] == changes[i % p] for i in range(depth)))
    if period == depth:
        return {}, [dict(change) for change in changes]
    names: dict[str, dict[str, Any]] = {}
    pattern = []
    for change in changes[:period]:
        name = _type_name(change)
        if names.get(name, change) != change:  # two types of one name: the second is numbered
            name = f"{name}{len(names)}"
        names[name] = dict(change)
        pattern.append(name)
    return {}, {"pattern": pattern, "types": names}


def _type_name(change: Mapping[str, Any]) -> str:
    parts = []
    if "attention" in change:
        parts.append("sliding" if split_spec(change["attention"])[0] == "sliding_window" else "attention")
    if "positional" in change:
        parts.append("nope" if split_spec(change["positional"])[0] in ("none", "nope") else "positional")
    if "ffn" in change:  # named by its member (its width goes with it): swiglu layers among moe ones
        parts.append(split_spec(change["ffn"])[0])
    named = ("attention", "positional", "ffn", "d_ff") if "ffn" in change else ("attention", "positional")
    parts += [key for key in change if key not in named]
    return "_".join(parts) or "full"
