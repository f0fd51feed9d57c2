"""The positional contract: three hooks, each the identity unless a member overrides it."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PositionalEncoding(nn.Module):
    """Base class of every positional member.

    Where order enters the model differs by method, so the contract has three hooks:

    - ``embed(x, offset)``: added to the token embeddings (sinusoidal, learned absolute).
    - ``rotate(q, k, offset)``: applied to queries and keys inside self-attention (RoPE).
    - ``bias(L, S, offset)``: added to the attention scores (ALiBi, T5 relative bias).

    ``offset`` is the absolute position of the first of the ``L`` tokens (non-zero when a KV cache already holds
    earlier tokens).
    """

    def embed(self, x: Tensor, *, offset: int = 0) -> Tensor:
        """Token embeddings ``(N, L, D)`` with positions added; identity by default."""
        return x

    def rotate(self, q: Tensor, k: Tensor, *, offset: int = 0) -> tuple[Tensor, Tensor]:
        """Queries ``(N, H, L, E)`` and keys ``(N, Hkv, S, E)`` with positions applied; identity by default."""
        return q, k

    def bias(
        self, length: int, source_length: int, *, offset: int = 0, device: torch.device | None = None
    ) -> Tensor | None:
        """Additive score bias broadcastable to ``(N, H, L, S)``, or None (the default: no bias)."""
        return None
