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


def no_repeat_ngram(logits: Tensor, ids: Tensor, size: int) -> Tensor:
    """Block every token that would repeat an n-gram of ``size`` tokens already in ``ids`` ``(N, T)`` (Hugging
    Face's ``no_repeat_ngram_size``; the prompt, or a decoder's start id, counts)."""
    length = ids.size(1)
    if length + 1 < size:
        return logits
    blocked = torch.zeros_like(logits, dtype=torch.bool)
    for row, tokens in enumerate(ids.tolist()):
        prefix = tuple(tokens[length + 1 - size :])  # the n-1 last tokens, which the next token would extend
        for start in range(length + 1 - size):
            if tuple(tokens[start : start + size - 1]) == prefix:
                blocked[row, tokens[start + size - 1]] = True
    return logits.masked_fill(blocked, float("-inf"))


def bad_words(logits: Tensor, ids: Tensor, sequences: tuple[tuple[int, ...], ...]) -> Tensor:
    """Block the last token of each sequence whose other tokens end ``ids`` ``(N, T)`` (a one-token sequence is
    always blocked): Hugging Face's ``bad_words_ids``."""
    blocked = torch.zeros_like(logits, dtype=torch.bool)
    for sequence in sequences:
        *prefix, last = sequence
        if not prefix:
            blocked[:, last] = True
        elif len(prefix) <= ids.size(1):
            ends = (ids[:, ids.size(1) - len(prefix) :] == ids.new_tensor(prefix)).all(dim=1)
            blocked[:, last] |= ends
    return logits.masked_fill(blocked, float("-inf"))


def block_tokens(logits: Tensor, tokens: tuple[int, ...]) -> Tensor:
    """``tokens`` get ``-inf``: ``suppress_tokens``, ``begin_suppress_tokens``, eos before ``min_length``."""
    if not tokens:
        return logits
    blocked = logits.clone()
    blocked[:, list(tokens)] = float("-inf")
    return blocked


def force_tokens(logits: Tensor, tokens: tuple[int, ...]) -> Tensor:
    """Only ``tokens`` stay possible, at score 0 (``forced_bos_token_id``, ``forced_eos_token_id``)."""
    forced = torch.full_like(logits, float("-inf"))
    forced[:, list(tokens)] = 0.0
    return forced
