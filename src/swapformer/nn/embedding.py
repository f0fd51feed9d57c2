"""Token embedding with the paper's optional sqrt(D) scaling, positions added, an optional norm, then dropout."""

from __future__ import annotations

import math

from torch import Tensor, nn

from swapformer.components.positional.base import PositionalEncoding
from swapformer.nn._shared import borrow


class TokenEmbedding(nn.Module):
    """ids -> dropout(norm(positional.embed(E[ids] * scale))).

    Args:
        vocab_size: V.
        d_model: D.
        positional: the model's positional member; its ``embed`` hook adds absolute positions (used, not owned).
        scale: multiply by sqrt(D) (Vaswani et al., section 3.4).
        norm: a norm after positions are added (BART's ``layernorm_embedding``), or None.
        dropout: dropout on the sum.

    Shape:
        ids ``(N, L)`` -> ``(N, L, D)``.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        d_model: int,
        positional: PositionalEncoding,
        scale: bool = False,
        norm: nn.Module | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model)
        borrow(self, "positional", positional)
        self.scale = math.sqrt(d_model) if scale else 1.0
        self.norm = norm
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: Tensor, *, offset: int = 0) -> Tensor:
        x = self.token(ids)
        if self.scale != 1.0:
            x = x * self.scale
        x = self.positional.embed(x, offset=offset)
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x) if self.training else x  # eval: no module call
