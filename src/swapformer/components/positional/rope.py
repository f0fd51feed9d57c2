"""`rope`: rotary position embedding (Su et al., 2021, "RoFormer"), in the rotate-half layout of Llama."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from swapformer.components.positional.base import PositionalEncoding, last_position, positions
from swapformer.errors import ConfigError
from swapformer.registry import Capabilities


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryPositionalEncoding(PositionalEncoding):
    """Rotates each pair of query/key features by an angle proportional to the position.

    The score q_m . k_n then depends on positions only through m - n: relative position, no table,
    applied inside self-attention through the ``rotate`` hook.

    Args:
        head_dim: per-head dimension E (must be even).
        base: frequency base (10000 in RoFormer and Llama 2; 500000 in Llama 3).

    Raises:
        ConfigError: odd head_dim.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(relative=True)

    def __init__(self, *, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ConfigError(f"rope needs an even head dimension, got d_model / num_heads = {head_dim}")
        self.head_dim, self.base = head_dim, base
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (E/2,)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("cos", torch.empty(0, head_dim), persistent=False)
        self.register_buffer("sin", torch.empty(0, head_dim), persistent=False)

    def _grow(self, end: int, device: torch.device) -> None:
        length = max(end, 2 * self.cos.size(0), 64)
        angles = torch.outer(
            torch.arange(length, dtype=torch.float32, device=device), self.inv_freq.to(device)
        )
        angles = torch.cat((angles, angles), dim=-1)  # (L, E), rotate-half layout
        self.cos, self.sin = angles.cos(), angles.sin()

    def rotate(self, q: Tensor, k: Tensor, *, offset: int | Tensor = 0) -> tuple[Tensor, Tensor]:
        # q and k hold the same new tokens at positions offset .. offset+L-1 (a KV cache stores rotated keys)
        length = q.size(-2)
        end = last_position(offset, length) + 1
        if end > self.cos.size(0):
            self._grow(end, q.device)
        if isinstance(offset, int):
            cos, sin = self.cos[offset:end], self.sin[offset:end]  # (L, E)
        else:  # per-row offsets: (N, 1, L, E), broadcast over heads
            index = positions(offset, length)
            cos, sin = self.cos[index][:, None], self.sin[index][:, None]
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
