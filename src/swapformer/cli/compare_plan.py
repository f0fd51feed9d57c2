"""The plan of ``swapformer compare``: its variants (a ``--vary`` grid or a ``--variants`` file), seeds and run
folders, each variant checked as ``fit`` would check it before anything trains, and the ``compare.json`` that
ties an ``--out`` folder to one base recipe and one set of fit overrides (the equal budget)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from swapformer.cli.errors import debugging, describe, read_text, user_error
from swapformer.cli.fit import SwapformerCLI, make_cli
from swapformer.cli.recipes import resolve_config_args
from swapformer.errors import ConfigError, UsageError, did_you_mean

MANIFEST = "compare.json"
"""What ``--out`` holds about the comparison: base recipe, fit overrides, variants, seeds, baseline."""
SUMMARY_CALLBACK = "swapformer.training.run_summary.RunSummary"
RESERVED = {
    "--seed_everything": "give the seeds with --seeds",
    "--trainer.default_root_dir": "compare puts every run under --out",
    "--ckpt_path": "compare resumes unfinished runs from their own last.ckpt",
}
"""Fit options compare sets itself, and what to do instead."""
BUDGET_KEYS = ("trainer.max_steps", "trainer.max_epochs", "data.init_args.seed", "data.init_args.batch_size")
"""Keys whose variation breaks the equal budget (compare allows it and the table says so)."""


@dataclass
class Variant:
    """One point of the comparison: a name (``positional=alibi,norm=rmsnorm``) and its fit overrides."""

    name: str
    overrides: dict[str, Any]  # full key (model.init_args.positional) -> value
    error: str | None = None  # the check's one line, for a refused combination

    def args(self) -> list[str]:
        return [f"--{key}={_render(value)}" for key, value in self.overrides.items()]


@dataclass
class Plan:
    name: str
    out: Path
    configs: list[str]
    overrides: list[str]
    variants: list[Variant]
    seeds: list[int]
    baseline: str
    eval_lengths: list[int]
    base: dict[str, Any]  # the resolved base recipe (from the check)
    given: list[str] = field(default_factory=list)  # --config as the user wrote it (names in messages)
    runs: list[tuple[Variant, int]] = field(default_factory=list)

    def run_dir(self, variant: Variant, seed: int) -> Path:
        return self.out / _folder_name(variant.name) / f"seed={seed}"

    def run_settings(self, variant: Variant, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """What one run sets on top of the base recipe and the command's overrides: (fit keys -> values, the
        :class:`RunSummary` callback appended to the recipe's callbacks)."""
        summary: dict[str, Any] = {"variant": variant.name}
        if self.eval_lengths:
            summary["eval_lengths"] = self.eval_lengths
        settings = {
            **variant.overrides,
            "seed_everything": seed,
            "trainer.default_root_dir": str(self.run_dir(variant, seed)),
        }
        if uses_wandb(self.base):  # one W&B group per comparison, a run per variant and seed
            settings["trainer.logger.init_args.group"] = self.name
            settings["trainer.logger.init_args.name"] = f"{variant.name}/seed={seed}"
        data = (self.base.get("data") or {}).get("init_args") or {}
        if "cache_dir" in data and data["cache_dir"] is None and not os.environ.get("SWAPFORMER_CACHE_DIR"):
            settings["data.init_args.cache_dir"] = str(self.out / "cache")  # the corpus is tokenized once
        return settings, {"class_path": SUMMARY_CALLBACK, "init_args": summary}

    def sweep_file(self, variant: Variant, seed: int) -> Path:
        """Where an emitted sweep keeps one run's :meth:`run_config`."""
        return self.out / "sweep" / f"{_folder_name(variant.name)}.seed={seed}.yaml"

    def fit_args(self, variant: Variant, seed: int) -> list[str]:
        """The ``swapformer fit`` command line of one run (without ``--ckpt_path``)."""
        settings, callback = self.run_settings(variant, seed)
        args = [a for c in self.configs for a in ("--config", c)]
        args += [*self.overrides, *(f"--{key}={_render(value)}" for key, value in settings.items())]
        args.append("--trainer.callbacks+=" + json.dumps(callback))
        return ["fit", *args]

    def run_config(self, variant: Variant, seed: int) -> dict[str, Any]:
        """The same settings as a recipe file: ``fit --config BASE ... --config THIS`` is :meth:`fit_args`' run
        (what an emitted W&B sweep's agent runs)."""
        settings, callback = self.run_settings(variant, seed)
        config: dict[str, Any] = {}
        for key, value in settings.items():
            *parents, last = key.split(".")
            node = config
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        config.setdefault("trainer", {})["callbacks+"] = [callback]
        return config


# ---- the plan: variants, seeds, checks ------------------------------------------------------------------


