"""``swapformer compare``: variants of a recipe trained at an equal budget, tabulated with their spread.

::

    swapformer compare --config stdlib-tiny \\
        --vary model.positional=rope,alibi,learned --vary model.norm=layernorm,rmsnorm \\
        --seeds 1,2,3 [--out runs/compare/NAME] [--jobs N] [--dry-run] [any fit override: --trainer.max_steps 300]
    swapformer compare --config stdlib-tiny --variants variants.yaml --baseline rope
    swapformer compare ... --emit wandb-sweep|slurm      # sweep.yaml / an sbatch array script; trains nothing
    swapformer compare --collect runs/compare/NAME        # the table and plots of run folders made anywhere

Every run is an ordinary ``swapformer fit`` of the base recipe with the variant's overrides and
``--seed_everything k``, in its own folder ``<out>/<variant>/seed=<k>/``. The data seed, the steps and the
evaluation are the recipe's in every run, so every variant sees the same tokens in the same order and seed k
draws the initial weights from the same random stream in every variant. A rerun skips finished runs, resumes
unfinished ones from their ``last.ckpt``, and trains the variants a grown ``--vary`` adds. Every variant is
checked (parsed, its model config validated) before anything trains: a value that fails in every variant is a
mistake of the command line (one error line, exit 2); a combination that is refused or a run that fails gets its
row with its one-line error, the others still run, and the command exits 1 naming them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from swapformer.cli import compare_report as report
from swapformer.cli.errors import debugging, describe, read_text, user_error, user_errors
from swapformer.cli.recipes import resolve_config_args
from swapformer.errors import ConfigError, StoppedBySignal, UsageError, did_you_mean
from swapformer.training.checkpoints import newest_last_checkpoint
from swapformer.training.run_summary import SUMMARY_FILE

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

    def fit_args(self, variant: Variant, seed: int) -> list[str]:
        """The ``swapformer fit`` command line of one run (without ``--ckpt_path``)."""
        summary: dict[str, Any] = {"variant": variant.name}
        if self.eval_lengths:
            summary["eval_lengths"] = self.eval_lengths
        args = [a for c in self.configs for a in ("--config", c)]
        args += [*self.overrides, *variant.args(), f"--seed_everything={seed}"]
        args.append(f"--trainer.default_root_dir={self.run_dir(variant, seed)}")
        args.append(
            "--trainer.callbacks+=" + json.dumps({"class_path": SUMMARY_CALLBACK, "init_args": summary})
        )
        if _uses_wandb(self.base):  # one W&B group per comparison, a run per variant and seed
            args += [
                f"--trainer.logger.init_args.group={self.name}",
                f"--trainer.logger.init_args.name={variant.name}/seed={seed}",
            ]
        data = (self.base.get("data") or {}).get("init_args") or {}
        if "cache_dir" in data and data["cache_dir"] is None and not os.environ.get("SWAPFORMER_CACHE_DIR"):
            args.append(f"--data.init_args.cache_dir={self.out / 'cache'}")  # the corpus is tokenized once
        return ["fit", *args]


# ---- the command line ---------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line through the verb's error path, not argparse's usage
        raise UsageError(f"{message}; swapformer compare --help lists the options")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="swapformer compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # every other --option goes to fit unchanged
    )
    p.add_argument(
        "--config", "-c", action="append", default=[], help="the base recipe (a name or file; repeatable)"
    )
    p.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a fit key and its values (YAML each: model.ffn={name: swiglu}); several --vary form a grid",
    )
    p.add_argument("--variants", metavar="FILE", help="a YAML mapping of variant names to their overrides")
    p.add_argument("--baseline", metavar="NAME", help="the reference variant (default: the first)")
    p.add_argument(
        "--seeds", metavar="K,K,...", help="model seeds, each run in every variant (default: the recipe's)"
    )
    p.add_argument(
        "--out", metavar="DIR", help="where the runs and the table go (default: runs/compare/NAME)"
    )
    p.add_argument(
        "--jobs", metavar="N", default="1", help="runs at once, each in its own process (default 1)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the runs and their overrides; train nothing")
    p.add_argument(
        "--emit", choices=["wandb-sweep", "slurm"], help="write sweep.yaml / an sbatch array; train nothing"
    )
    p.add_argument(
        "--collect", metavar="DIR", help="build the table and plots from the run folders below DIR"
    )
    p.add_argument(
        "--eval_lengths", metavar="L,L,...", help="also score each final model at these context lengths"
    )
    p.add_argument(
        "--run", nargs="+", metavar="KEY=VALUE", help=argparse.SUPPRESS
    )  # variant=NAME seed=K (sweeps)
    return p


def main(argv: list[str]) -> None:
    failures: list[str] = []
    with user_errors("compare"):
        args, overrides = parser().parse_known_args(argv)
        if args.collect:
            _collect(args)
            return
        plan = make_plan(args, overrides)
        if args.emit:
            _emit(plan, args, argv)
            return
        if args.dry_run:
            _dry_run(plan)
            return
        jobs = _positive_int(args.jobs, "--jobs")
        if args.run:  # one run of an emitted sweep: the table is --collect's, once all have run
            failures = execute(plan, [_one_run(plan, args.run)])
            return
        failures = execute(plan, plan.runs, jobs=jobs)
        rows = report.write(plan.out, plan_manifest(plan))
        print(report.markdown_table(rows, plan.baseline), flush=True)
        print(f"results: {plan.out / 'results.md'}, {plan.out / 'results.csv'}", flush=True)
        if _uses_wandb(plan.base) and not args.run:
            report.log_wandb_table(plan.out, rows, project=_wandb_project(plan.base), group=plan.name)
    if failures:
        print(
            f"swapformer compare: {len(failures)} run(s) failed: {', '.join(failures)}",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(1)


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
    eval_lengths = _int_list(args.eval_lengths, "--eval_lengths", positive=True) if args.eval_lengths else []
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
    seeds = _int_list(text, "--seeds")
    duplicate = next((s for i, s in enumerate(seeds) if s in seeds[:i]), None)
    if duplicate is not None:
        raise UsageError(f"--seeds {text!r}: seed {duplicate} is given twice")
    return seeds


def _int_list(text: str, option: str, *, positive: bool = False) -> list[int]:
    items = [t.strip() for t in text.split(",")]
    for item in items:
        if not re.fullmatch(r"-?\d+", item) or (positive and int(item) < 1):
            kind = "a positive whole number" if positive else "a whole number"
            raise UsageError(
                f"{option} {text!r}: {item!r} is not {kind}; give numbers separated by commas, e.g. {option} 1,2,3"
            )
    return [int(i) for i in items]


def _positive_int(text: str, option: str) -> int:
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
    from swapformer.cli.fit import SwapformerCLI

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
    from swapformer.cli.fit import make_cli

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
    import logging

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


def _write_manifest(plan: Plan) -> None:
    plan.out.mkdir(parents=True, exist_ok=True)
    (plan.out / MANIFEST).write_text(json.dumps(plan_manifest(plan), indent=1, default=str))


# ---- running ----------------------------------------------------------------------------------------------


def run_status(plan: Plan, variant: Variant, seed: int) -> str:
    """``done`` (finished earlier), ``resume`` (a last.ckpt), ``new``, or ``refused`` (failed its check)."""
    if variant.error is not None:
        return "refused"
    folder = plan.run_dir(variant, seed)
    summary = _read_summary(folder)
    if summary is not None and summary.get("status") == "finished":
        return "done"
    return "resume" if folder.is_dir() and newest_last_checkpoint(folder) else "new"


def execute(plan: Plan, runs: list[tuple[Variant, int]], *, jobs: int = 1) -> list[str]:
    """Train the runs not finished yet; return the failed ones as ``variant (seed k)``."""
    _write_manifest(plan)
    todo = []
    for variant, seed in runs:
        status = run_status(plan, variant, seed)
        if status == "refused":
            _write_failure(plan, variant, seed, variant.error or "refused")
        elif status != "done":
            todo.append((variant, seed, status))
    done = len(runs) - len(todo)
    print(
        f"compare {plan.name}: {len(runs)} runs, {done} finished or refused earlier, {len(todo)} to train",
        flush=True,
    )
    if jobs == 1:
        for i, (variant, seed, status) in enumerate(todo, 1):
            print(f"[{i}/{len(todo)}] {variant.name} seed={seed} ({status})", flush=True)
            _run_in_process(plan, variant, seed, status)
    else:
        _run_in_processes(plan, todo, jobs)
    failed = []
    for variant, seed in runs:
        summary = _read_summary(plan.run_dir(variant, seed)) or {}
        if summary.get("status") != "finished":
            failed.append(f"{variant.name} (seed {seed})")
    return failed


def _fit_args(plan: Plan, variant: Variant, seed: int, status: str) -> list[str]:
    args = plan.fit_args(variant, seed)
    return [*args, "--ckpt_path=last"] if status == "resume" else args


def _run_in_process(plan: Plan, variant: Variant, seed: int, status: str) -> None:
    from swapformer.cli.fit import make_cli

    try:
        make_cli(_fit_args(plan, variant, seed, status))
    except (KeyboardInterrupt, StoppedBySignal):
        raise
    except SystemExit as err:
        _write_failure(plan, variant, seed, f"fit exited with code {err.code}")
    except Exception as err:
        if debugging():
            traceback.print_exc()
        cause = user_error(err)
        _write_failure(
            plan, variant, seed, one_line(cause) if cause is not None else one_line(err, named=True)
        )
    finally:
        _finish_wandb()
    summary = _read_summary(plan.run_dir(variant, seed))
    if summary is None:
        _write_failure(plan, variant, seed, "fit ended without finishing (no run_summary.json)")
    elif summary.get("status") == "failed":
        print(f"  failed: {summary['error']}", file=sys.stderr, flush=True)


def _run_in_processes(plan: Plan, todo: list[tuple[Variant, int, str]], jobs: int) -> None:
    """``jobs`` runs at once, each ``python -m swapformer fit`` with its output in ``<run>/compare.log``: one GPU
    each where there are GPUs, else the CPU threads split between them."""
    import torch

    gpus = torch.cuda.device_count()
    slots: list[int] = list(range(jobs))
    lock = threading.Lock()

    def one(item: tuple[Variant, int, str]) -> None:
        variant, seed, status = item
        with lock:
            slot = slots.pop()
        try:
            env = dict(os.environ)
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
            else:
                env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
            folder = plan.run_dir(variant, seed)
            folder.mkdir(parents=True, exist_ok=True)
            log = folder / "compare.log"
            print(f"{variant.name} seed={seed} ({status}): {log}", flush=True)
            command = [sys.executable, "-m", "swapformer", *_fit_args(plan, variant, seed, status)]
            with open(log, "w") as file:
                code = subprocess.run(command, stdout=file, stderr=subprocess.STDOUT, env=env).returncode
            summary = _read_summary(folder)
            if code != 0 or summary is None or summary.get("status") != "finished":
                _write_failure(plan, variant, seed, _error_line(log, code))
                print(
                    f"  {variant.name} seed={seed} failed: {_error_line(log, code)}",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            with lock:
                slots.append(slot)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, todo))


def _error_line(log: Path, code: int) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if match := re.match(r"swapformer \w+: error: (.*)", line):
            return match[1]
    return lines[-1] if lines else f"fit exited with code {code}"


def _read_summary(folder: Path) -> dict[str, Any] | None:
    path = folder / SUMMARY_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_failure(plan: Plan, variant: Variant, seed: int, error: str) -> None:
    folder = plan.run_dir(variant, seed)
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"status": "failed", "variant": variant.name, "seed": seed, "error": error}
    (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))


def _finish_wandb() -> None:
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def _uses_wandb(config: dict[str, Any]) -> bool:
    logger = (config.get("trainer") or {}).get("logger")
    loggers = logger if isinstance(logger, list) else [logger]
    return any(isinstance(x, dict) and "wandb" in str(x.get("class_path", "")).lower() for x in loggers)


def _wandb_project(config: dict[str, Any]) -> str | None:
    logger = (config.get("trainer") or {}).get("logger")
    for x in logger if isinstance(logger, list) else [logger]:
        if isinstance(x, dict) and "wandb" in str(x.get("class_path", "")).lower():
            return (x.get("init_args") or {}).get("project")
    return None


def _one_run(plan: Plan, items: list[str]) -> tuple[Variant, int]:
    """``--run variant=NAME seed=K`` (what an emitted sweep's agent passes): one run of the plan."""
    given = dict(item.partition("=")[::2] for item in items)
    names = {v.name: v for v in plan.variants}
    if given.get("variant") not in names:
        raise UsageError(f"--run variant={given.get('variant')!r} is not a variant of this comparison")
    return names[given["variant"]], _int_list(given.get("seed", ""), "--run seed")[0]


# ---- dry run, emit, collect ------------------------------------------------------------------------------


def _dry_run(plan: Plan) -> None:
    shared = ["fit", *[a for c in plan.configs for a in ("--config", c)], *plan.overrides]
    print(f"compare {plan.name}: {len(plan.runs)} runs under {plan.out} (baseline {plan.baseline})")
    print(
        f"every run: swapformer {shlex.join(shared)} then its own overrides, --seed_everything and its folder"
    )
    for variant, seed in plan.runs:
        status = run_status(plan, variant, seed)
        extra = f": {variant.error}" if variant.error else ""
        own = shlex.join([*variant.args(), f"--seed_everything={seed}"])
        print(f"  {variant.name} seed={seed} [{status}{extra}] {plan.run_dir(variant, seed)}: {own}")


def _emit(plan: Plan, args: argparse.Namespace, argv: list[str]) -> None:
    plan.out = plan.out.resolve()  # the jobs may start in another folder
    _write_manifest(plan)
    if args.emit == "slurm":
        path = plan.out / "compare.sbatch"
        path.write_text(report.sbatch_script(plan, [(v, s) for v, s in plan.runs if v.error is None]))
        print(f"wrote {path}: submit with `sbatch {path}`; then `swapformer compare --collect {plan.out}`")
        return
    keep = _without_option(argv, "--emit")
    path = plan.out / "sweep.yaml"
    path.write_text(report.sweep_yaml(plan, keep))
    print(
        f"wrote {path}\n  wandb sweep {path}\n  wandb agent <entity/project/sweep id printed by wandb sweep>"
    )
    print(f"then: swapformer compare --collect {plan.out}")


def _without_option(argv: list[str], option: str) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == option:
            skip = True
            continue
        if not arg.startswith(option + "="):
            out.append(arg)
    return out


def _collect(args: argparse.Namespace) -> None:
    root = Path(args.collect)
    if not root.is_dir():
        raise ConfigError(f"--collect {root}: no such folder; give the --out of a comparison")
    manifest = json.loads((root / MANIFEST).read_text()) if (root / MANIFEST).is_file() else {}
    if args.baseline:
        manifest["baseline"] = args.baseline
    rows = report.write(root, manifest)
    if not rows:
        raise ConfigError(
            f"--collect {root}: no {SUMMARY_FILE} below it; the runs write one when they finish"
        )
    print(report.markdown_table(rows, manifest.get("baseline")), flush=True)
    print(f"results: {root / 'results.md'}, {root / 'results.csv'}", flush=True)
