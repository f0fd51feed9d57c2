"""Layers built from the members: multi-head attention with the KV cache it fills, embeddings, masks, blocks.

Nothing here reads a config: the builders in :mod:`swapformer.models` choose sizes and members and pass them in.
"""

from swapformer.nn.attention import MultiHeadAttention
from swapformer.nn.blocks import TransformerLayer, TransformerStack
from swapformer.nn.cache import AttentionCache, KVCache, LayerCache
from swapformer.nn.embedding import TokenEmbedding
from swapformer.nn.head import LMHeadTransform

__all__ = [
    "AttentionCache",
    "KVCache",
    "LMHeadTransform",
    "LayerCache",
    "MultiHeadAttention",
    "TokenEmbedding",
    "TransformerLayer",
    "TransformerStack",
]
