"""`sinusoidal`: the fixed encoding of "Attention Is All You Need" (Vaswani et al., 2017, section 3.5)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from swapformer.components.positional.base import PositionalEncoding, last_position, positions


def sinusoidal_table(length: int, d_model: int, *, base: float = 10000.0, device=None) -> Tensor:
    """PE[pos, 2i] = sin(pos / base^(2i/D)), PE[pos, 2i+1] = cos(pos / base^(2i/D)).

    Shape:
        output ``(length, d_model)``.
    """
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]  # (L, 1)
    frequency = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32, device=device) * (-math.log(base) / d_model)
    )  # 1 / base^(2i/D)   (ceil(D/2),)
    table = torch.zeros(length, d_model, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
    return table


class SinusoidalPositionalEncoding(PositionalEncoding):
    """Fixed sines and cosines of geometrically spaced wavelengths, added to the embeddings.

    Each position's code is a function, not a table entry, so it exists at any length: the model runs on
    sequences longer than any it trained on (whether it still predicts well there is the extrapolation question).

    Args:
        d_model: model dimension D.
        base: the wavelength base, 10000 in the paper.
    """

    def __init__(self, *, d_model: int, base: float = 10000.0) -> None:
        super().__init__()
        self.d_model, self.base = d_model, base
        self.register_buffer("table", sinusoidal_table(0, d_model, base=base), persistent=False)

    def embed(self, x: Tensor, *, offset: int | Tensor = 0) -> Tensor:
        end = last_position(offset, x.size(1)) + 1
        if end > self.table.size(0):  # grow the cache (doubling) instead of a fixed maximum
            self.table = sinusoidal_table(
                max(end, 2 * self.table.size(0)), self.d_model, base=self.base, device=x.device
            )
        if isinstance(offset, int):
            return x + self.table[offset:end].to(x.dtype)
        return x + self.table[positions(offset, x.size(1))].to(x.dtype)  # (N, L, D)
