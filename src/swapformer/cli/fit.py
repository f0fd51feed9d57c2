"""``swapformer fit|validate|test|predict``: LightningCLI driven by recipes.

::

    swapformer fit --config recipes/causal_lm/stdlib-tiny.yaml [--config recipes/logger/wandb.yaml] [--key value]
    swapformer validate|test|predict --config ... --ckpt_path path/to/last.ckpt

The model and data classes come from the recipe (``class_path``); ``data.vocab_size`` is linked into the
model. The model's names and sizes are validated before anything is instantiated, so a bad recipe value fails
with one message naming the key, before any data is read.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info

from swapformer.config import ModelConfig
from swapformer.data.tokenizers import TOKENIZER_KINDS
from swapformer.errors import ConfigError
from swapformer.registry import load_plugins
from swapformer.tasks.base import MODEL_KEYS, SwapformerModule

# Stands in for the data's vocabulary while the rest of the model config is checked (reading the data to
# learn the real size is exactly what must not happen before the check).
_PLACEHOLDER_VOCAB = 1024


class LogConfigCallback(SaveConfigCallback):
    """Writes ``config.yaml`` to the log dir (as Lightning does) and logs the whole resolved recipe (model,
    data, trainer) as the loggers' hyperparameters under ``config``, so a W&B run shows what produced it."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False, skip_check=True))
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config})


class SwapformerCLI(LightningCLI):
    """LightningCLI that links the data's vocabulary into the model and validates the model config early."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        model = config.get("model")
        init_args = getattr(model, "init_args", None) if model is not None else None
        if init_args is None:
            return
        _tokenizer_of_init_from(init_args.get("init_from"), config.get("data"))
        values = {k: init_args[k] for k in MODEL_KEYS if k in init_args}
        if values.get("vocab_size") is None:
            values["vocab_size"] = _PLACEHOLDER_VOCAB
        if values.get("src_vocab_size") is None:
            values.pop("src_vocab_size", None)
        module_path, _, class_name = model.class_path.rpartition(".")
        module_kind = getattr(getattr(importlib.import_module(module_path), class_name, None), "kind", None)
        if module_kind is not None:
            values["kind"] = module_kind
        try:
            ModelConfig.from_dict(values)
        except ConfigError as err:
            raise ConfigError(
                [f"model.init_args.{p}" if re.match(r"\w+", p)[0] in MODEL_KEYS else p for p in err.problems],
                title=f"invalid model in the recipe ({model.class_path})",
            ) from None

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except Exception as err:  # a DataError / ConfigError wrapped by jsonargparse: show it alone
            cause = _user_error(err)
            if cause is None:
                raise
            raise ConfigError(f"{type(cause).__name__}: {cause}") from err

    def after_fit(self) -> None:
        trainer = self.trainer
        log_dir = trainer.log_dir  # a collective under DDP / FSDP: every rank must ask, not only rank 0
        if not trainer.is_global_zero:
            return
        lines = []
        checkpoint = trainer.checkpoint_callback
        if checkpoint is not None:
            if checkpoint.last_model_path:
                lines.append(f"last checkpoint: {checkpoint.last_model_path}")
            if checkpoint.best_model_path and checkpoint.best_model_path != checkpoint.last_model_path:
                lines.append(f"best checkpoint: {checkpoint.best_model_path}")
        for logger in trainer.loggers:
            where = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
            experiment_dir = getattr(getattr(logger, "_experiment", None), "dir", None)
            lines.append(f"{type(logger).__name__} logs: {experiment_dir or where}")
        if log_dir:
            lines.append(f"config: {log_dir}/config.yaml")
        if lines:
            print("\n".join(lines), flush=True)


def _tokenizer_of_init_from(init_from: str | None, data: Any) -> None:
    """A model trained from ``init_from``'s weights reads text with that model's tokenizer, when it has one:
    the data module gets it instead of fitting a new one."""
    init_args = getattr(data, "init_args", None)
    if not init_from or init_args is None or init_args.get("tokenizer") not in TOKENIZER_KINDS:
        return
    source = Path(init_from)
    if (source / "tokenizer.json").is_file() or (source.is_file() and source.suffix == ".ckpt"):
        rank_zero_info(f"init_from: the data module uses the tokenizer of {init_from}")
        init_args["tokenizer"] = init_from


def _user_error(err: BaseException) -> ValueError | None:
    """The first swapformer ValueError (DataError, ConfigError) in ``err``'s cause chain, or None."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ValueError) and type(current).__module__.startswith("swapformer"):
            return current
        current = current.__cause__ or current.__context__
    return None


def run(args: list[str]) -> SwapformerCLI:
    """Run a Lightning verb with the recipe arguments ``args`` (the verb first) and return the CLI object.

    Raises:
        SystemExit: code 2 with one message on stderr for a bad recipe (and jsonargparse's own errors).
    """
    load_plugins()  # plug-in names must be registered before the recipe is checked
    try:
        return SwapformerCLI(
            model_class=SwapformerModule,
            datamodule_class=LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=LogConfigCallback,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except ConfigError as err:
        print(f"swapformer: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
