"""`reglu`: the gated feed-forward with a ReLU gate, built from swapformer's own GatedFeedForward."""

from __future__ import annotations

from torch import nn

from swapformer.components.ffn import GatedFeedForward


def reglu(*, d_model: int, d_ff: int, dropout: float = 0.0, bias: bool = False) -> GatedFeedForward:
    """down(dropout(relu(gate x) * up x)), no biases by default.

    ``d_model``, ``d_ff`` and ``dropout`` come from the model config; ``bias`` is this member's own option.
    """
    return GatedFeedForward(d_model=d_model, d_ff=d_ff, activation=nn.ReLU(), dropout=dropout, bias=bias)
