"""``swapformer import-hf`` and ``swapformer export``: models in from Hugging Face, out of Lightning checkpoints.

::

    swapformer import-hf path/to/hf-model --out imported/   # config.json + model.safetensors + recipe.yaml
    swapformer fit --config imported/recipe.yaml            # keep training it (edit a component first)
    swapformer export --ckpt_path runs/x/logs/version_0/checkpoints/last.ckpt --out exported/ [--format hf [--model_type phi3]]

``import-hf`` writes the model in swapformer's format beside ``recipe.yaml``, which names every component and
size and starts from the weights (``init_from``), with the model's own tokenizer when the directory has one.
``export`` writes a checkpoint's model (``--format swapformer``, read back by ``swapformer.load``; or ``hf``,
read by transformers) and its tokenizer (``tokenizer.json``, read by the ``tokenizers`` library).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import yaml

from swapformer.cli.errors import VerbParser, user_errors
from swapformer.cli.helptext import plain
from swapformer.cli.model_args import add_model_arguments, resolve_model
from swapformer.errors import ConfigError
from swapformer.interop import from_hf, supported, to_hf
from swapformer.tasks import SwapformerModule

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def recipe(model: Any, name: str, *, tokenizer: bool) -> dict[str, Any]:
    """A training recipe for ``model``, written beside its weights: every config field spelled out (edit one to
    swap a component), the weights (``init_from: .``, the recipe's own folder: a path in a recipe file is read
    relative to the file) and the model's tokenizer when ``tokenizer``, the stdlib corpus as data, a short CPU
    run whose outputs go to ``runs/<name>`` as every bundled recipe's do."""
    config = model.config.to_dict()
    module = SwapformerModule.for_kind(config.pop("kind"))
    config.pop("vocab_size")  # the data module links its tokenizer's size; init_from checks it fits
    seq_len = min(config["max_seq_len"], 256)
    return {
        "model": {
            "class_path": f"swapformer.tasks.{module.__qualname__}",
            "init_args": {**config, "init_from": ".", "lr": 1e-4, "warmup_steps": 10},
        },
        "data": _data(module.kind, "." if tokenizer else "byte", seq_len),
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": 200,
            "log_every_n_steps": 10,
            "default_root_dir": f"runs/{name}",
        },
    }


def _data(kind: str, tokenizer: str, seq_len: int) -> dict[str, Any]:
    if kind == "seq2seq":  # the embedded date-normalisation pairs
        init_args = {"task": "dates", "tokenizer": tokenizer, "batch_size": 16}
        return {"class_path": "swapformer.data.Seq2SeqDataModule", "init_args": init_args}
    init_args = {
        "path": None,
        "tokenizer": tokenizer,
        "seq_len": seq_len,
        "batch_size": 8,
        "max_chars": 2_000_000,
    }
    return {"class_path": "swapformer.data.CausalLMDataModule", "init_args": init_args}


def import_hf(argv: list[str] | None = None) -> None:
    """``swapformer import-hf DIR --out OUT``."""
    p = VerbParser(
        allow_abbrev=False,
        prog="swapformer import-hf",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help=f"a Hugging Face model directory ({', '.join(supported())})")
    p.add_argument(
        "--out", required=True, help="the folder to write config.json, model.safetensors, recipe.yaml"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a folder that already holds files (the model and recipe.yaml there are replaced)",
    )
    with user_errors("import-hf"):
        args = p.parse_args(argv)
        _import_hf(args)


def _import_hf(args: argparse.Namespace) -> None:
    if not Path(args.source).is_dir():
        raise ConfigError(
            f"{args.source} is not a folder: give a Hugging Face model folder (config.json and its weights)"
        )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {args.out} is a file: give a folder to write the model to")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held and not args.overwrite:
        raise ConfigError(
            f"--out {args.out} is not empty ({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}): "
            "import-hf would replace the model and recipe.yaml there; give a new folder, or pass --overwrite"
        )
    model = from_hf(args.source)
    model.save_pretrained(out)
    copied = [name for name in TOKENIZER_FILES if (Path(args.source) / name).is_file()]
    for name in copied:
        shutil.copyfile(Path(args.source) / name, out / name)
    has_tokenizer = "tokenizer.json" in copied
    name = Path(args.source).resolve().name
    (out / "recipe.yaml").write_text(
        f"# {name} as swapformer components (swapformer import-hf); train: swapformer fit --config "
        f"{out / 'recipe.yaml'}\n# paths are relative to this file; runs go to runs/{name} below the working "
        "folder\n" + yaml.safe_dump(recipe(model, name, tokenizer=has_tokenizer), sort_keys=False)
    )
    print(
        f"{model.config.kind} model with {sum(p.numel() for p in model.parameters()):,} parameters -> {out}"
    )
    if not has_tokenizer:
        print(f"{args.source} has no tokenizer.json: recipe.yaml uses the byte tokenizer; set data.tokenizer")


def export(argv: list[str] | None = None) -> None:
    """``swapformer export --ckpt_path X --out DIR [--format swapformer|hf]``."""
    p = VerbParser(
        allow_abbrev=False,
        prog="swapformer export",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(p)
    p.add_argument("--out", required=True, help="the folder to write the model and its tokenizer to")
    p.add_argument(
        "--format",
        choices=("swapformer", "hf"),
        default="swapformer",
        help="swapformer: read back by swapformer.load; hf: read by transformers (GPT-2, Llama, ...)",
    )
    p.add_argument(
        "--model_type",
        help=f"with --format hf: the Hugging Face family to write ({', '.join(supported())}); default: the "
        "first that expresses the model (a Llama-shaped model is a llama)",
    )
    with user_errors("export"):
        args = p.parse_args(argv)
        _export(args)


def _export(args: argparse.Namespace) -> None:
    if args.model_type is not None and args.format != "hf":
        raise ConfigError(f"--model_type {args.model_type} picks a Hugging Face family: add --format hf")
    path = resolve_model(args)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out} is a file: give a folder to write the model and tokenizer to")
    module = SwapformerModule.load(path)  # CheckpointError says what a file that is not a checkpoint is
    out = (
        module.model.save_pretrained(args.out)
        if args.format == "swapformer"
        else to_hf(module.model, args.out, model_type=args.model_type)
    )
    if module.tokenizer is not None:
        module.tokenizer.save_pretrained(out)
    print(f"{args.format} model{' and tokenizer' if module.tokenizer is not None else ''} -> {out}")
