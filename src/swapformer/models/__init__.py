"""Model assemblies and the builders that make them from a config."""

from swapformer.models.builders import build_causal_lm, build_layer, build_seq2seq, build_stack, init_weights
from swapformer.models.causal_lm import DecoderOnly
from swapformer.models.seq2seq import EncoderDecoder
from swapformer.nn.embedding import TokenEmbedding

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
