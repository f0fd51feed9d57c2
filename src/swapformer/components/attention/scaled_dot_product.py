"""`math`: scaled dot-product attention written as the lecture writes it."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swapformer.components.attention._masks import guard_empty_rows, merge_causal
from swapformer.components.attention.sinks import sink_logits, softmax_with_sinks, unsplit_heads
from swapformer.components.softcap import check_cap, soft_capped_attention, soft_capped_scores
from swapformer.registry import Capabilities


def repeat_kv(key: Tensor, value: Tensor, num_heads: int) -> tuple[Tensor, Tensor]:
    """Share each of the Hkv key/value heads with ``num_heads // Hkv`` query heads (GQA / MQA)."""
    groups = num_heads // key.size(1)
    if groups == 1:
        return key, value
    return key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)


def scaled_dot_product(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    *,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    softcap: float | None = None,
    sinks: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The ``math`` kernel's computation with its options given: ``(output, weights)`` (see
    :class:`MathAttention`; ``sinks`` ``(H,)`` are its sink logits)."""
    key, value = repeat_kv(key, value, query.size(1))
    length, source_length = query.size(-2), key.size(-2)
    scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale

    if softcap is None:
        scores = query @ key.transpose(-2, -1) * scale  # e_ij = q_i . k_j / sqrt(E)   (N, H, L, S)
    else:  # e_ij = cap tanh(q_i . k_j / (sqrt(E) cap)) (Gemma 2), the scale and 1 / cap applied to q
        scores = soft_capped_scores(query, key, scale, softcap)
    if is_causal:
        causal = torch.ones(length, source_length, dtype=torch.bool, device=query.device).tril()
        attn_mask = causal if attn_mask is None else merge_causal(attn_mask, length, source_length)
    valid = None
    if attn_mask is not None:
        attn_mask, valid = guard_empty_rows(attn_mask)
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    if sinks is None:
        weights = torch.softmax(scores, dim=-1)  # alpha_ij = softmax_j(e_ij)
    else:  # alpha_ij = exp(e_ij) / (exp(s_h) + sum_j' exp(e_ij'))
        weights = softmax_with_sinks(scores, sinks)
    if valid is not None:
        weights = weights * valid  # a row with nothing to attend to attends nothing
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    output = weights @ value  # o_i = sum_j alpha_ij v_j   (N, H, L, E)
    return output, weights


class MathAttention(nn.Module):
    """The lecture's formulas line by line: e = q k^T / sqrt(E), alpha = softmax(e), o = alpha v.

    The reference every faster kernel is tested against; the only built-in kernel that returns the
    attention weights.

    Args:
        softcap: soft-cap the scores, ``e = cap * tanh(e / cap)`` before the mask (Gemma 2: 50); None = none.
        sinks: a learned logit per head in the softmax's denominator (GPT-OSS; :mod:`.sinks`), the parameter
            ``sinks`` ``(H,)``.
        num_heads: H, the number of sinks (the model's query heads).

    Raises:
        ConfigError: a cap that is not a number > 0, or ``sinks`` that is not a bool.

    Shape:
        query ``(N, H, L, E)``; key, value ``(N, Hkv, S, E)`` with ``H % Hkv == 0``;
        attn_mask boolean (True = may attend) or float (added to the scores), broadcastable to ``(N, H, L, S)``;
        output ``(N, H, L, E)``; weights ``(N, H, L, S)``.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(exact_softmax=True, soft_cap=True, sinks=True)

    def tensor_parallel_plan(self, *, size: int) -> dict[str, str]:
        """Acts on each head alone: under tensor parallelism it runs unsplit on the rank's local heads (sink
        logits, one per head of the whole model, are refused there: :func:`.sinks.unsplit_heads`)."""
        return unsplit_heads(self)

    def __init__(self, *, softcap: float | None = None, sinks: bool = False, num_heads: int = 1) -> None:
        super().__init__()
        self.softcap = check_cap(softcap, "math: softcap", 50.0)
        self.sinks = sink_logits(sinks, num_heads, "math")

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
        """Attend ``query`` to ``key``/``value``.

        Args:
            attn_mask: True = may attend; a float mask is added to the scores (-inf blocks).
            is_causal: also block keys after each query (top-left aligned, as in torch's SDPA).
            dropout_p: dropout on the attention weights.
            scale: defaults to ``1 / sqrt(E)``.
            need_weights: also return the attention weights.

        Returns:
            ``(output, weights or None)``. A query row with no key to attend to outputs zeros.
        """
        if self.softcap is not None and self.sinks is None and attn_mask is None and not need_weights:
            # the same numbers in fewer passes
            key, value = repeat_kv(key, value, query.size(1))
            scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
            output = soft_capped_attention(
                query, key, value, scale=scale, cap=self.softcap, is_causal=is_causal, dropout_p=dropout_p
            )
            return output, None
        output, weights = scaled_dot_product(
            query,
            key,
            value,
            attn_mask=attn_mask,
            is_causal=is_causal,
            dropout_p=dropout_p,
            scale=scale,
            softcap=self.softcap,
            sinks=self.sinks,
        )
        return output, (weights if need_weights else None)

    def reset_weights(self, *, std: float, residual_std: float) -> None:
        """The sink logits N(0, std), as GPT-OSS starts them."""
        if self.sinks is not None:
            nn.init.normal_(self.sinks, std=std)

    def extra_repr(self) -> str:
        options = ([] if self.softcap is None else [f"softcap={self.softcap:g}"]) + (
            [] if self.sinks is None else [f"sinks={self.sinks.numel()}"]
        )
        return ", ".join(options)
