"""The ``swapformer`` command: LightningCLI with recipes, plus ``swapformer components``.

::

    swapformer fit --config recipes/causal_lm/stdlib-tiny.yaml [--config recipes/logger/wandb.yaml] [--key value]
    swapformer validate|test|predict --config ... --ckpt_path path/to/last.ckpt
    swapformer components [family ...]        # every registered component, plug-ins included
    swapformer components --matrix            # which components combine, and what each supports
    swapformer generate --ckpt_path last.ckpt --prompt "..."   # decode with a checkpoint (see cli_generate)
    swapformer check NAME                     # the conformance suite over every combination with NAME

The model and data classes come from the recipe (``class_path``); ``data.vocab_size`` is linked into the
model. The model's names and sizes are validated before anything is instantiated, so a bad recipe value fails
with one message naming the key, before any data is read.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import yaml
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from swapformer.compat import format_matrix
from swapformer.config import ModelConfig
from swapformer.errors import ConfigError
from swapformer.lightning.base import MODEL_KEYS, SwapformerModule
from swapformer.registry import FAMILIES, load_plugins

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
        values = {k: init_args[k] for k in MODEL_KEYS if k in init_args}
        if values.get("vocab_size") is None:
            values["vocab_size"] = _PLACEHOLDER_VOCAB
        if values.get("src_vocab_size") is None:
            values.pop("src_vocab_size", None)
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


def print_components(families: list[str] | None = None, *, file: Any = None) -> None:
    """Print every registry family with its members' names, descriptions and sources."""
    file = file or sys.stdout
    failed = load_plugins()
    chosen = families or list(FAMILIES)
    for family in chosen:
        if family not in FAMILIES:
            raise ConfigError(f"unknown component family '{family}'; families: {', '.join(FAMILIES)}")
        registry = FAMILIES[family]
        print(f"{family}: {registry.description}", file=file)
        members = registry.describe()
        width = max((len(m.name) for m in members), default=0)
        for member in members:
            source = "" if member.source == "swapformer" else f"  [{member.source}]"
            print(f"  {member.name:<{width}}  {member.description}{source}", file=file)
        print(file=file)
    for key, error in failed.items():
        print(f"plug-in {key} failed to load: {error}", file=file)


def print_matrix(*, file: Any = None) -> None:
    """Print the compatibility matrix (:func:`swapformer.compat.format_matrix`), plug-ins included."""
    load_plugins()
    print(format_matrix(), file=file or sys.stdout)


def run(args: list[str] | None = None) -> SwapformerCLI | None:
    """Run the command and return the CLI object (its ``model``, ``datamodule``, ``trainer``); None for
    ``components``. ``args`` replaces ``sys.argv[1:]``, so tests call it in-process.

    Raises:
        SystemExit: code 2 with one message on stderr for a bad recipe (and jsonargparse's own errors).
    """
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] == "generate":
        from swapformer.cli_generate import main as generate_main

        generate_main(argv[1:])
        return None
    if argv and argv[0] == "check":
        from swapformer.cli_check import main as check_main

        check_main(argv[1:])
        return None
    if argv and argv[0] == "components":
        if any(a in ("-h", "--help") for a in argv[1:]):
            print(
                "usage: swapformer components [family ...] [--matrix]\n\nfamilies: "
                + ", ".join(FAMILIES)
                + "\n--matrix: which kernels and positional members combine, and what each member supports"
            )
            return None
        try:
            if "--matrix" in argv[1:]:
                print_matrix()
            else:
                print_components(argv[1:] or None)
        except ConfigError as err:
            print(f"swapformer components: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        return None
    load_plugins()  # plug-in names must be registered before the recipe is checked
    try:
        return SwapformerCLI(
            model_class=SwapformerModule,
            datamodule_class=LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=LogConfigCallback,
            save_config_kwargs={"overwrite": True},
            args=None if args is None else argv,
        )
    except ConfigError as err:
        print(f"swapformer: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def main(args: list[str] | None = None) -> None:
    """Entry point of ``swapformer`` (the console script); see :func:`run` for the same with a return value."""
    run(args)


if __name__ == "__main__":
    main()
