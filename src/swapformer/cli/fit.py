"""``swapformer fit|validate|test|predict``: LightningCLI driven by recipes.

::

    swapformer fit --config stdlib-tiny [--config logger/wandb] [--key value]
    swapformer validate|test|predict --config ... --ckpt_path last

The model and data classes come from the recipe (``class_path``); ``data.vocab_size`` is linked into the
model. The model's names and sizes are validated before anything is instantiated, so a bad recipe value fails
with one message naming the key, before any data is read. ``--config`` takes a file or a bundled recipe's
name (:mod:`swapformer.cli.recipes`).

Every output of a run lies under ``trainer.default_root_dir`` (the working folder when unset), in Lightning's
own layout: a logger whose ``save_dir`` is left unset or at its default writes there, its version folder
(``logs/version_N/``) holds ``config.yaml`` and ``checkpoints/``, so a rerun gets a new version folder and
never a ``last-v1.ckpt``. ``--ckpt_path last`` is the newest ``last*.ckpt`` below the root, whichever run wrote
it (the file picked is said). ``fit --ckpt_path`` resumes the recipe's model, which must be the checkpoint's
(checked before anything trains, :mod:`swapformer.training.resume`), reading text with the checkpoint's tokenizer;
``--model.init_args.init_from`` starts another model from its weights, and is never read again once a checkpoint
holds the model (resume, validate, test, predict). Every fit ends validated at its final step with a ``last.ckpt``
of it (:mod:`swapformer.training.fit_end`), whose path it prints. The recipe's ``checkpoint:`` section configures the ModelCheckpoint the CLI adds when checkpointing is on
(not with ``--trainer.enable_checkpointing false``, nor when ``trainer.callbacks`` has a ModelCheckpoint).

Paths, trainer names and sequence lengths are checked before anything expensive (:mod:`.preflight`); every
user error is one line, ``swapformer <verb>: error: ...``, and exit code 2 (:mod:`swapformer.cli.errors`).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.fabric.utilities.rank_zero import rank_prefixed_message, rank_zero_only
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.callbacks import ProgressBar as ProgressBarBase
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info

from swapformer.cli import LIGHTNING_VERBS, preflight
from swapformer.cli.errors import debugging, usage_error, user_errors
from swapformer.cli.helptext import PlainHelpFormatter
from swapformer.cli.recipes import resolve_config_args
from swapformer.config import ModelConfig
from swapformer.data.tokenizers import TOKENIZER_KINDS
from swapformer.errors import CheckpointError, ConfigError
from swapformer.interop import hf_blocker
from swapformer.registry import load_plugins
from swapformer.tasks.base import MODEL_KEYS, TRAINING_KEYS, SwapformerModule, building_checkpoint_model
from swapformer.training import ProgressBar
from swapformer.training.checkpoints import has_tokenizer, newest_last_checkpoint, read_checkpoint
from swapformer.training.resume import check_resume, checkpoint_hyperparameters

_SEED_LOG = logging.getLogger("lightning.fabric.utilities.seed")
"""The logger of Lightning's ``seed_everything``."""
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
"""Where Lightning looks for a process's rank; it names the rank in its seed line when one is set."""

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


