"""`sliding_window`: local attention, each query sees only the keys within ``window`` positions (Longformer,
Beltagy et al., 2020; Mistral 7B, Jiang et al., 2023)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from swapformer.components.attention._masks import merge_causal
from swapformer.components.attention.scaled_dot_product import MathAttention
from swapformer.components.attention.sdpa import SDPAttention
from swapformer.components.attention.sinks import unsplit_heads
from swapformer.errors import ConfigError
from swapformer.registry import Capabilities


def band_mask(length: int, source_length: int, *, window: int, device: torch.device | None = None) -> Tensor:
    """Boolean ``(L, S)``: query i (at position ``S - L + i``, the newest L of S tokens) may attend key j when
    ``|S - L + i - j| < window``.

    With a causal mask on top this is Mistral's window: the token itself and the ``window - 1`` before it.
    """
    query = torch.arange(source_length - length, source_length, device=device)[:, None]  # (L, 1)
    key = torch.arange(source_length, device=device)[None, :]  # (1, S)
    return (query - key).abs() < window


def within_band(attn_mask: Tensor | None, band: Tensor) -> Tensor:
    """``attn_mask`` keeping only the keys ``band`` (:func:`band_mask`) allows: the band itself where there is no
    mask, a boolean mask and the band, or a float mask (padding, a score bias) with -inf outside the band."""
    if attn_mask is None:
        return band
    if attn_mask.dtype == torch.bool:
        return attn_mask & band
    return attn_mask.masked_fill(~band, float("-inf"))


class SlidingWindowAttention(nn.Module):
    """Scaled dot-product attention restricted to a band: ``math``/``sdpa`` with a banded mask.

    ::

        causal, window 3        bidirectional (encoder), window 2
        x . . . . .             x x . . . .
        x x . . . .             x x x . . .
        x x x . . .             . x x x . .
        . x x x . .             . . x x x .

    The band is combined with whatever ``attn_mask`` / ``is_causal`` the model passes (padding, causality,
    ALiBi or T5 score biases), so every positional member works. Queries are the newest ``L`` of ``S``
    positions (bottom-right alignment), which is what cached decoding needs. A causal query sees at most its
    ``window`` newest keys, so the KV cache of a layer with this kernel keeps only those (``cache_window``): it
    stays at ``window`` tokens however long decoding runs (:class:`~swapformer.nn.AttentionCache`).

    Self-attention only: a window over the source of cross-attention has no meaning, so the builder gives
    cross-attention the full ``sdpa`` kernel (see :func:`swapformer.compat.cross_attention_kernel`).

    Args:
        window: keys within ``window`` positions of the query are visible (the query's own included), >= 1.
        softcap: soft-cap the scores as :class:`~swapformer.components.attention.MathAttention` does (Gemma 2's
            local layers); the band is then computed by ``math`` instead of ``sdpa``.
        sinks: a learned logit per head in the softmax's denominator (GPT-OSS's sliding layers), held by the
            kernel inside (``kernel.sinks``, ``(H,)``); a row whose band holds few keys may so still attend little.
        num_heads: H, the number of sinks.

    Raises:
        ConfigError: window below 1, or ``sinks`` that is not a bool.

    Shape:
        query ``(N, H, L, E)``; key, value ``(N, Hkv, S, E)``; output ``(N, H, L, E)``; weights ``(N, H, L, S)``.
    """

    def tensor_parallel_plan(self, *, size: int) -> dict[str, str]:
        """Acts on each head alone: under tensor parallelism it runs unsplit on the rank's local heads (sink
        logits, one per head of the whole model, are refused there: :func:`.sinks.unsplit_heads`)."""
        return unsplit_heads(self)

    capabilities: ClassVar[Capabilities] = Capabilities(
        soft_cap=True,
        sinks=True,
        self_attention_only=True,
        cross_attention="sdpa",
        notes="cross-attention uses sdpa; the KV cache keeps the last `window` keys",
    )

    def __init__(
        self, *, window: int = 256, softcap: float | None = None, sinks: bool = False, num_heads: int = 1
    ) -> None:
        super().__init__()
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigError(
                f"sliding_window needs a window of at least 1 position, got window={window!r}; "
                "write e.g. {name: sliding_window, window: 128}"
            )
        self.window = window
        self.kernel = (
            SDPAttention(sinks=sinks, num_heads=num_heads)
            if softcap is None
            else MathAttention(softcap=softcap, sinks=sinks, num_heads=num_heads)
        )

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
        length, source_length = query.size(-2), key.size(-2)
        # S <= window: the band cuts nothing (a decoding step over a cache of `window` keys), the kernel alone
        if source_length > self.window:
            band = band_mask(length, source_length, window=self.window, device=query.device)  # (L, S)
            attn_mask = within_band(attn_mask, band)
            if is_causal:
                attn_mask, is_causal = merge_causal(attn_mask, length, source_length), False
        return self.kernel(
            query,
            key,
            value,
            attn_mask=attn_mask,
            is_causal=is_causal,
            dropout_p=dropout_p,
            scale=scale,
            need_weights=need_weights,
        )

    @property
    def cache_window(self) -> int:
        """The newest keys a causal query sees, itself included: all a KV cache of this kernel needs to keep."""
        return self.window

    def extra_repr(self) -> str:
        return f"window={self.window}"
