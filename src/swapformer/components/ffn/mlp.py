"""Position-wise feed-forward networks: the paper's two linear layers with a nonlinearity between."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SquaredReLU(nn.Module):
    """relu(x)^2, the activation Primer found by search (So et al., 2021, "Primer: Searching for Efficient
    Transformers for Language Modeling")."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x).square()


class FeedForward(nn.Module):
    """FFN(x) = linear2(dropout(act(linear1(x)))), the same D -> d_ff -> D map at every position.

    Args:
        d_model: model dimension D.
        d_ff: hidden dimension (2048 = 4 D in the paper).
        activation: the nonlinearity module.
        dropout: dropout after the activation.
        bias: biases in both linear layers.

    Shape:
        x ``(N, L, D)`` -> ``(N, L, D)``.
    """

    def __init__(
        self, *, d_model: int, d_ff: int, activation: nn.Module, dropout: float = 0.0, bias: bool = True
    ):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)
        self.activation = activation
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.drop(self.activation(self.linear1(x))))

    def drop(self, x: Tensor) -> Tensor:
        """Dropout while training; in eval mode (where it is the identity) not even the module call."""
        return self.dropout(x) if self.training else x


class GatedFeedForward(nn.Module):
    """Gated linear unit FFN (Shazeer, 2020): down(dropout(act(gate(x)) * up(x))).

    Args:
        d_model: model dimension D.
        d_ff: hidden dimension (Llama uses about 8/3 D to match a 4 D MLP's parameter count).
        activation: the gate's nonlinearity (SiLU for SwiGLU, GELU for GeGLU).
        dropout: dropout on the gated hidden state.
        bias: biases in the three linear layers (none in Llama).
    """

    def __init__(
        self, *, d_model: int, d_ff: int, activation: nn.Module, dropout: float = 0.0, bias: bool = False
    ):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.activation = activation
        self.dropout = nn.Dropout(dropout)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(self.drop(self.activation(self.gate_proj(x)) * self.up_proj(x)))

    def drop(self, x: Tensor) -> Tensor:
        """Dropout while training; in eval mode (where it is the identity) not even the module call."""
        return self.dropout(x) if self.training else x
