"""Compiled against eager: a recipe's training step with ``compile: true`` and without, and the compile time.

The recipe's model section builds two :class:`~swapformer.tasks.CausalLMModule` from the same seed; one gets its
blocks compiled as ``compile: true`` compiles them (:func:`swapformer.training.distributed.compile_blocks`: each
block, the embedding, LM head and loss eager). One training step is the module's own ``_step`` (the loss of a
``training_step``), backward and a fused AdamW step on a fixed random batch of the recipe's batch size and
sequence length (``--batch`` / ``--seq-len`` to shrink a large recipe on a CPU). The first step of each is timed
alone (the compiled one compiles there), then both in interleaved rounds, so a change in machine load hits them
alike. Printed: step times, compiled / eager, the compile time (first compiled step minus an eager step) and the
steps after which compiling has paid for itself.

    python benchmarks/compile_step.py [--recipe causal_lm/stdlib-tiny] [--rounds 5] [--steps 10] [--threads 2]
        [--clock cpu|wall] [--batch N] [--seq-len L] [--vocab V]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml
from rope import first_call, time_interleaved

from swapformer.tasks import CausalLMModule
from swapformer.training.distributed import compile_blocks

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def build(init_args: dict, vocab: int, *, compile: bool) -> CausalLMModule:
    torch.manual_seed(0)
    module = CausalLMModule(vocab_size=vocab, **init_args)
    if compile:
        compile_blocks(module.model)
    return module


def make_step(module: CausalLMModule, batch: dict[str, torch.Tensor]):
    """One training step of ``module``: its ``_step`` loss, backward, fused AdamW."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, weight_decay=0.1, fused=True)
    module.train()

    def step() -> None:
        module._step("train", batch, 0).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="causal_lm/stdlib-tiny", help="under recipes/, without .yaml")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="steps per model per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--batch", type=int, help="default: the recipe's batch_size")
    parser.add_argument("--seq-len", type=int, help="default: the recipe's seq_len")
    parser.add_argument(
        "--vocab", type=int, default=128, help="the vocabulary (a char recipe's is its data's)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = yaml.safe_load((RECIPES / f"{args.recipe}.yaml").read_text())
    init_args, data = recipe["model"]["init_args"], recipe["data"]["init_args"]
    batch_size, length = args.batch or data["batch_size"], args.seq_len or data["seq_len"]
    ids = torch.randint(args.vocab, (batch_size, length + 1), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:].clone()}
    steps = {
        "eager": make_step(build(init_args, args.vocab, compile=False), batch),
        "compiled": make_step(build(init_args, args.vocab, compile=True), batch),
    }
    print(
        f"{args.recipe}: batch {batch_size} x {length}, vocab {args.vocab}, {torch.get_num_threads()} threads, "
        f"{args.clock} clock, median of {args.rounds} interleaved rounds x {args.steps} steps"
    )
    first = first_call(steps)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    results = time_interleaved(steps, rounds=args.rounds, per_round=args.steps, warmup=2, clock=clock)
    eager, compiled = results["eager"], results["compiled"]
    compile_seconds = first["compiled"] - first["eager"]
    print(f"{'':10} {f'ms/step ({args.clock})':>16} {'first step s (wall)':>20}")
    for name, seconds in results.items():
        print(f"{name:10} {seconds * 1e3:16.1f} {first[name]:20.1f}")
    saved = eager - compiled
    paid = f"after {compile_seconds / saved:,.0f} steps" if saved > 0 else "never (not faster)"
    print(
        f"compiled / eager: {compiled / eager:.3f}; compile time {compile_seconds:.1f} s (wall), paid for {paid}"
    )


if __name__ == "__main__":
    main()