class SwapformerArgumentParser(LightningArgumentParser):
    """LightningCLI's parser whose errors are one line naming the key first (a :class:`UsageError`), instead of
    the usage and every type alternative; the verb's one error path prints it. Its help is in plain words
    (:class:`PlainHelpFormatter`), also for the parsers jsonargparse makes to show ``--model.help CLASS``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", PlainHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> None:
        # nested parsers (a class's init_args) report to their parent, which formats the whole message
        if not self.exit_on_error or debugging():
            super().error(message, ex)
        parsers = [self, *getattr(self._subcommands_action, "_name_parser_map", {}).values()]
        options = [o for parser in parsers for action in parser._actions for o in action.option_strings]
        options += [f"--model.init_args.{k}" for k in (*MODEL_KEYS, *TRAINING_KEYS) if k != "kind"]
        raise usage_error(message, options, getattr(self, "recipe_files", ())) from None


class SwapformerCLI(LightningCLI):
    """LightningCLI that links the data's vocabulary into the model and validates the model config early."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")
        # Trainer's own default ModelCheckpoint, made configurable: one file name per run folder, so a rerun
        # (a new version folder) never needs last-v1.ckpt; instantiate_trainer drops it when checkpointing is off
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # save_last: every fit ends with last.ckpt holding its final step (SaveLastAtEnd), which
        # --ckpt_path last finds
        parser.set_defaults({"checkpoint.enable_version_counter": False, "checkpoint.save_last": True})

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        # Recipes' loggers name no save_dir (CSVLogger requires one): it is filled in from
        # trainer.default_root_dir between parsing and jsonargparse's final check
        given = list(sys.argv[1:] if args is None else args)
        files = [
            value
            for option, value in zip(["", *given], given, strict=False)
            if option in ("--config", "-c") and Path(value).is_file()
        ] + [a.partition("=")[2] for a in given if a.startswith("--config=") and Path(a[9:]).is_file()]
        # a mistake inside a recipe file is named with the file (whichever parser reports it)
        for each in [parser, *getattr(parser._subcommands_action, "_name_parser_map", {}).values()]:
            each.recipe_files = files
        self.config = parser.parse_args(args, _skip_validation=True)
        subcommand = self.config.get("subcommand")
        _loggers_under_root(self.config[subcommand]["trainer"] if subcommand else self.config.get("trainer"))
        try:
            parser.validate(self.config)
        except (TypeError, ValueError, KeyError) as err:  # what parse_args would report through parser.error
            parser.error(str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err), err)
        # before Lightning reads --ckpt_path's hyperparameters, and before any data is read
        verb_config = self.config[subcommand] if subcommand else self.config
        preflight.check_paths(verb_config, subcommand)
        if verb_config.get("ckpt_path") == "last":  # the file itself, said once, before anything reads it
            root = verb_config["trainer"].get("default_root_dir") or os.getcwd()
            verb_config["ckpt_path"] = _newest_last_checkpoint(root)
            rank_zero_info(f"--ckpt_path last: {verb_config['ckpt_path']}")
        if "weights_only" in verb_config and verb_config["weights_only"] is None:
            # Lightning reads --ckpt_path with full unpickling when unset (and warns): tensors and plain values
            # are all a swapformer checkpoint holds, so a file that would run code is refused instead
            verb_config["weights_only"] = True

    def _set_seed(self) -> None:
        # seeded here, before anything is made, as Lightning does; "Seed set to N" is said once the recipe's
        # model and data are made (instantiate_trainer), so a wrong value ends in its one error line alone
        level = _SEED_LOG.level
        _SEED_LOG.setLevel(logging.WARNING)
        try:
            super()._set_seed()
        finally:
            _SEED_LOG.setLevel(level)

    def _parse_ckpt_path(self) -> None:
        # LightningCLI puts the checkpoint's hyperparameters over the recipe's model when --ckpt_path names a file
        # (not for "last"): the run trains the checkpoint's model, drops a changed lr, and config.yaml claims the
        # recipe's. fit builds the recipe's model instead and check_resume refuses one that is not the
        # checkpoint's; validate / test / predict keep reading the model from the checkpoint.
        if self.config.get("subcommand") != "fit":
            super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        model = config.get("model")
        init_args = getattr(model, "init_args", None) if model is not None else None
        if init_args is None:
            return
        self._checkpoint = _checkpoint_model(config.get("ckpt_path"), config.get("data"))
        if self._checkpoint is None:
            _tokenizer_of_init_from(init_args.get("init_from"), config.get("data"))
        preflight.check_trainer(config.get("trainer"))
        preflight.check_compile(init_args, config.get("trainer"))
        _cache_under_the_root(config)
        values = {k: init_args[k] for k in MODEL_KEYS if k in init_args}
        if values.get("vocab_size") is None:
            values["vocab_size"] = _PLACEHOLDER_VOCAB
        if values.get("src_vocab_size") is None:
            values.pop("src_vocab_size", None)
        module_path, _, class_name = model.class_path.rpartition(".")
        module_kind = getattr(getattr(importlib.import_module(module_path), class_name, None), "kind", None)
        if module_kind is not None:
            values["kind"] = module_kind
            _check_data_feeds(model.class_path, module_kind, config.get("data"))
        try:
            model_config = ModelConfig.from_dict(values)
        except ConfigError as err:
            raise ConfigError(
                [f"model.init_args.{p}" if re.match(r"\w+", p)[0] in MODEL_KEYS else p for p in err.problems],
                title=f"invalid model in the recipe ({model.class_path})",
            ) from None
        preflight.check_lengths(model_config, config.get("data"))
        preflight.check_tensor_parallel(
            model_config, config.get("trainer"), meta_init=bool(init_args.get("meta_init"))
        )

    def instantiate_classes(self) -> None:
        try:
            with building_checkpoint_model(getattr(self, "_checkpoint", None)):
                super().instantiate_classes()
        except Exception as err:  # a DataError / ConfigError wrapped by jsonargparse: show it alone
            cause = _user_error(err)
            if cause is None:
                raise
            named = type(cause) not in (ConfigError, CheckpointError)  # DataError: say it is the data's
            raise ConfigError(f"{type(cause).__name__}: {cause}" if named else str(cause)) from err
        config = self.config_init.get(str(self.subcommand), self.config_init)
        if self.subcommand == "fit":  # the recipe's model must be the checkpoint's; nothing has trained yet
            check_resume(config.get("ckpt_path"), hyperparameters=dict(self.model.hparams))
            _say_when_not_exportable(self.model)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        seed = self._get(self.config, "seed_everything")
        if seed is not None and seed is not False:  # Lightning's line, held back by _set_seed
            message = f"Seed set to {seed}"
            if any(name in os.environ for name in _RANK_VARIABLES):  # a process of several: say which
                message = rank_prefixed_message(message, rank_zero_only.rank)
            _SEED_LOG.info(message)
        trainer_config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        keys = self._parser(self.subcommand).callback_keys
        extra: list[Callback] = [self._get(self.config_init, key) for key in keys if key != "checkpoint"]
        own = trainer_config.get("callbacks") or []
        own = own if isinstance(own, list) else [own]
        checkpointing = trainer_config.get("enable_checkpointing") is not False
        if checkpointing and not any(isinstance(c, ModelCheckpoint) for c in own):
            extra.append(self._get(self.config_init, "checkpoint"))
        # the bar SwapformerModule.configure_callbacks would put in place of Lightning's default rich one,
        # given here so that Lightning makes no default bar and prints no notice of its replacement
        rich = importlib.util.find_spec("rich") is not None  # Lightning's default is its rich bar then
        bar = trainer_config.get("enable_progress_bar") is not False and rich
        if bar and not any(isinstance(c, ProgressBarBase) for c in own):
            extra.append(ProgressBar())
        try:
            return self._instantiate_trainer(trainer_config, extra)
        except (ValueError, MisconfigurationException) as err:  # Lightning's word on a trainer setting
            if type(err).__module__.startswith("swapformer"):
                raise
            raise ConfigError(f"trainer: {' '.join(str(err).split())}") from err

    def after_fit(self) -> None:
        trainer = self.trainer
        log_dir = trainer.log_dir  # a collective under DDP / FSDP: every rank must ask, not only rank 0
        if not trainer.is_global_zero:
            return
        lines = []
        checkpoint = trainer.checkpoint_callback
        if checkpoint is None:
            lines.append(
                "checkpointing is off (trainer.enable_checkpointing: false): this run saved no checkpoint"
            )
        else:
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


