"""`sdpa`: torch's fused scaled_dot_product_attention (flash / memory-efficient / math dispatch)."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from swapformer.components.attention._masks import guard_empty_rows, merge_causal
from swapformer.components.attention.scaled_dot_product import MathAttention
from swapformer.components.functions import Function, Of
from swapformer.registry import Capabilities


class SDPAttention(nn.Module):
    """torch.nn.functional.scaled_dot_product_attention behind the kernel contract.

    Same call and results as ``math``; GQA runs natively (``enable_gqa``). Asked for the attention weights,
    which fused kernels never materialize, it computes them with the ``math`` kernel.

    Shape:
        query ``(N, H, L, E)``; key, value ``(N, Hkv, S, E)``; output ``(N, H, L, E)``.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(exact_softmax=True)

    def __init__(self) -> None:
        super().__init__()
        self._weights_kernel = MathAttention()

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
        """See :class:`~swapformer.components.attention.scaled_dot_product.MathAttention`."""
        if need_weights:
            return self._weights_kernel(
                query,
                key,
                value,
                attn_mask=attn_mask,
                is_causal=is_causal,
                dropout_p=dropout_p,
                scale=scale,
                need_weights=True,
            )
        valid = None
        if attn_mask is not None:
            if is_causal:  # SDPA refuses both at once
                attn_mask, is_causal = merge_causal(attn_mask, query.size(-2), key.size(-2)), False
            attn_mask, valid = guard_empty_rows(attn_mask)
        output = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attn_mask,
            dropout_p=dropout_p,
            is_causal=is_causal,
            scale=scale,
            enable_gqa=key.size(1) != query.size(1),
        )
        if valid is not None:
            output = output * valid
        return output, None

    def function(self, of: Of) -> Function | None:
        """The kernel for unmasked queries (a decoding step sees every cached key), as the function
        ``(q, k, v, *, scale, enable_gqa) -> out`` (:mod:`swapformer.components.functions`): torch's fused call."""
        if type(self).forward is not SDPAttention.forward:
            return None
        return F.scaled_dot_product_attention
