"""What the ``moe`` feed-forward member costs against a dense SwiGLU of the same active width, on the CPU.

Issue 27's target: "An MoE FFN of 8 experts, top-2, forward + backward over 4096 tokens at d_model 256 costs at
most 1.3x a dense SwiGLU with the same active width." Each token of the MoE runs 2 SwiGLU experts of width
``d_ff`` (default 512); the peer is one SwiGLU of width 2 ``d_ff``, so both do the same GEMM arithmetic per token
and the ratio is what routing costs: the router, the sort by expert, the gathers back, the weighted sum over the
two slots, the balance and z losses, and eight GEMMs per projection instead of one.

The two are timed in interleaved rounds (a change in machine load hits both alike) and the median of the rounds'
per-step times is reported. The router starts at the builders' std (0.02), so the load is near even, as the
balance loss keeps it in training; ``--skew`` scales the router weights up so a few experts take most tokens.

    python benchmarks/moe.py [--rounds 7] [--steps 10] [--threads 2] [--d-ff 512] [--skew 1.0]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from swapformer.components import take_losses
from swapformer.components.ffn import GatedFeedForward, MixtureOfExperts

TOKENS, D, EXPERTS, TOP_K = 4096, 256, 8, 2
TARGET = 1.3


def step_of(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        module.zero_grad(set_to_none=True)
        loss = module(x).square().mean() + sum(take_losses(module).values())
        loss.backward()

    return step


def timed(step: Callable[[], None], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--d-ff", type=int, default=512, help="each expert's width; the dense peer's is top_k x it"
    )
    parser.add_argument("--skew", type=float, default=1.0, help="factor on the router's initial weights")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    moe = MixtureOfExperts(d_model=D, d_ff=args.d_ff, experts=EXPERTS, top_k=TOP_K).train()
    dense = GatedFeedForward(d_model=D, d_ff=TOP_K * args.d_ff, activation=nn.SiLU()).train()
    with torch.no_grad():
        moe.router.weight.normal_(std=0.02 * args.skew)
    x = torch.randn(4, TOKENS // 4, D)
    steps = {"dense swiglu": step_of(dense, x), "moe": step_of(moe, x)}
    for step in steps.values():  # warm-up
        timed(step, 2)
    rounds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            rounds[name].append(timed(step, args.steps))
    moe.load.zero_()
    moe(x)
    load = moe.load
    print(
        f"{TOKENS} tokens, d_model {D}, {EXPERTS} experts of width {args.d_ff}, top-{TOP_K} "
        f"(dense peer: SwiGLU of width {TOP_K * args.d_ff}); {torch.get_num_threads()} threads, "
        f"{args.rounds} interleaved rounds of {args.steps} steps"
    )
    print(f"busiest expert's load / even load: {float(load.max() / load.mean()):.2f}")
    medians = {name: statistics.median(times) for name, times in rounds.items()}
    for name, median in medians.items():
        spread = f"{min(rounds[name]) * 1e3:.1f}-{max(rounds[name]) * 1e3:.1f}"
        print(f"  {name:<14} {median * 1e3:8.1f} ms / forward + backward (rounds {spread})")
    ratio = medians["moe"] / medians["dense swiglu"]
    print(f"moe / dense swiglu: {ratio:.2f} (target <= {TARGET})")


if __name__ == "__main__":
    main()
