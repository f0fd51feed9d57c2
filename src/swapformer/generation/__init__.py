"""Autoregressive decoding: the KV cache, greedy, sampling and beam search, for both model kinds.

The lecture's last step, "the decoder's input is its own previous output", made fast: a
:class:`KVCache` keeps every layer's keys and values, so each step runs one token through the model.
"""

from swapformer.generation.decoding import generate, left_pad
from swapformer.generation.search import Settings, beam_search, sample_or_greedy
from swapformer.models.decoding import install_search
from swapformer.nn.cache import AttentionCache, KVCache, LayerCache

install_search(generate)  # every model.generate(...) runs this search (the models sit below generation)

__all__ = [
    "AttentionCache",
    "KVCache",
    "LayerCache",
    "Settings",
    "beam_search",
    "generate",
    "left_pad",
    "sample_or_greedy",
]