def make_plan(args: argparse.Namespace, overrides: list[str]) -> Plan:
    """Read and check the whole comparison before anything trains.

    Raises:
        UsageError / ConfigError: a bad option, key, value, seed list or ``--out`` (one line each).
    """
    if not args.config:
        raise UsageError("no --config: give the base recipe, e.g. --config stdlib-tiny")
    _check_overrides(overrides)
    configs = [resolve_config_args(["--config", c])[1] for c in args.config]
    variants = _variants(args)
    seeds = _seeds(args.seeds) if args.seeds is not None else None
    eval_lengths = int_list(args.eval_lengths, "--eval_lengths", positive=True) if args.eval_lengths else []
    names = [v.name for v in variants]
    if args.baseline is not None and args.baseline not in names:
        raise UsageError(
            f"--baseline {args.baseline!r} is not a variant{did_you_mean(args.baseline, names)}; variants: {', '.join(names)}"
        )
    name = Path(args.out).name if args.out else _default_name(args, configs)
    out = Path(args.out) if args.out else Path("runs") / "compare" / name
    base_args = ["fit", *[a for c in configs for a in ("--config", c)], *overrides]
    base = check(base_args, what="the base recipe with its overrides")
    if seeds is None:
        seed = base.get("seed_everything")
        seeds = [seed if isinstance(seed, int) and not isinstance(seed, bool) else 0]
    plan = Plan(name, out, configs, overrides, variants, seeds, args.baseline or names[0], eval_lengths, base)
    plan.given = list(args.config)
    _check_variants(plan, base_args, option="--vary" if args.vary else f"--variants {args.variants}:")
    _check_out(plan)
    plan.runs = [(v, s) for v in variants for s in seeds]
    return plan


def _check_overrides(overrides: list[str]) -> None:
    for arg in overrides:
        option = arg.split("=")[0]
        if option in RESERVED:
            raise UsageError(f"{option} is set by compare for every run: {RESERVED[option]}")
    if overrides and not overrides[0].startswith("--"):
        raise UsageError(f"unexpected argument {overrides[0]!r}: fit overrides are --key value pairs")


def _variants(args: argparse.Namespace) -> list[Variant]:
    if args.vary and args.variants:
        raise UsageError(
            "--vary and --variants both given: use one (a file lists variants that are not a grid)"
        )
    if args.variants:
        return _variants_file(args.variants)
    if not args.vary:
        raise UsageError(
            "nothing to compare: give --vary KEY=V1,V2 (several form a grid) or --variants FILE.yaml"
        )
    axes: list[tuple[str, str, list[Any]]] = []  # (full key, short name, values)
    for item in args.vary:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--vary {item!r} is not KEY=V1,V2: e.g. --vary model.positional=rope,alibi")
        full = full_key(key)
        if any(full == a[0] for a in axes):
            raise UsageError(f"--vary {key} is given twice: list all its values in one --vary {key}=V1,V2")
        values = [_value(v, key) for v in split_values(text)]
        if not values:
            raise UsageError(f"--vary {key}= has no values: the grid is empty; give e.g. --vary {key}=V1,V2")
        rendered = [_render(v) for v in values]
        duplicate = next((r for i, r in enumerate(rendered) if r in rendered[:i]), None)
        if duplicate is not None:
            raise UsageError(f"--vary {key}: the value {duplicate!r} is given twice")
        axes.append((full, full.rpartition(".")[2], values))
    shorts = [a[1] for a in axes]
    if len(set(shorts)) < len(shorts):  # two keys end alike (model.init_args.norm, data.init_args.norm)
        axes = [(full, full.replace(".init_args", ""), values) for full, _, values in axes]
    variants = [Variant("", {})]
    for full, short, values in axes:
        variants = [
            Variant(
                ",".join(filter(None, [v.name, f"{short}={_label(value)}"])), {**v.overrides, full: value}
            )
            for v in variants
            for value in values
        ]
    return variants


def _variants_file(path: str) -> list[Variant]:
    try:
        data = yaml.safe_load(read_text(path, "--variants"))
    except yaml.YAMLError as err:
        raise ConfigError(f"--variants {path}: not YAML ({str(err).splitlines()[0]}); fix the file") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            f"--variants {path} holds no variants: write a mapping of names to overrides, e.g. "
            "'alibi: {model.positional: alibi}'"
        )
    variants = []
    for name, overrides in data.items():
        if overrides is None:
            overrides = {}  # the base recipe itself
        if not isinstance(overrides, dict):
            raise ConfigError(
                f"--variants {path}: variant {name!r} is {overrides!r}, not a mapping of keys to values "
                "(e.g. {model.positional: alibi})"
            )
        variants.append(Variant(str(name), {full_key(str(k)): v for k, v in overrides.items()}))
    return variants


