"""Attention sinks (GPT-OSS): one learned logit per head in the softmax's denominator.

::

    alpha_ij = exp(e_ij) / (exp(s_h) + sum_j' exp(e_ij'))        s_h: head h's sink logit
    o_i      = sum_j alpha_ij v_j                                 (the sink has no value: weights sum to < 1)

A head may so attend "nowhere" instead of spreading its weight over keys it has no use for. The ``math``
kernel appends ``s_h`` to every row of scores before the softmax and drops its column after
(:func:`softmax_with_sinks`, GPT-OSS's eager code). A fused kernel never sees the scores, so ``sdpa`` attends one
extra, virtual key whose value is zero and whose score is the sink: a float mask column ``s_h`` over a zero key
(:func:`sink_key`): the same denominator, and nothing added to the output.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from swapformer.components.attention._masks import merge_causal
from swapformer.components.declarations import local_part
from swapformer.errors import ConfigError


def sink_logits(sinks: object, num_heads: int, where: str) -> nn.Parameter | None:
    """The sink logits ``(H,)``, zeros until the builders' ``init_weights`` (see ``reset_weights``), or None
    without sinks.

    Raises:
        ConfigError: ``sinks`` is not a bool.
    """
    if not isinstance(sinks, bool):
        raise ConfigError(f"{where}: sinks={sinks!r} must be true or false (GPT-OSS: true)")
    return nn.Parameter(torch.zeros(num_heads)) if sinks else None


def softmax_with_sinks(scores: Tensor, sinks: Tensor) -> Tensor:
    """``softmax([e_i1 .. e_iS, s_h])`` without its last column: the weights of the S keys.

    Shape:
        scores ``(N, H, L, S)`` (masked with -inf); sinks ``(H,)``; weights ``(N, H, L, S)``.
    """
    batch, heads, length, _ = scores.shape
    column = local_part(sinks).to(scores.dtype).view(1, heads, 1, 1).expand(batch, heads, length, 1)
    return torch.softmax(torch.cat((scores, column), dim=-1), dim=-1)[..., :-1]


def sink_key(
    key: Tensor,
    value: Tensor,
    sinks: Tensor,
    *,
    length: int,
    attn_mask: Tensor | None,
    is_causal: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``key``, ``value`` with one zero key and value appended, and the float mask whose last column is the sink:
    any fused kernel given these three computes attention with sinks. The mask takes ``attn_mask`` (bool or
    float) and the causal pattern (top-left aligned over the real keys), so ``is_causal`` is then False.

    Shape:
        key, value ``(N, Hkv, S, E)`` -> ``(N, Hkv, S + 1, E)``; mask ``(N or 1, H, L, S + 1)``.
    """
    sinks = local_part(sinks)  # under tensor parallelism: the rank's heads
    source_length, heads = key.size(-2), sinks.size(0)
    if attn_mask is None:
        bias = key.new_zeros(1, 1, length, source_length)
        if is_causal:
            bias = merge_causal(bias, length, source_length)
    else:
        if is_causal:
            attn_mask = merge_causal(attn_mask, length, source_length)
        if attn_mask.dtype == torch.bool:
            bias = torch.zeros(attn_mask.shape, dtype=key.dtype, device=key.device)
            bias = bias.masked_fill(~attn_mask, float("-inf"))
        else:
            bias = attn_mask.to(key.dtype)
        while bias.dim() < 4:
            bias = bias.unsqueeze(0)
    bias = bias.expand(bias.size(0), heads, length, source_length)
    column = sinks.to(key.dtype).view(1, heads, 1, 1).expand(bias.size(0), heads, length, 1)
    zeros = key.new_zeros(*key.shape[:-2], 1, key.size(-1))
    empty_value = value.new_zeros(*value.shape[:-2], 1, value.size(-1))
    return (
        torch.cat((key, zeros), dim=-2),
        torch.cat((value, empty_value), dim=-2),
        torch.cat((bias, column), dim=-1),
    )


def unsplit_heads(kernel: nn.Module) -> dict[str, Any]:
    """The tensor-parallel plan of a kernel that acts on each head alone: ``{}``, unsplit on the local heads, or,
    with its own sink logits (one per head of the whole model), those split by heads: each rank holds its heads'
    logits (a ``Shard(0)`` DTensor, read through :func:`~swapformer.components.declarations.local_part`). A kernel
    wrapping another (``sliding_window``) leaves the sinks to the inner kernel's own plan."""
    if dict(kernel.named_parameters(recurse=False)).get("sinks") is None:
        return {}
    from swapformer.components.tensor_parallel import HeadParameters

    return {"": HeadParameters("sinks")}
