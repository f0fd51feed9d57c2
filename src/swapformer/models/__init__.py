"""Model assemblies and the builders that make them from a config."""

from swapformer.models.builders import build_causal_lm, build_layer, build_seq2seq, build_stack, init_weights
from swapformer.models.causal_lm import DecoderOnly
from swapformer.models.embedding import TokenEmbedding
from swapformer.models.seq2seq import EncoderDecoder

__all__ = [
    "DecoderOnly",
    "EncoderDecoder",
    "TokenEmbedding",
    "build_causal_lm",
    "build_layer",
    "build_seq2seq",
    "build_stack",
    "init_weights",
]
