"""`scalenorm`: one learned scale for the whole vector (Nguyen & Salazar, 2019, "Transformers without Tears:
Improving the Normalization of Self-Attention")."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn


class ScaleNorm(nn.Module):
    """ScaleNorm(x) = g * x / ||x||: project onto the sphere, then one scalar radius g (initialized to sqrt(D)).

    A single parameter instead of LayerNorm's 2 D; no centering. ``||x||`` is clamped at ``eps`` so a zero
    vector stays zero instead of dividing by zero.

    Args:
        d_model: model dimension D (sets g's initial value sqrt(D)).
        eps: smallest norm divided by.

    Shape:
        x ``(..., D)`` -> ``(..., D)``.
    """

    tensor_parallel_plan: ClassVar[dict[str, str]] = {}
    """Under tensor parallelism every rank runs it whole, on the full (replicated) activations."""

    no_weight_decay: ClassVar[tuple[str, ...]] = ("scale",)
    """g is a gain: decaying it towards 0 would only fight the normalization."""

    def __init__(self, *, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.d_model, self.eps = d_model, eps
        self.scale = nn.Parameter(torch.empty(()))  # g
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """g = sqrt(D), the paper's initial value."""
        with torch.no_grad():
            self.scale.fill_(math.sqrt(self.d_model))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * x / x.norm(dim=-1, keepdim=True).clamp_min(self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
