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
import json
import shlex
import sys
from pathlib import Path

import yaml

from swapformer.cli import compare_report as report
from swapformer.cli.compare_plan import (
    MANIFEST,
    Plan,
    full_key,
    int_list,
    make_plan,
    plan_manifest,
    positive_int,
    split_values,
    uses_wandb,
    wandb_project,
    write_manifest,
)
from swapformer.cli.compare_runs import execute, run_status
from swapformer.cli.errors import VerbParser, user_errors
from swapformer.errors import ConfigError
from swapformer.training.run_summary import SUMMARY_FILE

__all__ = ["full_key", "int_list", "main", "parser", "split_values"]

# ---- the command line ---------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = VerbParser(
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
    return p


def main(argv: list[str]) -> None:
    failures: list[str] = []
    with user_errors("compare"):
        args, overrides = parser().parse_known_args(argv)
        jobs = positive_int(args.jobs, "--jobs")  # a dry run says it too, before anything is planned
        if args.collect:
            _collect(args)
            return
        plan = make_plan(args, overrides)
        if args.emit:
            _emit(plan, args)
            return
        if args.dry_run:
            _dry_run(plan)
            return
        failures = execute(plan, plan.runs, jobs=jobs)
        rows = report.write(plan.out, plan_manifest(plan))
        print(report.markdown_table(rows, plan.baseline), flush=True)
        print(f"results: {plan.out / 'results.md'}, {plan.out / 'results.csv'}", flush=True)
        if uses_wandb(plan.base):
            report.log_wandb_table(plan.out, rows, project=wandb_project(plan.base), group=plan.name)
    if failures:
        print(
            f"swapformer compare: {len(failures)} run(s) failed: {', '.join(failures)}",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(1)


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


def _emit(plan: Plan, args: argparse.Namespace) -> None:
    plan.out = plan.out.resolve()  # the jobs may start in another folder
    write_manifest(plan)
    if args.emit == "slurm":
        path = plan.out / "compare.sbatch"
        path.write_text(report.sbatch_script(plan, [(v, s) for v, s in plan.runs if v.error is None]))
        print(f"wrote {path}: submit with `sbatch {path}`; then `swapformer compare --collect {plan.out}`")
        return
    runs = [(v, s) for v, s in plan.runs if v.error is None]
    (plan.out / "sweep").mkdir(parents=True, exist_ok=True)
    for variant, seed in runs:  # what each agent's fit reads after the base recipe and the overrides
        text = yaml.safe_dump(plan.run_config(variant, seed), sort_keys=False, allow_unicode=True)
        plan.sweep_file(variant, seed).write_text(text)
    path = plan.out / "sweep.yaml"
    path.write_text(report.sweep_yaml(plan, runs))
    print(
        f"wrote {path}\n  wandb sweep {path}\n  wandb agent <entity/project/sweep id printed by wandb sweep>"
    )
    print(f"then: swapformer compare --collect {plan.out}")


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
