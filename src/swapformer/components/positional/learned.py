"""`learned`: a trained table of absolute position embeddings (BERT, GPT-2)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from swapformer.components.positional.base import PositionalEncoding, last_position, positions
from swapformer.errors import ConfigError
from swapformer.registry import Capabilities


class LearnedPositionalEncoding(PositionalEncoding):
    """One trained vector per position, added to the token embeddings; defined only up to ``max_seq_len``.

    Args:
        d_model: model dimension D.
        max_seq_len: number of positions in the table.
        offset: rows of the table before position 0: position p reads row p + offset (BART's table starts at
            row 2, a fairseq legacy); the table has ``max_seq_len + offset`` rows.

    Raises:
        ValueError: at run time, for a sequence longer than the table.
        ConfigError: a negative offset.
    """

    tensor_parallel_plan: ClassVar[dict[str, str]] = {}
    """Under tensor parallelism every rank runs it whole, on the full (replicated) activations."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        notes="positions up to max_seq_len only: longer inputs and generation past it are refused"
    )

    def __init__(self, *, d_model: int, max_seq_len: int, offset: int = 0) -> None:
        super().__init__()
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ConfigError(f"learned offset={offset!r} must be a non-negative integer (BART uses 2)")
        self.max_seq_len = self.max_length = max_seq_len
        self.offset = offset
        self.table = nn.Embedding(max_seq_len + offset, d_model)

    def embed(self, x: Tensor, *, offset: int | Tensor = 0) -> Tensor:
        end = last_position(offset, x.size(1)) + 1
        if end > self.max_seq_len:
            raise ValueError(
                f"position {end - 1} is beyond the learned positional table of size max_seq_len={self.max_seq_len} "
                f"(sequence of {end} tokens); raise max_seq_len in the model config (and retrain), or use a "
                "positional encoding without a table such as 'sinusoidal' or 'rope'"
            )
        if isinstance(offset, int):  # a slice of the table: no index tensor to build
            return x + self.table.weight[self.offset + offset : self.offset + end].to(x.dtype)
        return x + self.table(positions(offset, x.size(1), x.device) + self.offset).to(x.dtype)
