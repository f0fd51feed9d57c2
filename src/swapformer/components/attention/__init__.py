"""Attention: the kernel family (``math``, ``sdpa``) and the multi-head layer that runs a kernel."""

from swapformer.components.attention._masks import causal_mask, guard_empty_rows
from swapformer.components.attention.layer import MultiHeadAttention
from swapformer.components.attention.scaled_dot_product import MathAttention, repeat_kv
from swapformer.components.attention.sdpa import SDPAttention
from swapformer.registry import ATTENTION

ATTENTION.add(
    "math", MathAttention, description="the lecture's formulas: softmax(q k^T / sqrt(E)) v; returns weights"
)
ATTENTION.add(
    "sdpa", SDPAttention, description="torch scaled_dot_product_attention (flash / memory-efficient dispatch)"
)

__all__ = [
    "MathAttention",
    "MultiHeadAttention",
    "SDPAttention",
    "causal_mask",
    "guard_empty_rows",
    "repeat_kv",
]
