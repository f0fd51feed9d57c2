"""Attention: the kernel family (``math``, ``sdpa``, ``flex``, ``sliding_window``, ``linear``) each a (q, k, v) -> out function of
its own file, and ``mla``, a whole attention layer (its own projections around one of those kernels)."""

from swapformer.components.attention._masks import causal_mask, guard_empty_rows
from swapformer.components.attention.flex import FlexAttention
from swapformer.components.attention.latent import MultiHeadLatentAttention
from swapformer.components.attention.linear import LinearAttention
from swapformer.components.attention.scaled_dot_product import MathAttention, repeat_kv
from swapformer.components.attention.sdpa import SDPAttention
from swapformer.components.attention.sliding_window import SlidingWindowAttention, band_mask
from swapformer.registry import ATTENTION

ATTENTION.add(
    "math", MathAttention, description="the lecture's formulas: softmax(q k^T / sqrt(E)) v; returns weights"
)
ATTENTION.add(
    "sdpa", SDPAttention, description="torch scaled_dot_product_attention (flash / memory-efficient dispatch)"
)
ATTENTION.add(
    "flex",
    FlexAttention,
    description="torch flex_attention: masks as a block mask (documents, window), soft-cap as a score_mod; no CPU backward",
)
ATTENTION.add(
    "sliding_window",
    SlidingWindowAttention,
    description="local attention: keys within `window` positions only (Longformer, Mistral); self-attention",
)
ATTENTION.add(
    "linear",
    LinearAttention,
    description="linear attention, phi(x) = elu(x) + 1, causal by prefix sums (Katharopoulos et al., 2020)",
)
ATTENTION.add(
    "mla",
    MultiHeadLatentAttention,
    description="multi-head latent attention (DeepSeek-V2/V3): keys and values from a cached latent; a layer",
)

__all__ = [
    "FlexAttention",
    "LinearAttention",
    "MathAttention",
    "MultiHeadLatentAttention",
    "SDPAttention",
    "SlidingWindowAttention",
    "band_mask",
    "causal_mask",
    "guard_empty_rows",
    "repeat_kv",
]