def _loggers_under_root(trainer: Any) -> None:
    """Point every logger whose ``save_dir`` is unset, or left at its class's default, at
    ``trainer.default_root_dir``: recipes name no output folder of their own."""
    if trainer is None:
        return
    loggers = trainer.get("logger")
    root = trainer.get("default_root_dir") or "."
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        init_args = getattr(logger, "init_args", None)
        if init_args is None or "save_dir" not in init_args:
            continue
        module_path, _, class_name = logger.class_path.rpartition(".")
        parameter = inspect.signature(
            getattr(importlib.import_module(module_path), class_name)
        ).parameters.get("save_dir")
        default = (
            None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default
        )
        if init_args["save_dir"] in (None, default):
            # W&B writes through a service process that may have started in another folder: an absolute path
            service = "wandb" in logger.class_path.lower()
            init_args["save_dir"] = os.path.abspath(root) if service else str(root)


def _newest_last_checkpoint(root: str | os.PathLike) -> str | None:
    """The most recently written ``last*.ckpt`` (a file, or a sharded checkpoint's folder) below ``root``."""
    found = newest_last_checkpoint(root)
    return None if found is None else str(found)


def _cache_under_the_root(config: Any) -> None:
    """Every output of a run lies under ``trainer.default_root_dir``, the data cache too (``<root>/cache``), unless
    the recipe names a ``cache_dir`` or ``$SWAPFORMER_CACHE_DIR`` chooses one shared by all runs."""
    init_args = getattr(config.get("data"), "init_args", None)
    if init_args is None or "cache_dir" not in init_args or init_args.get("cache_dir") is not None:
        return
    if not os.environ.get("SWAPFORMER_CACHE_DIR"):
        trainer = config.get("trainer")
        root = (trainer.get("default_root_dir") if trainer is not None else None) or os.getcwd()
        init_args["cache_dir"] = str(Path(root) / "cache")


def _checkpoint_model(ckpt_path: str | None, data: Any) -> dict[str, Any] | None:
    """The hyperparameters of the model ``--ckpt_path`` holds (None without one on disk); the data module then
    reads text with the checkpoint's tokenizer, so a resumed run sees the ids its model was trained on whatever
    the recipe's data settings (``max_chars`` changes the text a char tokenizer would be fitted on)."""
    if not ckpt_path or "://" in str(ckpt_path):
        return None
    hyperparameters = checkpoint_hyperparameters(ckpt_path)
    init_args = getattr(data, "init_args", None)
    if hyperparameters is None or init_args is None or "tokenizer" not in init_args:
        return hyperparameters
    same = init_args.get("tokenizer") == str(ckpt_path)
    if not same and Path(ckpt_path).exists() and has_tokenizer(ckpt_path):  # a file, or FSDP2's folder
        rank_zero_info(f"--ckpt_path: the data module uses the tokenizer of {ckpt_path}")
        init_args["tokenizer"] = str(ckpt_path)
    return hyperparameters


