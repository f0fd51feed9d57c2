"""What ``swapformer compare`` writes: ``results.csv`` (a row per run), ``results.md`` (a row per variant: mean ±
std over seeds, the difference to the baseline and its Welch t-test p-value), ``curves.png``, ``throughput.png``,
and the emitted ``sweep.yaml`` / sbatch script. Everything is read back from the runs' ``run_summary.json``, so
the same table comes from run folders made anywhere (``--collect``).
"""

from __future__ import annotations

import csv
import json
import math
import shlex
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swapformer.training.run_summary import SUMMARY_FILE

if TYPE_CHECKING:
    from swapformer.cli.compare_plan import Plan, Variant

COLUMNS = [
    "variant",
    "seed",
    "status",
    "val_loss",
    "best_val_loss",
    "tokens_per_s",
    "params",
    "flops_per_token",
    "peak_memory_mb",
    "wall_s",
    "error",
]
"""The columns of ``results.csv`` (then ``steps``, ``tokens`` and a ``val_loss@L`` per evaluated length)."""


def collect(root: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """A row per run folder ``<root>/<variant>/seed=<k>/`` holding a ``run_summary.json``, in the manifest's
    variant order (else by name), then by seed."""
    rows = []
    for path in sorted(root.glob(f"*/*/{SUMMARY_FILE}")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        seed = summary.get("seed")
        if seed is None and path.parent.name.startswith("seed="):
            seed = int(path.parent.name.partition("=")[2])
        row = {
            **{c: summary.get(c) for c in COLUMNS},
            "variant": summary.get("variant") or path.parent.parent.name,
            "seed": seed,
            "steps": summary.get("step"),
            "tokens": summary.get("tokens"),
            "curve": summary.get("curve", []),
        }
        for length, loss in (summary.get("eval_lengths") or {}).items():
            row[f"val_loss@{length}"] = loss
        rows.append(row)
    order = {name: i for i, name in enumerate(manifest.get("order", []))}
    rows.sort(key=lambda r: (order.get(r["variant"], len(order)), r["variant"], r["seed"] or 0))
    return rows


def write(root: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Write results.csv, results.md and the plots under ``root``; return the rows."""
    rows = collect(root, manifest)
    if not rows:
        return rows
    lengths = sorted({k for r in rows for k in r if k.startswith("val_loss@")}, key=lambda k: int(k[9:]))
    with open(root / "results.csv", "w", newline="") as file:
        writer = csv.DictWriter(
            file, fieldnames=[*COLUMNS, "steps", "tokens", *lengths], extrasaction="ignore"
        )
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    baseline = manifest.get("baseline") or rows[0]["variant"]
    (root / "results.md").write_text(markdown(rows, manifest, baseline))
    plot(root, rows)
    return rows


# ---- the table ----------------------------------------------------------------------------------------------


def variant_stats(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant: its finished runs' values by column, and its failed runs' errors."""
    stats: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = stats.setdefault(row["variant"], {"values": {}, "errors": [], "seeds": []})
        if row["status"] != "finished":
            entry["errors"].append((row["seed"], row.get("error") or row["status"]))
            continue
        entry["seeds"].append(row["seed"])
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "seed":
                entry["values"].setdefault(key, []).append(float(value))
    return stats


def welch_p_value(a: list[float], b: list[float]) -> float | None:
    """The two-sided p-value of Welch's t-test that ``a`` and ``b`` have the same mean (None: fewer than two
    values on a side, or no spread at all)."""
    if len(a) < 2 or len(b) < 2 or (statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0):
        return None
    from scipy import stats

    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _mean_std(values: list[float] | None, digits: int = 4, scale: float = 1.0) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values) / scale
    if len(values) < 2:
        return f"{mean:,.{digits}f}"
    return f"{mean:,.{digits}f} ± {statistics.stdev(values) / scale:,.{digits}f}"


def markdown_table(rows: list[dict[str, Any]], baseline: str | None) -> str:
    """A row per variant sorted by mean final val loss (failed variants last), with mean ± std over seeds."""
    stats = variant_stats(rows)
    baseline = baseline if baseline in stats else next(iter(stats), None)
    lengths = sorted({k for r in rows for k in r if k.startswith("val_loss@")}, key=lambda k: int(k[9:]))
    base_values = stats.get(baseline, {}).get("values", {}).get("val_loss", []) if baseline else []
    header = [
        "variant",
        "seeds",
        "val loss",
        "Δ vs baseline",
        "p (Welch)",
        "best val loss",
        *[f"val loss @{k[9:]}" for k in lengths],
        "tokens/s",
        "params (M)",
        "MFLOPs/token",
        "peak MB",
        "wall s",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def order(name: str) -> tuple[int, float]:
        values = stats[name]["values"].get("val_loss")
        return (0, statistics.fmean(values)) if values else (1, math.inf)

    for name in sorted(stats, key=order):
        entry, values = stats[name], stats[name]["values"]
        losses = values.get("val_loss", [])
        if name == baseline:
            delta, p = "(baseline)", ""
        elif losses and base_values:
            delta = f"{statistics.fmean(losses) - statistics.fmean(base_values):+.4f}"
            try:
                p_value = welch_p_value(losses, base_values)
                p = (
                    "n/a (1 seed)"
                    if p_value is None and min(len(losses), len(base_values)) < 2
                    else ("–" if p_value is None else f"{p_value:.3g}")
                )
            except ImportError:
                p = "n/a (pip install scipy)"
        else:
            delta, p = "–", "–"
        seeds = f"{len(entry['seeds'])}" + (f" ({len(entry['errors'])} failed)" if entry["errors"] else "")
        cells = [
            f"`{name}`",
            seeds,
            _mean_std(losses),
            delta,
            p,
            _mean_std(values.get("best_val_loss")),
            *[_mean_std(values.get(k)) for k in lengths],
            _mean_std(values.get("tokens_per_s"), 0),
            _mean_std(values.get("params"), 3, 1e6),
            _mean_std(values.get("flops_per_token"), 2, 1e6),
            _mean_std(values.get("peak_memory_mb"), 0),
            _mean_std(values.get("wall_s"), 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def budget_statement(rows: list[dict[str, Any]], manifest: dict[str, Any]) -> str:
    """Whether the finished runs had an equal budget, from what they did (steps, tokens), not what was asked."""
    finished = [r for r in rows if r["status"] == "finished"]
    steps = sorted({r["steps"] for r in finished if r.get("steps") is not None})
    tokens = sorted({r["tokens"] for r in finished if r.get("tokens") is not None})
    varied = manifest.get("budget_keys") or []
    if len(steps) == 1 and len(tokens) == 1 and not varied:
        data_seed = manifest.get("data_seed")
        seen = f"data seed {data_seed}" if data_seed is not None else "one data seed"
        return (
            f"**Equal budget**: every run trained {steps[0]:,} steps on the same {tokens[0]:,} tokens in the same "
            f"order ({seen}) and was evaluated on the same validation windows; seed k initialized the model "
            "(`seed_everything=k`) in every variant."
        )
    reasons = [f"{k} varies between variants" for k in varied]
    if len(steps) > 1:
        reasons.append(f"steps differ ({', '.join(map(str, steps))})")
    if len(tokens) > 1:
        reasons.append(f"tokens differ ({', '.join(f'{t:,}' for t in tokens)})")
    return f"**Not an equal budget**: {'; '.join(reasons) or 'no finished run'}."


def markdown(rows: list[dict[str, Any]], manifest: dict[str, Any], baseline: str) -> str:
    seeds = sorted({r["seed"] for r in rows if r["seed"] is not None})
    given = manifest.get("given") or [Path(c).stem for c in manifest.get("configs", [])]
    configs = " ".join(f"--config {c}" for c in given)
    overrides = " ".join(manifest.get("overrides", []))
    lines = [
        f"# Comparison: {manifest.get('name') or 'runs'}",
        "",
        f"Base recipe: `{configs or '?'}`" + (f", fit overrides: `{overrides}`" if overrides else "") + ".",
        f"Seeds: {', '.join(map(str, seeds))}. Baseline: `{baseline}`.",
        "",
        budget_statement(rows, manifest),
        "",
        markdown_table(rows, baseline),
        "",
        "Val loss: the last validation's loss, mean ± standard deviation over seeds; Δ: the difference of means to "
        "the baseline; p: Welch's two-sided t-test of the final val losses against the baseline's (it needs two "
        "seeds on each side). Sorted by mean val loss. Tokens/s: training steps only; peak MB: CUDA's peak "
        "allocation, or on CPU the process's peak resident memory while training.",
    ]
    failed = [r for r in rows if r["status"] != "finished"]
    if failed:
        lines += ["", "Failed runs:", ""]
        lines += [f"- `{r['variant']}` seed {r['seed']}: {r.get('error') or r['status']}" for r in failed]
    return "\n".join(lines) + "\n"


# ---- plots ----------------------------------------------------------------------------------------------------


def plot(root: Path, rows: list[dict[str, Any]]) -> None:
    """curves.png (validation and training loss against tokens, a band over seeds) and throughput.png."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("curves.png, throughput.png: not drawn, matplotlib is not installed (pip install matplotlib)")
        return
    finished = [r for r in rows if r["status"] == "finished"]
    if not finished:
        return
    names = list(dict.fromkeys(r["variant"] for r in finished))
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=False)
    for i, name in enumerate(names):
        color = f"C{i % 10}"
        runs = [r["curve"] for r in finished if r["variant"] == name]
        for ax, key in zip(axes, ("val_loss", "train_loss")):
            x, mean, low, high = _band(runs, key)
            if not x:
                continue
            ax.plot(
                x, mean, color=color, label=name, marker="o" if key == "val_loss" and len(x) < 20 else None
            )
            if len(runs) > 1:
                ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)
    for ax, title in zip(axes, ("validation loss", "training loss")):
        ax.set_title(f"{title} (line: mean over seeds, band: min–max)")
        ax.set_xlabel("tokens")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(root / "curves.png", dpi=110)
    plt.close(figure)

    stats = variant_stats(finished)
    rates = [stats[n]["values"].get("tokens_per_s", []) for n in names]
    figure, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5))
    means = [statistics.fmean(r) if r else 0 for r in rates]
    errors = [statistics.stdev(r) if len(r) > 1 else 0 for r in rates]
    ax.barh(range(len(names)), means, xerr=errors, color=[f"C{i % 10}" for i in range(len(names))])
    ax.set_yticks(range(len(names)), names, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("training tokens/s (mean ± std over seeds)")
    ax.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(root / "throughput.png", dpi=110)
    plt.close(figure)


def _band(
    curves: list[list[dict[str, Any]]], key: str
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Mean, min and max of ``key`` over the runs at each token count that every run logged."""
    series = [{p["tokens"]: p[key] for p in curve if key in p} for curve in curves]
    common = sorted(set.intersection(*(set(s) for s in series))) if series else []
    if not common:
        return [], [], [], []
    values = [[s[t] for s in series] for t in common]
    return common, [statistics.fmean(v) for v in values], [min(v) for v in values], [max(v) for v in values]


# ---- W&B ------------------------------------------------------------------------------------------------------


def log_wandb_table(root: Path, rows: list[dict[str, Any]], *, project: str | None, group: str) -> None:
    """The per-run table as a W&B table, in a run of its own in the comparison's group."""
    import wandb

    run = wandb.init(project=project, group=group, name=f"{group} results", job_type="compare", dir=str(root))
    columns = [c for c in COLUMNS if c != "error"] + ["error"]
    table = wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])
    run.log({"results": table})
    run.finish()


# ---- emitted jobs ---------------------------------------------------------------------------------------------


def sweep_yaml(plan: Plan, runs: list[tuple[Variant, int]]) -> str:
    """A W&B grid sweep with one point per run: each agent's run is ``swapformer fit`` with the base recipe, the
    command's overrides and the run's own recipe file (its variant's overrides, its seed, its run folder), as
    ``swapformer compare`` itself would run it."""
    import yaml

    base = [a for c in plan.configs for a in ("--config", c)]
    command = ["${env}", "swapformer", "fit", *base, *plan.overrides, "${args}"]
    sweep = {
        "name": plan.name,
        "method": "grid",
        "metric": {"name": "val/loss", "goal": "minimize"},
        "parameters": {"config": {"values": [str(plan.sweep_file(v, s)) for v, s in runs]}},
        "command": command,
    }
    head = (
        f"# swapformer compare {plan.name}: a W&B grid of its {len(runs)} runs (wandb sweep THIS_FILE, then wandb\n"
        "# agent on any number of machines sharing this folder); each point is one variant at one seed, its\n"
        f"# settings in {plan.out / 'sweep'}. Then: swapformer compare --collect {plan.out}\n"
    )
    return head + yaml.safe_dump(sweep, sort_keys=False, allow_unicode=True)


def sbatch_script(plan: Plan, runs: list[tuple[Variant, int]]) -> str:
    """An sbatch array script, one task per run, each the ``swapformer fit`` compare itself would run (it resumes
    from the run's last.ckpt when requeued or resubmitted)."""
    out = plan.out.resolve()
    lines = [
        "#!/bin/bash",
        f"# swapformer compare {plan.name}: {len(runs)} runs, one per array task. Submit: sbatch {out}/compare.sbatch",
        f"# Then: swapformer compare --collect {out}",
        f"#SBATCH --job-name=compare-{plan.name}",
        f"#SBATCH --array=0-{len(runs) - 1}",
        f"#SBATCH --output={out}/slurm-%A_%a.out",
        "#SBATCH --requeue",
        "set -euo pipefail",
        'case "$SLURM_ARRAY_TASK_ID" in',
    ]
    for i, (variant, seed) in enumerate(runs):
        args = plan.fit_args(variant, seed)
        lines.append(
            f"  {i}) exec swapformer {shlex.join([*args, '--ckpt_path=last'])} ;;  # {variant.name} seed={seed}"
        )
    lines += ['  *) echo "no run $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;', "esac", ""]
    return "\n".join(lines)
