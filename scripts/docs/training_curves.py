"""Draw the training curves of the main job (recipes/causal_lm/stdlib-tiny.yaml) from its CSV log.

    python scripts/docs/training_curves.py                        # runs the recipe (~4.5 min idle)
    python scripts/docs/training_curves.py --metrics metrics.csv  # draws a finished run's log
    python scripts/docs/training_curves.py --max-steps 500        # shorter (say so in the caption)

Writes docs/assets/training-curves.png. The run happens in a temporary folder with the recipe's own CSV
logger; only ``--trainer.max_steps`` is ever changed.
"""

from __future__ import annotations

import argparse
import csv
import math
import tempfile
from pathlib import Path

from matplotlib.figure import Figure

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "docs" / "assets"
RECIPE = REPO / "recipes" / "causal_lm" / "stdlib-tiny.yaml"


def train(folder: Path, max_steps: int | None) -> Path:
    """Run the recipe inside ``folder`` (its relative ``runs/`` land there); return its metrics.csv."""
    import os

    from swapformer.cli import run

    here = Path.cwd()
    os.chdir(folder)
    try:
        extra = [] if max_steps is None else [f"--trainer.max_steps={max_steps}"]
        run(["fit", "--config", str(RECIPE), "--trainer.enable_progress_bar=false", *extra])
    finally:
        os.chdir(here)
    return next(folder.glob("runs/stdlib-tiny/logs/version_*/metrics.csv"))


def read(metrics: Path) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(step, value), ...]}`` from a Lightning CSVLogger file."""
    series: dict[str, list[tuple[int, float]]] = {}
    with metrics.open() as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key not in ("step", "epoch") and value:
                    series.setdefault(key, []).append((int(row["step"]), float(value)))
    return series


def draw(series: dict[str, list[tuple[int, float]]], *, title: str) -> Figure:
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    loss, rate = fig.subplots(1, 2, width_ratios=(1.6, 1))
    for key, style in (("train/loss", dict(alpha=0.8)), ("val/loss", dict(marker="o", linewidth=2))):
        if key in series:
            steps, values = zip(*series[key])
            loss.plot(steps, [v / math.log(2) for v in values], label=key, **style)
    loss.set_xlabel("optimizer step")
    loss.set_ylabel("cross-entropy (bits per character)")
    loss.set_title(title, fontsize=10)
    loss.grid(alpha=0.3)
    loss.legend()
    lr = next((k for k in series if k.startswith("lr-")), None)
    if lr is not None:
        steps, values = zip(*series[lr])
        rate.plot(steps, [v * 1e3 for v in values], color="tab:green")
        rate.set_title("learning rate: linear warmup, cosine decay", fontsize=10)
        rate.set_xlabel("optimizer step")
        rate.set_ylabel("learning rate (x 1e-3)")
        rate.grid(alpha=0.3)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=Path, help="a finished run's metrics.csv (default: run the recipe)")
    parser.add_argument("--max-steps", type=int, help="shorten the run (default: the recipe's 1500)")
    parser.add_argument("--out", type=Path, default=ASSETS / "training-curves.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        metrics = args.metrics or train(Path(tmp), args.max_steps)
        series = read(metrics)
    last = max(step for points in series.values() for step, _ in points)
    title = f"stdlib-tiny: character-level GPT on the stdlib source, {last + 1} steps"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw(series, title=title).savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