def _check_data_feeds(module_path: str, module_kind: str, data: Any) -> None:
    """Refuse a data module whose batches the task module cannot read (a seq2seq module given plain text),
    before anything runs: the mismatch would surface as a KeyError in the first step."""
    class_path = getattr(data, "class_path", None)
    if not class_path:
        return
    data_path, _, data_name = class_path.rpartition(".")
    kinds = getattr(getattr(importlib.import_module(data_path), data_name, None), "model_kinds", None)
    if kinds is None or module_kind in kinds:
        return
    raise ConfigError(
        f"model {module_path} trains {module_kind} models but data {class_path} makes batches for "
        f"{' and '.join(kinds)} models: give a data module for {module_kind} (a bundled {module_kind} recipe "
        "names one), or another task module"
    )


def _say_when_not_exportable(module: Any) -> None:
    """One line at the start of a fit from a model folder (import-hf's recipe) whose model, as the recipe has it,
    has no Hugging Face equivalent: the user learns it before training, not from ``export --format hf`` after."""
    init_from = getattr(module, "hparams", {}).get("init_from")
    config = getattr(module, "config", None)
    if (
        not init_from
        or not isinstance(config, ModelConfig)
        or not (Path(init_from) / "config.json").is_file()
    ):
        return
    blocker = hf_blocker(config)
    if blocker is not None:
        rank_zero_info(f"note: {blocker}")


def _tokenizer_of_init_from(init_from: str | None, data: Any) -> None:
    """A model trained from ``init_from``'s weights reads text with that model's tokenizer, when it has one:
    the data module gets it instead of fitting a new one."""
    init_args = getattr(data, "init_args", None)
    if (
        not init_from
        or init_args is None
        or init_args.get("tokenizer", "char") not in (None, *TOKENIZER_KINDS)
    ):
        return
    source = Path(init_from)
    if source.is_file():  # the data module reads the tokenizer first: say what a file that is not one is
        read_checkpoint(source)
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


class _NoAdvert(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger" line, logged on every run that has no LitLogger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


def _quiet_third_party_notices() -> None:
    """Leave out of a run's output what no recipe setting can act on: Lightning's advertisement, torch's
    FutureWarning about the ``LeafSpec`` Lightning's own code builds (with a site-packages path in front), and
    the notices below."""
    lightning_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoAdvert) for f in lightning_log.filters):
        lightning_log.addFilter(_NoAdvert())
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
    # no recipe setting acts on these: the seed Lightning draws when a recipe names none (it says which in the
    # next line), the logger it would pick with TensorBoard installed (recipes name theirs), and on every resume
    # that the checkpoint was written to another folder (a new version folder per run is the layout)
    for message in (
        r"No seed found, seed set to",
        r"Starting from v1\.9\.0, `tensorboardX` has been removed",
        r"The dirpath has changed from",
    ):
        warnings.filterwarnings("ignore", message=message)


def run(args: list[str] | None) -> SwapformerCLI:
    """Run a Lightning verb with the recipe arguments ``args`` (the verb first) and return the CLI object.

    Raises:
        SystemExit: code 2 with ``swapformer <verb>: error: <one line>`` on stderr for a user error (a bad recipe
            value, option or path); with ``--debug`` / ``$SWAPFORMER_DEBUG`` the error itself.
    """
    given = sys.argv[1:] if args is None else args
    verb = given[0] if given else "fit"
    with user_errors(verb):
        return make_cli(args)


def make_cli(args: list[str] | None, cli_class: type[SwapformerCLI] = SwapformerCLI) -> SwapformerCLI:
    """:func:`run` without its error path: a user error is raised as it is (``swapformer compare`` runs many
    fits and reports each one's error in its own row). ``cli_class`` may stop early (compare's checks)."""
    load_plugins()  # plug-in names must be registered before the recipe is checked
    _quiet_third_party_notices()
    if args is None:  # the console script: rewrite sys.argv, which DDP's launcher re-runs in each process
        sys.argv[1:] = resolve_config_args(sys.argv[1:])
    else:
        args = resolve_config_args(args)
    return cli_class(
        model_class=SwapformerModule,
        datamodule_class=LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=LogConfigCallback,
        save_config_kwargs={"overwrite": True},
        parser_class=SwapformerArgumentParser,
        # an option is spelt out: a misspelt one is an error, never taken as the abbreviation of another
        parser_kwargs={
            "allow_abbrev": False,
            **{verb: {"allow_abbrev": False} for verb in LIGHTNING_VERBS},
        },
        args=args,
    )
