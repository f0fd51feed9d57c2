"""The conformance suite: every registered combination of components must build and keep the model's invariants.

For a combination (model kind x kernel x positional x norm x placement x ffn) it builds a tiny model and runs:

==================  ==================================================================================
builds              the kind's builder (``swapformer.build``) of a tiny two-layer config raises nothing
causality           changing target tokens from position c on leaves the logits before c unchanged, in eval and
                    in training mode (a kind that is not causal, ``masked_lm``: changes them)
padding             a padded row's logits at its real tokens equal the row's logits alone (right and left
                    padding of the target, right padding of the source), in eval and in training mode
determinism         two eval-mode forward passes of one input are equal
cached_decoding     logits fed one token at a time through a KV cache equal one full forward pass, and greedy
                    ``generate`` gives the same ids with ``use_cache=True`` and ``False`` (kinds that decode); a
                    kernel with a ``cache_window`` is decoded past it with a left-padded row, and each layer's
                    cache must hold no more than its window; an encoder-decoder decodes a padded source and one
                    without a mask
fully_padded_rows   rows (and sources) that are all padding give finite logits and finite gradients
documents           a packed row's documents (``document_ids``) get the logits of each document alone, in eval
                    and in training mode (kinds without a source; kernels declaring ``document_mask``)
gradient_flow       after one backward pass every parameter has a nonzero gradient, and so does every head's
                    share of each attention projection (per key/value head group for W_k, W_v)
head_layout         the kernel gives for GQA and MQA what it gives for MHA with each key/value head repeated
reference           a kernel declaring ``exact_softmax`` equals ``math``; a positional member declaring
                    ``relative`` keeps every score when all positions shift (by 1 and 161, over 150 tokens)
train               AdamW memorizes one batch of random tokens to a loss of 1.0 within 100 steps (skipped by
                    ``quick`` runs: it costs more than every other check together)
==================  ==================================================================================

The product of the members takes multi-head, grouped-query and multi-query attention in turn
(:data:`HEAD_LAYOUTS`), and each member's non-default options (:data:`VARIANTS`) and the config options that are
no member (:data:`OPTION_VARIANTS`: q/k norm, logit soft-capping, layer patterns, ...) run around the kind's defaults.
Every member also runs once in a patterned model (``-mixed``: its layers alternate the combination's
members with the kind's defaults, a NoPE layer where the positional member acts inside attention), where it meets
layers unlike it. Model kinds and combinations come from the registries at call time, so plug-ins are included. A member registered
under two names (``none`` and ``nope``: one factory) counts once, under its first name. A pair the compatibility matrix
refuses (:func:`swapformer.compat.combination_problem`) is reported as refused, with the matrix's reason, and not
built; a check of a feature a member declares unsupported (``Capabilities(kv_cache=False)``, see :data:`REQUIRES`)
is skipped. ``swapformer check NAME`` runs the suite for every combination containing a component.

Example:
    >>> combo = Combination("causal_lm", "sdpa", "rope", "rmsnorm", "pre", "swiglu")
    >>> combo.id
    'causal_lm-sdpa-rope-rmsnorm-pre-swiglu'
    >>> run_combination(combo).status
    'pass'
"""

from __future__ import annotations

from swapformer.conformance.checks import (
    ATOL,
    CHECK_NAMES,
    CHECKS,
    RTOL,
    TINY,
    ConformanceFailure,
    build,
    check_cached_decoding,
    check_causality,
    check_determinism,
    check_documents,
    check_fully_padded_rows,
    check_gradient_flow,
    check_head_layout,
    check_padding,
    check_reference,
    check_train,
)
from swapformer.conformance.combination import (
    COMPONENTS,
    HEAD_LAYOUTS,
    OPTION_VARIANTS,
    OPTIONS,
    REQUIRES,
    VARIANTS,
    Combination,
    OptionVariant,
    combinations,
    default_members,
    distinct_members,
    model_kinds,
)
from swapformer.conformance.runner import CheckResult, CombinationResult, run, run_combination

__all__ = [
    "ATOL",
    "CHECKS",
    "CHECK_NAMES",
    "COMPONENTS",
    "HEAD_LAYOUTS",
    "OPTIONS",
    "OPTION_VARIANTS",
    "REQUIRES",
    "RTOL",
    "TINY",
    "VARIANTS",
    "CheckResult",
    "Combination",
    "CombinationResult",
    "ConformanceFailure",
    "OptionVariant",
    "build",
    "check_cached_decoding",
    "check_causality",
    "check_determinism",
    "check_documents",
    "check_fully_padded_rows",
    "check_gradient_flow",
    "check_head_layout",
    "check_padding",
    "check_reference",
    "check_train",
    "combinations",
    "default_members",
    "distinct_members",
    "model_kinds",
    "run",
    "run_combination",
]
