"""Feed-forward family: the position-wise sublayer and its nonlinearity."""

from __future__ import annotations

from torch import nn

from swapformer.components.ffn.mlp import FeedForward, GatedFeedForward, SquaredReLU
from swapformer.components.ffn.moe import MixtureOfExperts
from swapformer.registry import FFN


@FFN.register("relu", description="two linear layers with ReLU between (Vaswani 2017)")
def relu(*, d_model: int, d_ff: int, dropout: float = 0.0, bias: bool = True) -> FeedForward:
    """max(0, x W1 + b1) W2 + b2."""
    return FeedForward(d_model=d_model, d_ff=d_ff, activation=nn.ReLU(), dropout=dropout, bias=bias)


@FFN.register("gelu", description="two linear layers with GELU between (BERT, GPT-2)")
def gelu(
    *, d_model: int, d_ff: int, dropout: float = 0.0, bias: bool = True, approximate: str = "none"
) -> FeedForward:
    """GELU(x W1 + b1) W2 + b2; ``approximate="tanh"`` gives GPT-2's tanh form."""
    return FeedForward(
        d_model=d_model, d_ff=d_ff, activation=nn.GELU(approximate=approximate), dropout=dropout, bias=bias
    )


@FFN.register("silu", description="two linear layers with SiLU (swish) between (Marian)")
def silu(*, d_model: int, d_ff: int, dropout: float = 0.0, bias: bool = True) -> FeedForward:
    """silu(x W1 + b1) W2 + b2, silu(x) = x sigmoid(x) (Ramachandran et al., 2017, "Searching for Activation
    Functions")."""
    return FeedForward(d_model=d_model, d_ff=d_ff, activation=nn.SiLU(), dropout=dropout, bias=bias)


@FFN.register("swiglu", description="SiLU-gated linear unit: down(silu(gate x) * up x) (Shazeer 2020, Llama)")
def swiglu(*, d_model: int, d_ff: int, dropout: float = 0.0, bias: bool = False) -> GatedFeedForward:
    """SwiGLU feed-forward, no biases by default (as in Llama)."""
    return GatedFeedForward(d_model=d_model, d_ff=d_ff, activation=nn.SiLU(), dropout=dropout, bias=bias)


@FFN.register(
    "geglu", description="GELU-gated linear unit: down(gelu(gate x) * up x) (Shazeer 2020, T5 v1.1)"
)
def geglu(
    *, d_model: int, d_ff: int, dropout: float = 0.0, bias: bool = False, approximate: str = "none"
) -> GatedFeedForward:
    """GeGLU feed-forward: down(dropout(GELU(x W_gate) * x W_up)), no biases by default (Shazeer, 2020,
    "GLU Variants Improve Transformer"); ``approximate="tanh"`` gives T5 v1.1's gelu_new."""
    return GatedFeedForward(
        d_model=d_model, d_ff=d_ff, activation=nn.GELU(approximate=approximate), dropout=dropout, bias=bias
    )


@FFN.register("relu2", description="two linear layers with squared ReLU between (Primer, So et al. 2021)")
def relu2(*, d_model: int, d_ff: int, dropout: float = 0.0, bias: bool = True) -> FeedForward:
    """relu(x W1 + b1)^2 W2 + b2 (So et al., 2021, "Primer")."""
    return FeedForward(d_model=d_model, d_ff=d_ff, activation=SquaredReLU(), dropout=dropout, bias=bias)


FFN.register(
    "moe",
    description="mixture of experts: a router sends each token to top_k of experts FFNs (Mixtral, DeepSeek)",
)(MixtureOfExperts)


__all__ = [
    "FeedForward",
    "GatedFeedForward",
    "MixtureOfExperts",
    "SquaredReLU",
    "geglu",
    "gelu",
    "relu",
    "relu2",
    "silu",
    "swiglu",
]
