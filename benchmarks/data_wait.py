"""How long the main job's training step waits for data when it reads a prepared folder (issue 29: < 1%).

``swapformer prepare`` writes the corpus with the main job's tokenizer (``char``) into a folder, then the main job
(``recipes/causal_lm/stdlib-tiny.yaml``: batches of 32 x 128) trains ``--steps`` steps on it in this process with
Lightning's ``SimpleProfiler``, which times each ``next()`` on the training DataLoader
(``train_dataloader_next``) and each whole training batch (``run_training_batch``: forward, backward, optimizer).
The first ``--warmup`` steps are left out of both. The text corpus the recipe reads by default is timed the same
way beside it.

    python benchmarks/data_wait.py [--data PATH] [--steps 200] [--warmup 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tinyshakespeare" / "input.txt"
)


def waits(data: str, steps: int, warmup: int, root: Path) -> tuple[float, float]:
    """Median seconds of a DataLoader ``next()`` and of a training batch, over the steps after ``warmup``."""
    from swapformer.cli import run

    cli = run(
        [
            "fit",
            "--config",
            "stdlib-tiny",
            f"--data.init_args.path={data}",
            f"--trainer.max_steps={steps}",
            "--trainer.limit_val_batches=0",
            "--trainer.profiler=simple",
            "--trainer.enable_checkpointing=false",
            f"--trainer.default_root_dir={root}",
        ]
    )
    durations = cli.trainer.profiler.recorded_durations
    fetch = next(v for k, v in durations.items() if k.endswith("train_dataloader_next"))
    batch = next(v for k, v in durations.items() if k.endswith("run_training_batch"))
    return tuple(float(torch.tensor(values[warmup:]).median()) for values in (fetch, batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from swapformer.cli import main as swapformer

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "prepared"
        swapformer(["prepare", args.data, "--tokenizer", "char", "--out", str(folder)])
        for name, data in (("prepared folder", str(folder)), ("text file", args.data)):
            fetch, batch = waits(data, args.steps, args.warmup, Path(scratch) / name.replace(" ", "-"))
            print(
                f"{name:16s} next() {fetch * 1e3:8.3f} ms, training batch {batch * 1e3:8.2f} ms: "
                f"data waiting {100 * fetch / (fetch + batch):.2f}% of the step (target < 1%)"
            )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
