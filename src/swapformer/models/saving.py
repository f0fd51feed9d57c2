"""swapformer's own checkpoint format: ``config.json`` (the ModelConfig) beside ``model.safetensors``, and the
model's generation defaults, when it has some, in ``generation_config.json`` (:mod:`.generation_defaults`).

A directory, as Hugging Face writes one, so a model travels without Lightning or pickles: the config is plain
JSON and the weights load without running code.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model
from torch import nn

from swapformer.config import ModelConfig
from swapformer.errors import ConfigError
from swapformer.models.builders import build
from swapformer.models.generation_defaults import GenerationDefaults, read_generation_defaults

FORMAT = "swapformer"
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


class SavesPretrained:
    """Gives a model built from a :class:`ModelConfig` (``self.config``) a ``save_pretrained`` method."""

    config: ModelConfig

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json``, ``model.safetensors`` and, when the model has generation defaults
        (``generation_config``), ``generation_config.json`` to ``directory`` (made if missing);
        :func:`swapformer.load` rebuilds the model exactly. Returns the directory."""
        return save_pretrained(self, directory)


def save_pretrained(model: nn.Module, directory: str | os.PathLike) -> Path:
    """See :meth:`SavesPretrained.save_pretrained`; for any model with a ``config``."""
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise ConfigError(
            f"{type(model).__name__} has no swapformer ModelConfig in .config; save_pretrained writes models "
            "built by swapformer.build"
        )
    path = output_folder(directory, "save_pretrained")
    (path / CONFIG_FILE).write_text(json.dumps({"format": FORMAT, **config.to_dict()}, indent=2) + "\n")
    save_model(model, str(path / WEIGHTS_FILE))  # tied weights are written once
    follow_umask(path / WEIGHTS_FILE)
    save_generation_defaults(model, path)
    return path


def output_folder(directory: str | os.PathLike, writer: str) -> Path:
    """The folder ``directory``, made if missing, that ``writer`` (``save_pretrained``, ``to_hf``) writes a model to.

    Raises:
        ConfigError: ``directory``, or a folder above it, is a file.
    """
    path = Path(directory)
    blocking = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        where = "is a file" if blocking == path else f"is below the file {blocking}"
        raise ConfigError(
            f"{path} {where}: {writer} writes a folder (config.json, model.safetensors); give a folder path"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_generation_defaults(model: nn.Module, directory: Path) -> None:
    """Write the model's ``generation_config`` to ``directory/generation_config.json``, when it has one."""
    defaults = getattr(model, "generation_config", None)  # EncoderOnly models do not generate: none
    if isinstance(defaults, GenerationDefaults):
        defaults.save(directory)


def follow_umask(file: Path) -> None:
    """Give ``file`` the mode any new file of this process gets (safetensors writes through a private temporary
    file, mode 0600, which others of the group could not read)."""
    mask = os.umask(0)
    os.umask(mask)
    file.chmod(0o666 & ~mask)


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in ``directory/config.json``.

    Raises:
        ConfigError: no such directory, no config.json in it, or a file that is not a JSON object.
    """
    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(f"{path} is not a directory; give the folder that holds config.json")
    file = path / CONFIG_FILE
    if not file.is_file():
        raise ConfigError(f"{path} has no config.json: it is not a saved model directory")
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{file} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file} holds a JSON {type(data).__name__}, not an object of config keys")
    return data


def load_pretrained(directory: str | os.PathLike) -> nn.Module:
    """Rebuild a model written by :func:`save_pretrained` (in eval mode).

    Raises:
        ConfigError: the directory, its config or its weights do not make a swapformer model.
    """
    path = Path(directory)
    data = read_config(path)
    data.pop("format", None)
    model = build(ModelConfig.from_dict(data))
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise ConfigError(f"{path} has no {WEIGHTS_FILE} beside its config.json")
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except Exception as err:  # a truncated file or shapes that do not match the config
        raise ConfigError(f"{weights} does not hold this config's weights: {_one_line(err)}") from None
    if missing or unexpected:
        raise ConfigError(
            f"{weights} does not match its config.json: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    defaults = read_generation_defaults(path)
    if defaults is not None:
        model.generation_config = defaults
    return model.eval()


def _one_line(err: Exception) -> str:
    """torch's load_state_dict error (a line per tensor whose shape differs) as its first tensor and a count."""
    text = str(err)
    sizes = re.findall(
        r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[[^\]]*\])\) from checkpoint, the "
        r"shape in current model is torch\.Size\((\[[^\]]*\])\)",
        text,
    )
    if not sizes:
        return " ".join(text.split())
    key, stored, built = sizes[0]
    more = f" (and {len(sizes) - 1} more tensors)" if len(sizes) > 1 else ""
    return (
        f"{key} is {stored} in the file but {built} for config.json{more}: the config.json and the weights "
        "are not of one model"
    )
