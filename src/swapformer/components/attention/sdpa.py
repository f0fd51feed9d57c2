"""`sdpa`: torch's fused scaled_dot_product_attention (flash / memory-efficient / math dispatch)."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from swapformer.components.attention._masks import guard_empty_rows, merge_causal
from swapformer.components.attention.documents import DocumentMask, document_attention
from swapformer.components.attention.scaled_dot_product import scaled_dot_product
from swapformer.components.attention.sinks import sink_key, sink_logits, unsplit_heads
from swapformer.components.functions import Function, Of
from swapformer.registry import Capabilities


class SDPAttention(nn.Module):
    """torch.nn.functional.scaled_dot_product_attention behind the kernel contract.

    Same call and results as ``math``; GQA runs natively (``enable_gqa``). Asked for the attention weights,
    which fused kernels never materialize, it computes them with the ``math`` kernel.

    With ``sinks`` (GPT-OSS) it attends one more, virtual key: a zero key and value whose float mask column is
    the head's sink logit (:func:`~swapformer.components.attention.sinks.sink_key`). The denominator is then
    the sinks' and nothing joins the output; the price is a float mask ``(N, H, L, S + 1)`` and a copy of the
    keys and values one slot longer per call.

    Given packed rows' documents as spans (a :class:`~.documents.DocumentMask` as ``attn_mask``), it attends each
    document alone, one fused call per group of documents (:func:`~.documents.document_attention`), and computes
    no score across documents; with sinks or asked for the weights it uses the dense mask the spans stand for.

    Args:
        sinks: a learned logit per head in the softmax's denominator, the parameter ``sinks`` ``(H,)``.
        num_heads: H, the number of sinks (the model's query heads).

    Raises:
        ConfigError: ``sinks`` that is not a bool.

    Shape:
        query ``(N, H, L, E)``; key, value ``(N, Hkv, S, E)``; output ``(N, H, L, E)``.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(exact_softmax=True, sinks=True, document_spans=True)
    function_takes_score_bias: ClassVar[bool] = True
    """Its function (:meth:`function`) also takes a float ``attn_mask`` under which no query row is empty: a
    one-token decoding step's score bias, whose query always sees its own key (no guard needed)."""

    def tensor_parallel_plan(self, *, size: int) -> dict[str, str]:
        """Acts on each head alone: under tensor parallelism it runs unsplit on the rank's local heads (sink
        logits, one per head of the whole model, are refused there: :func:`.sinks.unsplit_heads`)."""
        return unsplit_heads(self)

    def __init__(self, *, sinks: bool = False, num_heads: int = 1) -> None:
        super().__init__()
        self.sinks = sink_logits(sinks, num_heads, "sdpa")

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
        if isinstance(attn_mask, DocumentMask):  # packed rows (is_causal is in the spans)
            if not need_weights and self.sinks is None:
                return document_attention(
                    query, key, value, attn_mask, dropout_p=dropout_p, scale=scale
                ), None
            attn_mask = attn_mask.dense()
        if need_weights:
            return scaled_dot_product(
                query,
                key,
                value,
                attn_mask=attn_mask,
                is_causal=is_causal,
                dropout_p=dropout_p,
                scale=scale,
                sinks=self.sinks,
            )
        valid = None
        if self.sinks is not None:  # the virtual key: every row sees it, so none is empty
            key, value, attn_mask = sink_key(
                key, value, self.sinks, length=query.size(-2), attn_mask=attn_mask, is_causal=is_causal
            )
            is_causal = False
        elif attn_mask is not None:
            # torch's CPU dispatch sends a mask of under 4 dims (a score bias (H, L, S)) to its math fallback
            if attn_mask.dim() < 4:
                attn_mask = attn_mask[(None,) * (4 - attn_mask.dim())]
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
        ``(q, k, v, *, scale, enable_gqa) -> out`` (:mod:`swapformer.components.functions`): torch's fused call,
        which also takes a score bias ``attn_mask`` (:attr:`function_takes_score_bias`)."""
        if type(self).forward is not SDPAttention.forward or self.sinks is not None:
            return None
        return F.scaled_dot_product_attention

    def reset_weights(self, *, std: float, residual_std: float) -> None:
        """The sink logits N(0, std), as GPT-OSS starts them."""
        if self.sinks is not None:
            nn.init.normal_(self.sinks, std=std)

    def extra_repr(self) -> str:
        return "" if self.sinks is None else f"sinks={self.sinks.numel()}"
