"""Position-wise feed-forward networks: the paper's two linear layers with a nonlinearity between."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swapformer.components.functions import Function, Of, forward_of, keep, plain

_ACTIVATIONS: dict[type[nn.Module], Callable[[nn.Module], Callable[[Tensor], Tensor]]] = {
    nn.SiLU: lambda module: F.silu,
    nn.ReLU: lambda module: F.relu,
    nn.GELU: lambda module: partial(F.gelu, approximate=module.approximate),
}
"""The functional form of the activations the built-in members use (by exact class: a subclass may differ)."""
_STRIDED_EXACT = (nn.SiLU, nn.ReLU)
"""Activations whose kernel gives the same numbers on the strided half of a stacked GEMM as on a contiguous
tensor (GELU's does not: its vectorized and strided loops round differently)."""


def _plain_linears(module: nn.Module, *linears: nn.Module) -> bool:
    """Whether ``linears`` are torch's own Linear and, with ``module`` and its activation, unhooked."""
    return all(type(linear) is nn.Linear for linear in linears) and plain(module, module.activation, *linears)


class SquaredReLU(nn.Module):
    """relu(x)^2, the activation Primer found by search (So et al., 2021, "Primer: Searching for Efficient
    Transformers for Language Modeling")."""

    tensor_parallel_plan: ClassVar[dict[str, str]] = {}
    """Under tensor parallelism every rank runs it whole, on the full (replicated) activations."""

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

    residual_projections: ClassVar[tuple[str, ...]] = ("linear2",)
    """The last layer writes into the residual stream: its weight starts at the residual std."""
    tensor_parallel_plan: ClassVar[dict[str, str]] = {"linear1": "colwise", "linear2": "rowwise"}
    """Under tensor parallelism each rank holds d_ff / TP hidden units: linear1 column-wise, the activation on
    the local units, linear2 row-wise (the ranks' partial outputs summed)."""

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

    def function(self, of: Of) -> Function | None:
        """Eval-mode ``forward`` as GEMMs and the activation (:mod:`swapformer.components.functions`); None where
        a layer is not torch's Linear, the activation is not one of the known ones, or something is hooked."""
        if type(self).forward is not FeedForward.forward:  # a subclass computes something else
            return None
        if type(self.activation) not in _ACTIVATIONS or not _plain_linears(self, self.linear1, self.linear2):
            return None
        activation = _ACTIVATIONS[type(self.activation)](self.activation)
        return forward_of(
            FeedForward.forward,
            linear1=of(self.linear1),
            activation=activation,
            drop=keep,
            linear2=of(self.linear2),
        )

    def drop(self, x: Tensor) -> Tensor:
        """Dropout while training; in eval mode or at p = 0 (where it is the identity) not even the module call."""
        return self.dropout(x) if self.training and self.dropout.p else x


class GatedFeedForward(nn.Module):
    """Gated linear unit FFN (Shazeer, 2020): down(dropout(act(gate(x)) * up(x))).

    Args:
        d_model: model dimension D.
        d_ff: hidden dimension (Llama uses about 8/3 D to match a 4 D MLP's parameter count).
        activation: the gate's nonlinearity (SiLU for SwiGLU, GELU for GeGLU).
        dropout: dropout on the gated hidden state.
        bias: biases in the three linear layers (none in Llama).
    """

    residual_projections: ClassVar[tuple[str, ...]] = ("down_proj",)
    """The down projection writes into the residual stream: its weight starts at the residual std."""
    tensor_parallel_plan: ClassVar[dict[str, str]] = {
        "gate_proj": "colwise",
        "up_proj": "colwise",
        "down_proj": "rowwise",
    }
    """Under tensor parallelism each rank holds d_ff / TP units: gate and up column-wise (a unit's gate and up
    on the same rank), down row-wise (the ranks' partial outputs summed)."""

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
        gate, up = self.gate_and_up(x)
        return self.down_proj(self.drop(self.activation(gate) * up))

    def gate_and_up(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The gate and up projections of ``x``."""
        return self.gate_proj(x), self.up_proj(x)

    def function(self, of: Of) -> Function | None:
        """Eval-mode ``forward`` as GEMMs and the activation, the gate and up projections stacked into one GEMM
        (a copy made here) where the activation gives the same numbers on a strided half; None as for
        :meth:`FeedForward.function`."""
        cls = type(self)
        if cls.forward is not GatedFeedForward.forward or cls.gate_and_up is not GatedFeedForward.gate_and_up:
            return None  # a subclass computes something else
        gate, up, down = self.gate_proj, self.up_proj, self.down_proj
        if type(self.activation) not in _ACTIVATIONS or not _plain_linears(self, gate, up, down):
            return None
        activation = _ACTIVATIONS[type(self.activation)](self.activation)
        if type(self.activation) in _STRIDED_EXACT:
            w_in = torch.cat((gate.weight, up.weight))  # (2 d_ff, D)
            b_in = None if gate.bias is None else torch.cat((gate.bias, up.bias))
            width = gate.out_features

            def gate_and_up(x: Tensor) -> tuple[Tensor, Tensor]:  # one GEMM
                both = F.linear(x, w_in, b_in)  # narrow, not chunk: two views for fewer calls
                return both.narrow(-1, 0, width), both.narrow(-1, width, width)

        else:
            project_gate, project_up = of(gate), of(up)

            def gate_and_up(x: Tensor) -> tuple[Tensor, Tensor]:
                return project_gate(x), project_up(x)

        return forward_of(
            GatedFeedForward.forward,
            gate_and_up=gate_and_up,
            activation=activation,
            drop=keep,
            down_proj=of(down),
        )

    def drop(self, x: Tensor) -> Tensor:
        """Dropout while training; in eval mode or at p = 0 (where it is the identity) not even the module call."""
        return self.dropout(x) if self.training and self.dropout.p else x
