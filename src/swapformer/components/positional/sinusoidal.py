"""`sinusoidal`: the fixed encoding of "Attention Is All You Need" (Vaswani et al., 2017, section 3.5)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from swapformer.components.positional.base import PositionalEncoding, last_position, positions
from swapformer.errors import ConfigError

LAYOUTS = ("interleaved", "halves")


def sinusoidal_table(
    length: int, d_model: int, *, base: float = 10000.0, layout: str = "interleaved", device=None
) -> Tensor:
    """PE[pos, 2i] = sin(pos / base^(2i/D)), PE[pos, 2i+1] = cos(pos / base^(2i/D)).

    ``layout="halves"`` puts the same sines in the first ceil(D/2) columns and the cosines after them
    (Marian's and fairseq's layout) instead of interleaving them.

    Shape:
        output ``(length, d_model)``.
    """
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]  # (L, 1)
    frequency = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32, device=device) * (-math.log(base) / d_model)
    )  # 1 / base^(2i/D)   (ceil(D/2),)
    sines, cosines = torch.sin(position * frequency), torch.cos(position * frequency[: d_model // 2])
    if layout == "halves":
        return torch.cat((sines, cosines), dim=-1)
    table = torch.zeros(length, d_model, device=device)
    table[:, 0::2], table[:, 1::2] = sines, cosines
    return table


class SinusoidalPositionalEncoding(PositionalEncoding):
    """Fixed sines and cosines of geometrically spaced wavelengths, added to the embeddings.

    Each position's code is a function, not a table entry, so it exists at any length: the model runs on
    sequences longer than any it trained on (whether it still predicts well there is the extrapolation question).

    Args:
        d_model: model dimension D.
        base: the wavelength base, 10000 in the paper.
        layout: ``interleaved`` (the paper: sin and cos alternate) or ``halves`` (sines then cosines, as
            Marian's checkpoints expect).

    Raises:
        ConfigError: an unknown layout.
    """

    tensor_parallel_plan: ClassVar[dict[str, str]] = {}
    """Under tensor parallelism every rank runs it whole, on the full (replicated) activations."""

    def __init__(self, *, d_model: int, base: float = 10000.0, layout: str = "interleaved") -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ConfigError(f"sinusoidal layout={layout!r} is not one of {', '.join(LAYOUTS)}")
        self.d_model, self.base, self.layout = d_model, base, layout
        self.register_buffer("table", sinusoidal_table(0, d_model, base=base), persistent=False)

    def embed(self, x: Tensor, *, offset: int | Tensor = 0) -> Tensor:
        end = last_position(offset, x.size(1)) + 1
        if end > self.table.size(0):  # grow the cache (doubling) instead of a fixed maximum
            self.table = sinusoidal_table(
                max(end, 2 * self.table.size(0)),
                self.d_model,
                base=self.base,
                layout=self.layout,
                device=x.device,
            )
        if isinstance(offset, int):
            return x + self.table[offset:end].to(x.dtype)
        return x + self.table[positions(offset, x.size(1))].to(x.dtype)  # (N, L, D)
