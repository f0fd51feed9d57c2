"""Hugging Face models in and out: each family maps a ``config.json`` onto registered components and its tensors
onto a swapformer model's (one file per family), and swapformer's own ``save_pretrained`` / ``load`` format.

Example:
    >>> import swapformer
    >>> swapformer.interop.supported()
    ['bart', 'gpt2', 'llama', 'marian', 'mistral', 'qwen2', 't5']
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor, nn

from swapformer.config import ModelConfig
from swapformer.errors import ConfigError
from swapformer.interop import bart, gpt2, llama, t5  # noqa: F401  (each registers its family)
from swapformer.interop.core import ARCHITECTURES, Architecture, Link, from_hf, supported, to_hf
from swapformer.models.saving import FORMAT, load_pretrained, read_config, save_pretrained


def load(directory: str | os.PathLike) -> nn.Module:
    """A model from a directory: swapformer's own (``save_pretrained``) or a Hugging Face one (``from_hf``).

    Raises:
        ConfigError: the directory holds no model (the message says what is missing).
    """
    if read_config(directory).get("format") == FORMAT:
        return load_pretrained(directory)
    return from_hf(directory)


def load_weights(source: str | os.PathLike) -> tuple[ModelConfig, dict[str, Tensor]]:
    """The config and state dict of a saved model: a directory (:func:`load`) or a ``.ckpt`` of ``swapformer fit``
    (its model's tensors, without the optimizer or trainer state).

    Raises:
        ConfigError: nothing at ``source``, or no model in it.
    """
    path = Path(source)
    if path.is_file():  # one reader says what a file is when it is not a checkpoint (CheckpointError)
        from swapformer.training.checkpoints import read_checkpoint

        checkpoint = read_checkpoint(path)
        fields = set(ModelConfig.defaults()) | {"vocab_size"}
        config = {k: v for k, v in checkpoint["hyper_parameters"].items() if k in fields}
        state = {
            k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")
        }
        return ModelConfig.from_dict(config), state
    if not path.exists():
        raise ConfigError(
            f"nothing at {path}: give a model directory (save_pretrained, import-hf) or a .ckpt"
        )
    model = load(path)
    return model.config, model.state_dict()


__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "Link",
    "from_hf",
    "load",
    "save_pretrained",
    "supported",
    "to_hf",
]
