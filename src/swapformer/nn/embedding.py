"""Token embedding with the paper's optional sqrt(D) scaling, token types and positions added, an optional norm,
then dropout."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from swapformer.components.functions import plain
from swapformer.components.positional.base import PositionalEncoding
from swapformer.nn._shared import borrow


class TokenEmbedding(nn.Module):
    """ids -> dropout(norm(positional.embed(E[ids] * scale + T[types]))).

    Args:
        vocab_size: V.
        d_model: D.
        positional: the model's positional member; its ``embed`` hook adds absolute positions (used, not owned).
        scale: multiply by sqrt(D) (Vaswani et al., section 3.4).
        norm: a norm after positions are added (BART's ``layernorm_embedding``), or None.
        dropout: dropout on the sum.
        token_types: rows of a token-type (segment) table T (BERT's ``token_type_embeddings``); 0 = none.
            ``forward`` adds row 0 to every token unless given ``token_type_ids``.

    Shape:
        ids ``(N, L)``, token_type_ids ``(N, L)`` -> ``(N, L, D)``.
    """

    tensor_parallel_plan: ClassVar[dict[str, str]] = {}
    """Under tensor parallelism every rank runs it whole, on the full (replicated) activations."""

    def __init__(
        self,
        *,
        vocab_size: int,
        d_model: int,
        positional: PositionalEncoding,
        scale: bool = False,
        norm: nn.Module | None = None,
        dropout: float = 0.0,
        token_types: int = 0,
    ) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model)
        self.token_type = nn.Embedding(token_types, d_model) if token_types else None
        borrow(self, "positional", positional)
        self.scale = math.sqrt(d_model) if scale else 1.0
        self.norm = norm
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: Tensor, *, offset: int = 0, token_type_ids: Tensor | None = None) -> Tensor:
        x = self.token(ids)
        if self.scale != 1.0:
            x = x * self.scale
        if self.token_type is not None:  # every token sentence A's (row 0) unless told otherwise
            x = x + (self.token_type.weight[0] if token_type_ids is None else self.token_type(token_type_ids))
        x = self.positional.embed(x, offset=offset)
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x) if self.training and self.dropout.p else x  # eval or p = 0: no call

    def decoding_function(self) -> Callable[[Tensor, int], Tensor]:
        """``forward`` of new tokens at an int ``position`` in eval mode, as a function: the table lookup and the
        positional member's ``embed`` where nothing else applies (no scale, norm, token types, ``max_norm`` or
        hook), else ``forward`` itself. For the decoding plan of :class:`~swapformer.models.causal_lm.CausalStep`."""
        token, positional = self.token, self.positional
        if (
            type(self).forward is not TokenEmbedding.forward
            or type(token) is not nn.Embedding
            or token.max_norm is not None
            or self.scale != 1.0
            or self.norm is not None
            or self.token_type is not None
            or not plain(self, token)
        ):
            forward = self.forward if plain(self) else self
            return lambda ids, position: forward(ids, offset=position)
        weight, padding_idx = token.weight, token.padding_idx
        if not positional.embeds:  # positions enter inside attention, or nowhere
            return lambda ids, position: F.embedding(ids, weight, padding_idx)
        embed = positional.embed
        return lambda ids, position: embed(F.embedding(ids, weight, padding_idx), offset=position)
