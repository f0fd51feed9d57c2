"""Mask helpers shared by the kernels. One polarity everywhere: boolean True = may attend."""

from __future__ import annotations

import torch
from torch import Tensor


def causal_mask(length: int, source_length: int | None = None, *, offset: int = 0, device=None) -> Tensor:
    """Boolean (L, S) mask where query i (at absolute position ``offset + i``) may attend keys ``j <= offset + i``.

    With ``offset = S - L`` (a KV cache holding ``S - L`` earlier tokens) this is the bottom-right aligned mask;
    with ``offset = 0`` it is ``torch.tril``, the alignment ``scaled_dot_product_attention(is_causal=True)`` uses.
    """
    source_length = length + offset if source_length is None else source_length
    return torch.ones(length, source_length, dtype=torch.bool, device=device).tril(diagonal=offset)


def merge_causal(attn_mask: Tensor, length: int, source_length: int) -> Tensor:
    """``attn_mask`` restricted to the causal (top-left aligned) pattern, keeping its polarity or bias values."""
    causal = causal_mask(length, source_length, device=attn_mask.device)
    if attn_mask.dtype == torch.bool:
        return attn_mask & causal
    return attn_mask.masked_fill(~causal, float("-inf"))


def guard_empty_rows(attn_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Open rows that may attend nothing, so softmax never sees a row of -inf (which gives NaN).

    Returns:
        The mask with every empty row fully opened, and ``valid`` of shape ``(..., L, 1)``: False on rows that
        were empty, whose output the caller sets to zero.
    """
    if attn_mask.dtype == torch.bool:
        valid = attn_mask.any(dim=-1, keepdim=True)
        return attn_mask | ~valid, valid
    valid = (attn_mask > float("-inf")).any(dim=-1, keepdim=True)
    return attn_mask.masked_fill(~valid, 0.0), valid
