"""`linear`: linear attention with the feature map elu(x) + 1 (Katharopoulos et al., 2020, "Transformers are
RNNs: Fast Autoregressive Transformers with Linear Attention")."""

from __future__ import annotations

import logging
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swapformer.components.attention._masks import merge_causal
from swapformer.components.attention.scaled_dot_product import repeat_kv
from swapformer.registry import Capabilities

logger = logging.getLogger(__name__)


def feature_map(x: Tensor) -> Tensor:
    """phi(x) = elu(x) + 1: positive, so every normalizer phi(q) . sum phi(k) is positive."""
    return F.elu(x) + 1.0


class LinearAttention(nn.Module):
    """Softmax's ``exp(q . k)`` replaced by ``phi(q) . phi(k)``, so the sum over keys factors out of the query::

        o_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j)
            = phi(q_i) [sum_j phi(k_j) v_j^T] / phi(q_i) . [sum_j phi(k_j)]       (E x E and E: no L x S matrix)

    Causal attention keeps prefix sums over the keys instead (``cumsum``): query i reads the sums up to the
    last key it may see. Time and memory grow as ``O(S E^2)``, linearly in the sequence length, instead of the
    ``O(L S)`` of softmax attention.

    Masks: a boolean ``attn_mask`` must give each query a prefix of the real keys (key padding, causality, or
    both: the only masks the models build); any other pattern raises. A float mask (a score bias: ALiBi, T5) has
    no linear form, so ``alibi`` and ``t5_relative`` are refused with this kernel at config time
    (:mod:`swapformer.compat`). Attention dropout is not applied (no weights are formed); residual and
    feed-forward dropout still act. ``need_weights`` materializes the quadratic form (its weights).

    Shape:
        query ``(N, H, L, E)``; key, value ``(N, Hkv, S, E)``; output ``(N, H, L, E)``; weights ``(N, H, L, S)``.
    """

    tensor_parallel_plan: ClassVar[dict[str, str]] = {}
    """Acts on each head alone: under tensor parallelism it runs unsplit on the rank's local heads."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        accepts_score_bias=False,
        document_mask=False,
        notes="no score bias (alibi, t5_relative), no document mask (packed rows); no attention dropout; "
        "cached steps re-sum every key",
    )
    _warned_dropout: ClassVar[bool] = False

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
            attn_mask: boolean, True = may attend, each query seeing a prefix of the real keys.
            is_causal: also block keys after each query (top-left aligned, as in torch's SDPA).
            dropout_p: ignored (logged once): there are no attention weights to drop.
            scale: multiplies the queries before the feature map; None = no scaling (as in the paper).
            need_weights: also return the weights ``phi(q_i).phi(k_j) / sum_j`` (quadratic memory).

        Returns:
            ``(output, weights or None)``. A query row with no key to attend to outputs zeros.

        Raises:
            ValueError: a float mask, or a boolean mask that is not a prefix of the real keys per query.
        """
        if dropout_p > 0.0 and not LinearAttention._warned_dropout:
            LinearAttention._warned_dropout = True
            logger.warning(
                "attention 'linear' ignores attention dropout (dropout_p=%s): it forms no weights", dropout_p
            )
        key, value = repeat_kv(key, value, query.size(1))
        if scale is not None:
            query = query * scale
        phi_q, phi_k = feature_map(query), feature_map(key)  # (N, H, L, E), (N, H, S, E)
        length, source_length = query.size(-2), key.size(-2)
        mask = None
        if is_causal or (attn_mask is not None and attn_mask.size(-2) != 1):
            mask = _prefix_mask(attn_mask, is_causal, length, source_length, query.device)
            output = _prefix_attention(phi_q, phi_k, value, mask)
        else:  # every query sees the same keys (no mask, or key padding): one sum over the keys
            if attn_mask is not None:
                mask = _boolean(attn_mask)  # (…, 1, S)
                phi_k = phi_k * mask.transpose(-2, -1)
            kv = phi_k.transpose(-2, -1) @ value  # sum_j phi(k_j) v_j^T   (N, H, E, E)
            numerator = phi_q @ kv  # (N, H, L, E)
            denominator = phi_q @ phi_k.sum(-2)[..., None]  # (N, H, L, 1): 0 only when no key is real
            output = torch.where(
                denominator > 0, numerator / torch.where(denominator > 0, denominator, 1.0), 0.0
            )
        if not need_weights:
            return output, None
        scores = phi_q @ phi_k.transpose(-2, -1)  # (N, H, L, S)
        if mask is not None:
            scores = scores * mask
        total = scores.sum(-1, keepdim=True)
        return output, scores / torch.where(total > 0, total, 1.0)


def _prefix_mask(
    attn_mask: Tensor | None, is_causal: bool, length: int, source_length: int, device: torch.device
) -> Tensor:
    if attn_mask is None:
        return torch.ones(length, source_length, dtype=torch.bool, device=device).tril()
    attn_mask = _boolean(attn_mask)
    return merge_causal(attn_mask, length, source_length) if is_causal else attn_mask


def _boolean(attn_mask: Tensor) -> Tensor:
    if attn_mask.dtype != torch.bool:
        raise ValueError(
            "attention 'linear' cannot add a float score bias (ALiBi, T5 relative bias) to scores it never "
            "forms; pass a boolean mask, or use attention 'sdpa' or 'math'"
        )
    return attn_mask


def _prefix_attention(phi_q: Tensor, phi_k: Tensor, value: Tensor, mask: Tensor) -> Tensor:
    """Query i attends the real keys up to ``last[i]``, read from prefix sums over the keys."""
    source_length = phi_k.size(-2)
    real = mask.any(dim=-2)  # (…, S) a key some query may see: not padding
    index = torch.arange(source_length, device=mask.device)
    last = torch.where(mask, index, 0).amax(dim=-1)  # (…, L) the last key each query may see
    valid = mask.any(dim=-1, keepdim=True)  # (…, L, 1) rows with something to attend to
    if not torch.compiler.is_compiling():  # a data-dependent check: eager mode only
        expected = real[..., None, :] & (index <= last[..., None]) & valid
        if not torch.equal(mask.expand_as(expected), expected):
            raise ValueError(
                "attention 'linear' needs each query to see a prefix of the real keys (causal and/or key-padding "
                "masks); this mask has another pattern: use attention 'sdpa' or 'math' for it"
            )
    batch, heads, _, dim = phi_k.shape
    weight = real.expand(batch, heads, source_length).to(phi_k.dtype)[..., None]  # (N, H, S, 1)
    keys = phi_k * weight
    kv = torch.einsum("nhse,nhsf->nhsef", keys, value).cumsum(
        2
    )  # prefix sums of phi(k_j) v_j^T (N, H, S, E, E)
    z = keys.cumsum(2)  # prefix sums of phi(k_j)   (N, H, S, E)
    last = last.expand(batch, heads, phi_q.size(-2))  # (N, H, L)
    kv_last = kv.gather(2, last[..., None, None].expand(-1, -1, -1, dim, value.size(-1)))  # (N, H, L, E, E)
    z_last = z.gather(2, last[..., None].expand(-1, -1, -1, dim))  # (N, H, L, E)
    numerator = torch.einsum("nhle,nhlef->nhlf", phi_q, kv_last)
    denominator = (phi_q * z_last).sum(-1, keepdim=True)  # (N, H, L, 1)
    valid = valid.expand(batch, heads, -1, 1)
    return torch.where(valid, numerator / torch.where(valid, denominator, 1.0), 0.0)
