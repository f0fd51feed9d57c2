"""The transform some masked LMs put between the last layer and the output layer (BERT, RoBERTa)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

ACTIVATIONS = {
    "gelu": lambda: nn.GELU(),
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
}
"""The activations of :class:`LMHeadTransform` by the names ``ModelConfig.lm_head_transform`` takes."""


class LMHeadTransform(nn.Module):
    """x -> norm(activation(dense(x))): BERT's ``BertPredictionHeadTransform`` and RoBERTa's ``RobertaLMHead``
    before their decoder.

    ::

        last layer ─▶ dense (D -> D, bias?) ─▶ activation ─▶ norm ─▶ lm_head

    Args:
        d_model: D.
        activation: the nonlinearity module.
        norm: the norm after it.
        bias: whether the dense layer has a bias (BERT's and RoBERTa's do; ModernBERT's ``classifier_bias``).

    Shape:
        x ``(N, L, D)`` -> ``(N, L, D)``.
    """

    tensor_parallel_plan: ClassVar[dict[str, str]] = {}
    """Under tensor parallelism every rank runs it whole, on the full (replicated) activations."""

    def __init__(self, *, d_model: int, activation: nn.Module, norm: nn.Module, bias: bool = True) -> None:
        super().__init__()
        self.dense = nn.Linear(d_model, d_model, bias=bias)
        self.activation = activation
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.activation(self.dense(x)))
