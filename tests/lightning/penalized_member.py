"""A test member that adds a known auxiliary loss, registered on import as the ffn ``penalized`` (the
multi-process tests run ``penalized_fit.py``, which imports it; in-process tests use :func:`registered`).

The loss is ``coefficient * sum(scale ** 2)`` for a parameter ``scale`` (ones at start) that nothing else uses:
its gradient comes from the auxiliary loss alone, so ``scale`` moves if and only if the loss reached the
training loss (AdamW skips a parameter without a gradient, weight decay included).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from swapformer.components import AddsLosses
from swapformer.components.ffn.mlp import FeedForward
from swapformer.registry import FFN

NAME = "penalized"


class PenalizedFeedForward(AddsLosses):
    """The GELU MLP, plus ``penalty = coefficient * sum(scale ** 2)``."""

    def __init__(self, *, d_model: int, d_ff: int, coefficient: float = 0.5) -> None:
        super().__init__()
        self.mlp = FeedForward(d_model=d_model, d_ff=d_ff, activation=nn.GELU())
        self.scale = nn.Parameter(torch.ones(2))
        self.coefficient = coefficient

    def forward(self, x: Tensor) -> Tensor:
        self.add_loss("penalty", self.coefficient * self.scale.square().sum())
        return self.mlp(x)


@contextlib.contextmanager
def registered() -> Iterator[None]:
    """The member registered while the block runs (other tests list the built-in members exactly)."""
    FFN.add(NAME, PenalizedFeedForward)
    try:
        yield
    finally:
        FFN._members.pop(NAME)