def full_key(key: str) -> str:
    """``model.positional`` -> ``model.init_args.positional`` (the model and data are classes in recipes)."""
    key = key.removeprefix("--")
    head, _, rest = key.partition(".")
    if head in ("model", "data") and rest and not rest.startswith(("init_args.", "class_path")):
        return f"{head}.init_args.{rest}"
    return key


def split_values(text: str) -> list[str]:
    """``rope,alibi`` -> two values; commas inside ``{}``, ``[]`` or quotes belong to a YAML value."""
    values, depth, quote, current = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(current.strip())
            current = ""
            continue
        current += char
    values.append(current.strip())
    return [v for v in values if v]


def _value(text: str, key: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UsageError(f"--vary {key}: {text!r} is not a YAML value ({str(err).splitlines()[0]})") from None


def _render(value: Any) -> str:
    """A value as fit's command line takes it (strings bare, everything else as JSON, which YAML reads)."""
    return value if isinstance(value, str) else json.dumps(value)


def _label(value: Any) -> str:
    """A value in a variant's name: ``alibi``, ``swiglu(hidden=512)`` for ``{name: swiglu, hidden: 512}``."""
    if isinstance(value, dict):
        inner = ",".join(f"{k}={_label(v)}" for k, v in value.items() if k != "name")
        return f"{value['name']}({inner})" if "name" in value else f"({inner})"
    if isinstance(value, list):
        return "[" + ",".join(_label(v) for v in value) + "]"
    return _render(value)


def _folder_name(name: str) -> str:
    return re.sub(r"[/\\\0]", "_", name) or "base"


def _seeds(text: str) -> list[int]:
    seeds = int_list(text, "--seeds")
    duplicate = next((s for i, s in enumerate(seeds) if s in seeds[:i]), None)
    if duplicate is not None:
        raise UsageError(f"--seeds {text!r}: seed {duplicate} is given twice")
    return seeds


def int_list(text: str, option: str, *, positive: bool = False) -> list[int]:
    items = [t.strip() for t in text.split(",")]
    for item in items:
        if not re.fullmatch(r"-?\d+", item) or (positive and int(item) < 1):
            kind = "a positive whole number" if positive else "a whole number"
            raise UsageError(
                f"{option} {text!r}: {item!r} is not {kind}; give numbers separated by commas, e.g. {option} 1,2,3"
            )
    return [int(i) for i in items]


def positive_int(text: str, option: str) -> int:
    if not re.fullmatch(r"\d+", str(text)) or int(text) < 1:
        raise UsageError(f"{option} {text!r} is not a positive whole number; e.g. {option} 2")
    return int(text)


def _default_name(args: argparse.Namespace, configs: list[str]) -> str:
    recipe = Path(args.config[0]).stem
    if args.variants:
        return f"{recipe}-{Path(args.variants).stem}"
    keys = [full_key(v.partition("=")[0]).rpartition(".")[2] for v in args.vary]
    return "-".join([recipe, *keys])


class _Checked(Exception):  # the check's way out of LightningCLI, not an error
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config


def _check_only_cli() -> type:

    class CheckOnlyCLI(SwapformerCLI):
        """Fit's parsing and early checks (options, types, the model config, trainer names, lengths), then out."""

        def before_instantiate_classes(self) -> None:
            parser = self._parser(self.subcommand)
            config = self.config[self.subcommand] if self.subcommand else self.config
            with warnings.catch_warnings():  # skip_none's deprecation: the Nones say which keys exist
                warnings.simplefilter("ignore")
                resolved = yaml.safe_load(parser.dump(config, skip_none=False, skip_validation=True))
            super().before_instantiate_classes()
            raise _Checked(resolved)

    return CheckOnlyCLI


def check(fit_args: list[str], *, what: str) -> dict[str, Any]:
    """Run fit's checks on ``fit_args`` and return the resolved recipe; nothing is built or read.

    Raises:
        ConfigError: the user error the check found, named with ``what``.
    """

    try:
        with _quiet():
            make_cli(fit_args, _check_only_cli())
    except _Checked as done:
        return done.config
    except SystemExit as err:  # jsonargparse's own exit (it printed why)
        raise ConfigError(f"{what}: fit's parser exited (code {err.code})") from None
    except Exception as err:
        cause = user_error(err)
        if cause is None or debugging():
            raise
        raise ConfigError(f"{what}: {one_line(cause)}") from None
    raise ConfigError(f"{what}: fit's checks did not finish")  # pragma: no cover - a verb that ran


def one_line(err: BaseException, *, named: bool = False) -> str:
    """A user error's message as one line (a ConfigError's problems joined); ``named``: with its type first."""
    problems = getattr(err, "problems", None)
    text = "; ".join(problems) if isinstance(err, ConfigError) and problems else describe(err)
    return " ".join(f"{type(err).__name__}: {text}".split() if named else text.split())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Fit's checks say nothing (the seed line, "starting a new run") until the runs start."""
    loggers = [
        logging.getLogger(n)
        for n in ("lightning.fabric.utilities.seed", "lightning.pytorch.utilities.rank_zero")
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _check_variants(plan: Plan, base_args: list[str], *, option: str) -> None:
    """Check every variant; a (key, value) that fails in every variant that has it is the command line's
    mistake and raised, other failures (a refused combination) stay on their variant."""
    errors: dict[str, str] = {}
    for variant in plan.variants:
        try:
            check([*base_args, *variant.args(), f"--seed_everything={plan.seeds[0]}"], what=variant.name)
        except ConfigError as err:
            errors[variant.name] = str(err).removeprefix(f"{variant.name}: ")
    for key in dict.fromkeys(k for v in plan.variants for k in v.overrides):
        holders = [v for v in plan.variants if key in v.overrides]
        if len({_render(v.overrides[key]) for v in holders}) > 1 and all(v.name in errors for v in holders):
            raise ConfigError(f"{option} {key.replace('.init_args', '')}: {errors[holders[0].name]}")
    for variant in plan.variants:
        for key, value in variant.overrides.items():
            holders = [
                v for v in plan.variants if key in v.overrides and _render(v.overrides[key]) == _render(value)
            ]
            if holders and all(v.name in errors for v in holders):
                raise ConfigError(
                    f"{option} {key.replace('.init_args', '')}={_render(value)}: {errors[variant.name]}"
                )
    for variant in plan.variants:
        variant.error = errors.get(variant.name)


def _check_out(plan: Plan) -> None:
    """``--out`` is new, or holds a comparison of the same base recipe and fit overrides (the equal budget)."""
    if plan.out.exists() and not plan.out.is_dir():
        raise ConfigError(f"--out {plan.out} is a file: give a folder for the comparison")
    manifest = plan.out / MANIFEST
    if not manifest.is_file():
        if plan.out.is_dir() and any(p.name != "cache" for p in plan.out.iterdir()):
            raise ConfigError(
                f"--out {plan.out} is a folder of something else (no {MANIFEST}): give a new folder"
            )
        return
    old = json.loads(manifest.read_text())
    if [Path(c).resolve().as_posix() for c in old.get("configs", [])] != [
        Path(c).resolve().as_posix() for c in plan.configs
    ]:
        before = " ".join(f"--config {c}" for c in old.get("given", old.get("configs", [])))
        now = " ".join(f"--config {c}" for c in plan.given)
        raise ConfigError(
            f"--out {plan.out} holds a comparison of {before}, not of {now}: give another --out, or the same "
            "--config to add to that comparison"
        )
    if old.get("overrides", []) != plan.overrides:
        raise ConfigError(
            f"--out {plan.out} holds runs made with the fit overrides {' '.join(old.get('overrides')) or '(none)'}; "
            f"these runs would not have the same budget: give the same overrides or another --out"
        )


def plan_manifest(plan: Plan) -> dict[str, Any]:
    """What ``compare.json`` records (variants and seeds accumulate over reruns)."""
    manifest_path = plan.out / MANIFEST
    old = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    variants = dict(old.get("variants", {}))
    variants.update({v.name: {k: v.overrides[k] for k in v.overrides} for v in plan.variants})
    data = (plan.base.get("data") or {}).get("init_args") or {}
    return {
        "name": plan.name,
        "configs": plan.configs,
        "given": plan.given,
        "overrides": plan.overrides,
        "variants": variants,
        "order": [v.name for v in plan.variants]
        + [n for n in old.get("order", []) if n not in {v.name for v in plan.variants}],
        "seeds": sorted(set(old.get("seeds", [])) | set(plan.seeds)),
        "baseline": plan.baseline,
        "data_seed": data.get("seed"),
        "max_steps": (plan.base.get("trainer") or {}).get("max_steps"),
        "eval_lengths": plan.eval_lengths,
        "budget_keys": sorted({k for v in plan.variants for k in v.overrides if k in BUDGET_KEYS}),
    }


def write_manifest(plan: Plan) -> None:
    plan.out.mkdir(parents=True, exist_ok=True)
    (plan.out / MANIFEST).write_text(json.dumps(plan_manifest(plan), indent=1, default=str))


def uses_wandb(config: dict[str, Any]) -> bool:
    logger = (config.get("trainer") or {}).get("logger")
    loggers = logger if isinstance(logger, list) else [logger]
    return any(isinstance(x, dict) and "wandb" in str(x.get("class_path", "")).lower() for x in loggers)


def wandb_project(config: dict[str, Any]) -> str | None:
    logger = (config.get("trainer") or {}).get("logger")
    for x in logger if isinstance(logger, list) else [logger]:
        if isinstance(x, dict) and "wandb" in str(x.get("class_path", "")).lower():
            return (x.get("init_args") or {}).get("project")
    return None
