"""The model argument of ``generate``, ``evaluate`` and ``export``: ``--ckpt_path`` with ``--root`` or ``--config``.

``--ckpt_path`` takes a ``.ckpt`` of ``swapformer fit``, a model folder (``swapformer export``, ``save_pretrained``,
``import-hf``, a Hugging Face model; the ``model.safetensors`` inside one stands for it), or ``last``: the newest
``last*.ckpt`` below ``--root``, or below the recipe's ``trainer.default_root_dir`` with ``--config``, else below
the working folder. The file ``last`` picked is printed (on stderr, so the verb's output stays clean).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

from swapformer.cli.recipes import find
from swapformer.errors import ConfigError
from swapformer.training.checkpoints import resolve_last

CKPT_HELP = (
    "a checkpoint of swapformer fit (a .ckpt file, or the folder of shards FSDP2 writes), a model folder (swapformer export, save_pretrained, "
    "import-hf, a Hugging Face model), or last: the newest last*.ckpt below --root (or the --config recipe's "
    "trainer.default_root_dir; default: the working folder)"
)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ckpt_path`` (required), ``--root`` and ``--config``."""
    parser.add_argument("--ckpt_path", required=True, help=CKPT_HELP)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--root", help="where --ckpt_path last looks")
    where.add_argument(
        "--config",
        help="a recipe (a bundled name or a file): --ckpt_path last looks below its trainer.default_root_dir",
    )


def resolve_model(args: argparse.Namespace) -> str:
    """``args.ckpt_path``, or for ``last`` the file it names (printed on stderr).

    Raises:
        CheckpointError: ``last`` and no ``last*.ckpt`` below the root. ConfigError: a ``--config`` that names
            no recipe.
    """
    if args.ckpt_path != "last":
        return args.ckpt_path
    root = args.root if args.root is not None else recipe_root(args.config) if args.config else None
    path = resolve_last("last", root)
    print(f"--ckpt_path last: {path}", file=sys.stderr, flush=True)
    return path


def recipe_root(config: str) -> str:
    """The ``trainer.default_root_dir`` of the recipe ``config`` (a file or a bundled recipe's name), or ``.``."""
    path = Path(config) if Path(config).is_file() else find(config)
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError):
        raise ConfigError(f"--config {config} is not a YAML recipe: give a recipe file or name") from None
    trainer = recipe.get("trainer") if isinstance(recipe, dict) else None
    root = trainer.get("default_root_dir") if isinstance(trainer, dict) else None
    return str(root or ".")


def no_tokenizer(path: str) -> str:
    """The message for a model without a tokenizer, which generate and evaluate need."""
    return (
        f"{path} holds no tokenizer: give a .ckpt of swapformer fit, or a model folder with its tokenizer.json "
        "(swapformer export writes one; copy the Hugging Face model's tokenizer.json beside config.json)"
    )


def checked_device(name: str) -> str:
    """``--device name`` (as torch.load takes it) when this machine has that device; otherwise one line naming
    it and the fix (torch's own messages come from deep inside the checkpoint's unpickling).

    Raises:
        ConfigError: not a torch device name, or none of that kind (or that index) here.
    """
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {name!r} is not a torch device: give cpu, cuda, cuda:1 or mps") from None
    count = {"cpu": 1, "cuda": torch.cuda.device_count(), "mps": int(torch.backends.mps.is_available())}
    have = count.get(device.type)
    if have == 0:
        raise ConfigError(f"--device {name}: this machine has no {device.type} device; use --device cpu")
    if have is not None and device.index is not None and device.index >= have:
        raise ConfigError(
            f"--device {name}: this machine has {have} {device.type} device{'s' * (have != 1)} "
            f"({device.type}:0{f'..{device.type}:{have - 1}' if have > 1 else ''})"
        )
    return "cpu" if device.type == "cpu" else str(device)  # torch.load maps no storage to "cpu:0"
