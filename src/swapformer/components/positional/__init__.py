"""Positional family: how token order enters the model, through the embed / rotate / bias hooks."""

from swapformer.components.positional.alibi import ALiBiPositionalEncoding, alibi_slopes
from swapformer.components.positional.base import PositionalEncoding
from swapformer.components.positional.learned import LearnedPositionalEncoding
from swapformer.components.positional.none import NoPositionalEncoding
from swapformer.components.positional.rope import RotaryPositionalEncoding, rotate_half
from swapformer.components.positional.rope_scaling import (
    ScaledRotaryPositionalEncoding,
    rope_inverse_frequencies,
)
from swapformer.components.positional.sinusoidal import SinusoidalPositionalEncoding, sinusoidal_table
from swapformer.components.positional.t5_relative import T5RelativePositionBias, relative_position_bucket
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
    "rope",
    ScaledRotaryPositionalEncoding,
    description="rotary: rotates q and k by position (RoFormer, Llama); scaling: linear | ntk, factor",
)
POSITIONAL.add(
    "none", NoPositionalEncoding, description="no positional signal (order only through the causal mask)"
)
POSITIONAL.add("nope", NoPositionalEncoding, description="alias of 'none' (NoPE, Kazemnejad et al., 2023)")
POSITIONAL.add(
    "alibi",
    ALiBiPositionalEncoding,
    description="linear distance penalty per head on the scores (Press 2022)",
)
POSITIONAL.add(
    "t5_relative",
    T5RelativePositionBias,
    description="learned per-head bias of bucketed relative distance on the scores (T5, Raffel 2020)",
)

__all__ = [
    "ALiBiPositionalEncoding",
    "LearnedPositionalEncoding",
    "NoPositionalEncoding",
    "PositionalEncoding",
    "RotaryPositionalEncoding",
    "ScaledRotaryPositionalEncoding",
    "SinusoidalPositionalEncoding",
    "T5RelativePositionBias",
    "alibi_slopes",
    "relative_position_bucket",
    "rope_inverse_frequencies",
    "rotate_half",
    "sinusoidal_table",
]
