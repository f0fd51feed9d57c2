"""Logits processors: how next-token scores are reshaped before a token is picked (names as in Hugging Face).

Each takes ``logits`` ``(N, V)`` and returns new logits; blocked tokens get ``-inf``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def repetition_penalty(logits: Tensor, ids: Tensor, penalty: float) -> Tensor:
    """CTRL's penalty (Keskar et al., 2019): tokens already in ``ids`` ``(N, T)`` become less likely.

    A positive logit is divided by ``penalty``, a negative one multiplied, so ``penalty > 1`` always lowers it.
    """
    seen = logits.gather(1, ids)
    return logits.scatter(1, ids, torch.where(seen < 0, seen * penalty, seen / penalty))


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` highest logits of each row (ties with the k-th kept too)."""
    if k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering (Holtzman et al., 2020): keep the fewest most likely tokens whose probability sums to
    at least ``p``; the most likely token is always kept."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the more likely tokens
    drop_sorted = mass_before >= p  # the set already reached p without this token
    drop = drop_sorted.scatter(1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))
