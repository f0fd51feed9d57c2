"""What the MoE expert-load picture (``train/moe_expert_load``, issue 27) costs a fit, on the CPU.

A fit of ``recipes/causal_lm/moe-tiny.yaml``'s model (4 layers, d_model 128, 8 GELU experts of width 256, top-2)
on random tokens at the recipe's batch (32 x 128; ``--batch``, ``--seq-len`` to change), with a CSV logger, two ways:

* **off**: ``expert_load_every: 0`` (no picture; the running counts still add up, one small add per layer and
  step, as they do in every run);
* **on**: a picture every ``--every`` steps (default 10, far more often than the recipe's 250), drawn and written
  as a PNG beside the CSV log.

Rounds are interleaved (off, on, per round) and each fit is timed from the start of its second step to the end of
its last, so set-up and the first step are out; medians of the rounds are reported, with the ratio on / off, the
time of one picture (drawn and written), and what that picture costs per step at the recipe's period.

    python benchmarks/expert_load.py [--rounds 3] [--steps 40] [--every 10] [--threads 2] [--batch 32]
        [--seq-len 128]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
import yaml
from torch.utils.data import DataLoader

from swapformer.tasks import CausalLMModule
from swapformer.training import ExpertLoadLogger

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "causal_lm" / "moe-tiny.yaml"
RECIPE_PERIOD = 250  # 10 x the recipe's log_every_n_steps (25)


class Clock(pl.Callback):
    """The time from the start of the second training step to the end of the fit's last step."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 1 and not hasattr(self, "start"):
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):  # the callbacks before it (the picture) are in
        self.seconds = time.perf_counter() - self.start


def fit(every: int, steps: int, root: Path, batch: int, length: int) -> tuple[float, list[float]]:
    """Seconds per step (steps 2..``steps``) and the seconds each picture took."""
    init = yaml.safe_load(RECIPE.read_text())["model"]["init_args"]
    vocab = 100
    torch.manual_seed(0)
    module = CausalLMModule(vocab_size=vocab, **{**init, "warmup_steps": 1, "expert_load_every": every})
    ids = torch.randint(vocab, (steps, batch, length + 1))
    batches = [{"input_ids": x[:, :-1], "labels": x[:, 1:]} for x in ids]
    drawn: list[float] = []
    draw = ExpertLoadLogger.log_picture

    def timed_draw(self, trainer, pl_module):
        start = time.perf_counter()
        draw(self, trainer, pl_module)
        drawn.append(time.perf_counter() - start)

    ExpertLoadLogger.log_picture = timed_draw
    clock = Clock()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        log_every_n_steps=25,
        logger=pl.loggers.CSVLogger(root, name="logs"),
        callbacks=[clock],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    try:
        trainer.fit(module, DataLoader(batches, batch_size=None))
    finally:
        ExpertLoadLogger.log_picture = draw
    if every and not list(root.glob("logs/version_*/moe_expert_load/*.png")):
        raise SystemExit("the fit with pictures wrote none: nothing was measured")
    return clock.seconds / (steps - 1), drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32, help="sequences per step (the recipe's 32)")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (the recipe's 128)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    off, on, pictures = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            shape = (args.batch, args.seq_len)
            off.append(fit(0, args.steps, Path(tmp) / f"off{r}", *shape)[0])
            seconds, drawn = fit(args.every, args.steps, Path(tmp) / f"on{r}", *shape)
            on.append(seconds)
            pictures += drawn
    step_off, step_on, picture = (statistics.median(v) for v in (off, on, pictures))
    print(
        f"moe-tiny's model, batch {args.batch} x {args.seq_len}, {args.steps} steps, {torch.get_num_threads()} threads, "
        f"medians of {args.rounds} interleaved rounds"
    )
    print(f"off (expert_load_every 0):      {1000 * step_off:8.1f} ms/step")
    print(f"on  (a picture every {args.every:3d} steps): {1000 * step_on:8.1f} ms/step")
    print(f"on / off: {step_on / step_off:.3f}")
    print(f"one picture (drawn, PNG written): {1000 * picture:.0f} ms (median of {len(pictures)})")
    print(
        f"at the recipe's period ({RECIPE_PERIOD} steps): {picture / (RECIPE_PERIOD * step_off):.2%} of the "
        "step time"
    )


if __name__ == "__main__":
    main()
