"""swapformer: every Transformer part a registered, swappable component, assembled by name.

Example:
    >>> import swapformer
    >>> swapformer.available("positional")
    ['alibi', 'learned', 'none', 'nope', 'rope', 'sinusoidal', 't5_relative']
"""

from swapformer.components.attention import MathAttention, SDPAttention
from swapformer.config import ModelConfig
from swapformer.errors import ConfigError
from swapformer.generation import generate
from swapformer.interop import from_hf, load, save_pretrained, to_hf
from swapformer.models import (
    DecoderOnly,
    EncoderDecoder,
    EncoderOnly,
    GenerationDefaults,
    build,
    build_causal_lm,
    build_masked_lm,
    build_seq2seq,
)
from swapformer.nn import MultiHeadAttention, TransformerLayer, TransformerStack
from swapformer.registry import FAMILIES, KINDS, Registry, available, family, kind, load_plugins

__version__ = "0.1.0"

__all__ = [
    "FAMILIES",
    "KINDS",
    "ConfigError",
    "DecoderOnly",
    "EncoderDecoder",
    "EncoderOnly",
    "GenerationDefaults",
    "MathAttention",
    "ModelConfig",
    "MultiHeadAttention",
    "Registry",
    "SDPAttention",
    "TransformerLayer",
    "TransformerStack",
    "__version__",
    "available",
    "build",
    "build_causal_lm",
    "build_masked_lm",
    "build_seq2seq",
    "family",
    "from_hf",
    "generate",
    "kind",
    "load",
    "load_plugins",
    "save_pretrained",
    "to_hf",
]
