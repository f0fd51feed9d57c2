"""Soft-capping: ``cap * tanh(x / cap)``, a smooth bound on attention scores or logits (Gemma 2).

Close to the identity for ``|x|`` well below ``cap`` and never beyond ``±cap``: it keeps a few large scores or
logits from saturating the softmax, without the hard clip's zero gradient.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from swapformer.errors import ConfigError


def soft_cap(x: Tensor, cap: float | None) -> Tensor:
    """``cap * tanh(x / cap)``, in Gemma 2's order of operations; ``x`` itself when ``cap`` is None."""
    return x if cap is None else torch.tanh(x / cap) * cap


def soft_capped_scores(query: Tensor, key: Tensor, scale: float, cap: float) -> Tensor:
    """Attention scores ``cap * tanh(q k^T * scale / cap)``, what :func:`soft_cap` gives for the scaled scores,
    with ``scale / cap`` applied to the queries ``(..., L, E)`` rather than to the scores ``(..., L, S)``: one
    pass over the scores fewer each way (forward and backward), when E is smaller than S.

    Shape:
        query ``(..., L, E)``, key ``(..., S, E)`` -> ``(..., L, S)``.
    """
    return torch.tanh((query * (scale / cap)) @ key.transpose(-2, -1)) * cap


def soft_capped_attention(
    query: Tensor, key: Tensor, value: Tensor, *, scale: float, cap: float, is_causal: bool, dropout_p: float
) -> Tensor:
    """``softmax(cap * tanh(q k^T * scale / cap) + causal) v`` for a call with no ``attn_mask`` (training on
    unpadded batches): what the ``math`` kernel computes, in fewer passes over the ``(L, S)`` scores. The capped
    scores are finite, so no row is ever empty and the causal mask is one ``-inf`` triangle added while the cap
    multiplies (one operator, where the general path multiplies, then fills the blocked scores through a
    boolean mask); each saves a pass forward and backward. The same numbers: ``0 + cap t`` is ``cap t``.

    Shape:
        query ``(..., L, E)``, key and value ``(..., S, E)`` with the heads already repeated -> ``(..., L, E)``.
    """
    bounded = torch.tanh((query * (scale / cap)) @ key.transpose(-2, -1))  # (..., L, S), in [-1, 1]
    if is_causal:  # top-left aligned, as in torch's SDPA
        length, source_length = query.size(-2), key.size(-2)
        keep = torch.ones(length, source_length, dtype=torch.bool, device=query.device).tril()
        blocked = torch.zeros(length, source_length, dtype=bounded.dtype, device=query.device)
        scores = torch.add(blocked.masked_fill_(~keep, float("-inf")), bounded, alpha=cap)
    else:
        scores = bounded * cap
    weights = torch.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        weights = torch.nn.functional.dropout(weights, p=dropout_p)
    return weights @ value


def check_cap(cap: object, where: str, example: float) -> float | None:
    """``cap`` as a float, or None; a ConfigError naming ``where`` unless it is None or a finite number > 0."""
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, int | float) or not math.isfinite(cap) or cap <= 0:
        raise ConfigError(
            f"{where}={cap!r} must be a number > 0 (Gemma 2 uses {example}), or null for no soft-capping"
        )
    return float(cap)
