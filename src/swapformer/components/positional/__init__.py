"""Positional family: how token order enters the model, through the embed / rotate / bias hooks."""

from swapformer.components.positional.base import PositionalEncoding
from swapformer.components.positional.learned import LearnedPositionalEncoding
from swapformer.components.positional.none import NoPositionalEncoding
from swapformer.components.positional.rope import RotaryPositionalEncoding, rotate_half
from swapformer.components.positional.sinusoidal import SinusoidalPositionalEncoding, sinusoidal_table
from swapformer.registry import POSITIONAL

POSITIONAL.add(
    "sinusoidal", SinusoidalPositionalEncoding, description="fixed sin/cos added to embeddings (Vaswani 2017)"
)
POSITIONAL.add(
    "learned",
    LearnedPositionalEncoding,
    description="trained absolute table added to embeddings, up to max_seq_len",
)
POSITIONAL.add(
    "rope", RotaryPositionalEncoding, description="rotary: rotates q and k by position (RoFormer, Llama)"
)
POSITIONAL.add(
    "none", NoPositionalEncoding, description="no positional signal (order only through the causal mask)"
)

__all__ = [
    "LearnedPositionalEncoding",
    "NoPositionalEncoding",
    "PositionalEncoding",
    "RotaryPositionalEncoding",
    "SinusoidalPositionalEncoding",
    "rotate_half",
    "sinusoidal_table",
]
