"""`alibi`: attention with linear biases (Press, Smith & Lewis, 2022, "Train Short, Test Long: Attention with
Linear Biases Enables Input Length Extrapolation")."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from swapformer.components.positional.base import PositionalEncoding, heads_split
from swapformer.errors import ConfigError
from swapformer.registry import Capabilities


def alibi_slopes(num_heads: int) -> list[float]:
    """The paper's head slopes: a geometric sequence starting at ``2^(-8/H)`` with ratio ``2^(-8/H)``.

    For a head count that is not a power of two, the slopes of the closest smaller power of two, then every
    other slope of the next power of two (the authors' code; Bloom and MPT compute the same).

    Example:
        >>> alibi_slopes(4)
        [0.25, 0.0625, 0.015625, 0.00390625]
    """
    if num_heads < 1:
        raise ConfigError(f"alibi needs at least one head, got num_heads={num_heads}")

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(num_heads))
    if closest == num_heads:
        return power_of_two(num_heads)
    return power_of_two(closest) + power_of_two(2 * closest)[0::2][: num_heads - closest]


class ALiBiPositionalEncoding(PositionalEncoding):
    """No position embeddings; each head's attention score is penalized linearly with distance::

        score_ij = q_i . k_j / sqrt(E) - m_h |i - j|          m_h = alibi_slopes(H)[h]

    Query i sits at position ``offset + i``, key j at ``j``. Causal stacks only ever see ``j <= i`` (the paper's
    ``-m_h (i - j)``); a bidirectional encoder gets the symmetric ``-m_h |i - j|``. Having no table, it runs on
    sequences longer than any seen in training (the paper's point).

    The bias is a float score mask, so the kernel must add one (``math``, ``sdpa``, ``sliding_window``; not
    ``linear``: refused at config time, see :mod:`swapformer.compat`).

    Args:
        num_heads: attention heads H; one slope each.

    Shape:
        bias ``(H, L, S)``.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(adds_score_bias=True, relative=True)

    def tensor_parallel_plan(self, *, size: int) -> dict[str, Any]:
        """Under tensor parallelism each rank keeps the slopes of its own heads (the contiguous block W_q's
        column-wise split gives it), so ``bias`` is ``(H / size, L, S)``.

        Raises:
            ConfigError: ``size`` does not divide H.
        """
        from swapformer.components.tensor_parallel import LocalHeads

        return {"": LocalHeads("slopes")} if heads_split(self.num_heads, size, "alibi") > 1 else {}

    def __init__(self, *, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.register_buffer("slopes", torch.tensor(alibi_slopes(num_heads)), persistent=False)  # (H,)

    def bias(
        self, length: int, source_length: int, *, offset: int = 0, device: torch.device | None = None
    ) -> Tensor:
        device = self.slopes.device if device is None else device
        query = torch.arange(offset, offset + length, device=device)[:, None]  # (L, 1)
        key = torch.arange(source_length, device=device)[None, :]  # (1, S)
        distance = (query - key).abs().to(torch.float32)  # (L, S)
        return -self.slopes.to(device)[:, None, None] * distance  # (H, L, S)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}"
