"""Model assemblies, one file per kind (its model class, decoding step, builder and registration), and the
shared builders that make them from a config."""

from swapformer.models.builders import build, build_layer, build_stack, init_weights
from swapformer.models.causal_lm import DecoderOnly, build_causal_lm
from swapformer.models.generation_defaults import GenerationDefaults
from swapformer.models.masked_lm import EncoderOnly, build_masked_lm
from swapformer.models.saving import load_pretrained, save_pretrained
from swapformer.models.seq2seq import EncoderDecoder, build_seq2seq

__all__ = [
    "DecoderOnly",
    "EncoderDecoder",
    "EncoderOnly",
    "GenerationDefaults",
    "build",
    "build_causal_lm",
    "build_layer",
    "build_masked_lm",
    "build_seq2seq",
    "build_stack",
    "init_weights",
    "load_pretrained",
    "save_pretrained",
]
