"""Hugging Face models in and out: each family maps a ``config.json`` onto registered components and its tensors
onto a swapformer model's (one file per family), and swapformer's own ``save_pretrained`` / ``load`` format.

Example:
    >>> import swapformer
    >>> swapformer.interop.supported()
    ['bart', 'bert', 'deepseek_v3', 'gemma2', 'gemma3_text', 'gpt2', 'gpt_oss', 'llama', 'marian', 'mistral', 'mixtral', 'modernbert', 'olmo2', 'phi3', 'qwen2', 'qwen3', 'qwen3_moe', 'roberta', 'smollm3', 't5']
"""

from __future__ import annotations

import os

from torch import nn

from swapformer.interop import (  # noqa: F401  (each registers its family, in this order for to_hf)
    bart,
    bert,
    deepseek_v3,
    gemma2,
    gemma3,
    gpt2,
    gpt_oss,
    llama,
    mixtral,
    modernbert,
    olmo2,
    phi3,
    qwen3,
    qwen3_moe,
    smollm3,
    t5,
)
from swapformer.interop.core import ARCHITECTURES, Architecture, Link, from_hf, hf_blocker, supported, to_hf
from swapformer.models.saving import FORMAT, load_pretrained, read_config, save_pretrained


def load(directory: str | os.PathLike) -> nn.Module:
    """A model from a directory: swapformer's own (``save_pretrained``) or a Hugging Face one (``from_hf``).

    Raises:
        ConfigError: the directory holds no model (the message says what is missing).
    """
    if read_config(directory).get("format") == FORMAT:
        return load_pretrained(directory)
    return from_hf(directory)


__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "Link",
    "from_hf",
    "hf_blocker",
    "load",
    "save_pretrained",
    "supported",
    "to_hf",
]
