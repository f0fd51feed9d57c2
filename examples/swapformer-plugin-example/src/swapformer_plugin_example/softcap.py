"""`softcap`: attention whose scores are squashed into (-cap, cap) before the softmax (Gemma 2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swapformer.components.attention import causal_mask, guard_empty_rows, repeat_kv


class SoftCapAttention(nn.Module):
    """Soft-capped scores, cap * tanh(q k^T / (sqrt(E) cap)), so that no score runs away (Gemma 2).

    Args:
        cap: the bound on the scores (50 in Gemma 2). A large cap gives back plain attention.

    Shape:
        query ``(N, H, L, E)``; key, value ``(N, Hkv, S, E)``; output ``(N, H, L, E)``;
        weights ``(N, H, L, S)``.
    """

    def __init__(self, *, cap: float = 50.0) -> None:
        super().__init__()
        if cap <= 0:
            raise ValueError(f"cap={cap} must be positive; Gemma 2 uses 50.0")
        self.cap = cap

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        *,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        dropout_p: float = 0.0,
        scale: float | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        key, value = repeat_kv(key, value, query.size(1))  # grouped-query attention: share k/v heads
        scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
        scores = query @ key.transpose(-2, -1) * scale  # (N, H, L, S)
        scores = self.cap * torch.tanh(scores / self.cap)  # the one line that differs from `math`
        if is_causal:
            causal = causal_mask(query.size(-2), key.size(-2), device=query.device)
            attn_mask = causal if attn_mask is None else _and(attn_mask, causal)
        valid = None
        if attn_mask is not None:
            attn_mask, valid = guard_empty_rows(attn_mask)  # a row with nothing to attend to gives zeros
            if attn_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            else:
                scores = scores + attn_mask
        weights = torch.softmax(scores, dim=-1)
        if valid is not None:
            weights = weights * valid
        output = F.dropout(weights, p=dropout_p) @ value if dropout_p > 0 else weights @ value
        return output, (weights if need_weights else None)


def _and(attn_mask: Tensor, causal: Tensor) -> Tensor:
    if attn_mask.dtype == torch.bool:
        return attn_mask & causal
    return attn_mask.masked_fill(~causal, float("-inf"))
