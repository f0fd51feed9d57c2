"""`learned`: a trained table of absolute position embeddings (BERT, GPT-2)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from swapformer.components.positional.base import PositionalEncoding, last_position, positions
from swapformer.registry import Capabilities


class LearnedPositionalEncoding(PositionalEncoding):
    """One trained vector per position, added to the token embeddings; defined only up to ``max_seq_len``.

    Args:
        d_model: model dimension D.
        max_seq_len: number of positions in the table.

    Raises:
        ValueError: at run time, for a sequence longer than the table.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        notes="positions up to max_seq_len only: longer inputs and generation past it are refused"
    )

    def __init__(self, *, d_model: int, max_seq_len: int) -> None:
        super().__init__()
        self.max_seq_len = self.max_length = max_seq_len
        self.table = nn.Embedding(max_seq_len, d_model)

    def embed(self, x: Tensor, *, offset: int | Tensor = 0) -> Tensor:
        end = last_position(offset, x.size(1)) + 1
        if end > self.max_seq_len:
            raise ValueError(
                f"position {end - 1} is beyond the learned positional table of size max_seq_len={self.max_seq_len} "
                f"(sequence of {end} tokens); raise max_seq_len in the model config (and retrain), or use a "
                "positional encoding without a table such as 'sinusoidal' or 'rope'"
            )
        if isinstance(offset, int):  # a slice of the table: no index tensor to build
            return x + self.table.weight[offset:end].to(x.dtype)
        return x + self.table(positions(offset, x.size(1), x.device)).to(x.dtype)
