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

On a GPU (benchmarks/gpu.sh, step 9) the same comparison runs at a training shape in bfloat16, where the experts'
GEMMs are one grouped GEMM (``torch.nn.functional.grouped_mm``), and each contender's tokens/s and MFU are printed:

    python benchmarks/moe.py --device cuda --dtype bfloat16 --tokens 65536 --d-model 2048 --d-ff 1024
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from gpt2_mfu import peak_tflops  # the peaks table (H100, H200, A100) is there
from torch import nn
from torch.nn import functional as F

from swapformer.components import take_losses
from swapformer.components.ffn import GatedFeedForward, MixtureOfExperts

EXPERTS, TOP_K = 8, 2
TARGET = 1.3


def step_of(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        module.zero_grad(set_to_none=True)
        loss = module(x).square().mean() + sum(take_losses(module).values())
        loss.backward()

    return step


def timed(step: Callable[[], None], steps: int, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
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
    parser.add_argument("--tokens", type=int, default=4096, help="tokens per step (4 rows)")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="the device's dense bf16 peak (for MFU)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device, dtype, d = torch.device(args.device), getattr(torch, args.dtype), args.d_model
    moe = MixtureOfExperts(d_model=d, d_ff=args.d_ff, experts=EXPERTS, top_k=TOP_K).train()
    dense = GatedFeedForward(d_model=d, d_ff=TOP_K * args.d_ff, activation=nn.SiLU()).train()
    with torch.no_grad():
        moe.router.weight.normal_(std=0.02 * args.skew)
    moe, dense = moe.to(device, dtype), dense.to(device, dtype)
    x = torch.randn(4, args.tokens // 4, d, device=device, dtype=dtype)
    steps = {"dense swiglu": step_of(dense, x), "moe": step_of(moe, x)}
    for step in steps.values():  # warm-up
        timed(step, 2, device)
    rounds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            rounds[name].append(timed(step, args.steps, device))
    moe.load.zero_()
    moe(x)
    load = moe.load
    grouped = device.type == "cuda" and dtype == torch.bfloat16 and hasattr(F, "grouped_mm")
    threads = (
        f"{torch.get_num_threads()} threads" if device.type == "cpu" else torch.cuda.get_device_name(device)
    )
    print(
        f"{args.tokens} tokens, d_model {d}, {EXPERTS} experts of width {args.d_ff}, top-{TOP_K} "
        f"(dense peer: SwiGLU of width {TOP_K * args.d_ff}); {threads}, {args.dtype}, "
        f"{args.rounds} interleaved rounds of {args.steps} steps"
    )
    print(f"experts' GEMMs: {'one grouped GEMM (grouped_mm)' if grouped else 'a loop over experts'}")
    print(f"busiest expert's load / even load: {float(load.max() / load.mean()):.2f}")
    # matrix-product FLOPs of forward + backward (3 x the forward's 2 per multiply-add); the same for both but
    # the router's d x experts
    active = 3 * d * TOP_K * args.d_ff
    flops = {"dense swiglu": 6 * args.tokens * active, "moe": 6 * args.tokens * (active + d * EXPERTS)}
    peak = peak_tflops(args.peak_tflops) if device.type == "cuda" else None
    medians = {name: statistics.median(times) for name, times in rounds.items()}
    for name, median in medians.items():
        spread = f"{min(rounds[name]) * 1e3:.1f}-{max(rounds[name]) * 1e3:.1f}"
        mfu = f", MFU {flops[name] / median / (peak * 1e12):.1%} of {peak:g} TFLOP/s" if peak else ""
        print(
            f"  {name:<14} {median * 1e3:8.1f} ms / forward + backward (rounds {spread}), "
            f"{args.tokens / median:,.0f} tokens/s{mfu}"
        )
    ratio = medians["moe"] / medians["dense swiglu"]
    print(f"moe / dense swiglu: {ratio:.2f} (target <= {TARGET})")


if __name__ == "__main__":
    main()
