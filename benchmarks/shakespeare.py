"""nanoGPT's CPU "baby GPT" on tiny shakespeare with the shakespeare-char recipe: val loss after 2000 steps
(nanoGPT reports ~1.88 for this configuration) and training tokens/s.

    python benchmarks/shakespeare.py [path/to/input.txt] [--steps 2000] [recipe overrides ...]

Anything else on the command line goes to ``swapformer fit`` after the recipe, e.g.
``--model.init_args.positional=learned`` for nanoGPT's own positional choice.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

NANOGPT_VAL_LOSS = 1.88


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default="../shared/data/tinyshakespeare/input.txt")
    parser.add_argument("--steps", type=int, default=2000)
    args, overrides = parser.parse_known_args()

    from swapformer.cli import run
    from swapformer.training import TokenThroughput

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "causal_lm" / "shakespeare-char.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        cli = run(
            [
                "fit",
                "--config",
                str(recipe),
                f"--data.init_args.path={Path(args.path).resolve()}",
                f"--trainer.max_steps={args.steps}",
                f"--model.init_args.total_steps={args.steps}",
                f"--trainer.val_check_interval={args.steps}",
                f"--trainer.default_root_dir={tmp}",
                f"--trainer.logger.init_args.save_dir={tmp}",
                "--trainer.enable_progress_bar=false",
                "--trainer.enable_checkpointing=false",
                "--trainer.callbacks=[{class_path: swapformer.training.TokenThroughput}, "
                "{class_path: swapformer.training.SampleCallback, init_args: {max_new_tokens: 300}}]",
                *overrides,
            ]
        )
        wall = time.perf_counter() - start
    val_loss = float(cli.trainer.callback_metrics["val/loss"])
    monitor = next(c for c in cli.trainer.callbacks if isinstance(c, TokenThroughput))
    print(
        f"\nshakespeare-char, {args.steps} steps of 12 x 64: val loss {val_loss:.4f} "
        f"(nanoGPT: ~{NANOGPT_VAL_LOSS}; {'beats' if val_loss <= NANOGPT_VAL_LOSS else 'misses'} it)"
    )
    print(f"training throughput {monitor.tokens_per_second:,.0f} tokens/s; {wall:.0f} s wall in all")


if __name__ == "__main__":
    main()
