"""The attention layer's wrapper cost: swapformer (sdpa kernel) vs the same projections + raw SDPA, and vs
torch.nn.MultiheadAttention, forward and forward+backward, measured side by side in one run.

Target: swapformer within 1.05x of the raw path (the wrapper must cost nothing measurable).

    python benchmarks/attention.py [--batch 8 --heads 8 --length 256 --head-dim 64 --rounds 7]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from swapformer.components.attention import SDPAttention
from swapformer.nn import MultiHeadAttention


class RawAttention(nn.Module):
    """The floor: four projections and one F.scaled_dot_product_attention call, nothing else."""

    def __init__(self, layer: MultiHeadAttention) -> None:
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (
            layer.q_proj,
            layer.k_proj,
            layer.v_proj,
            layer.out_proj,
        )
        self.heads, self.head_dim = layer.num_heads, layer.head_dim

    def forward(self, x: torch.Tensor, is_causal: bool) -> torch.Tensor:
        n, length, d = x.shape
        q = self.q_proj(x).view(n, length, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(n, length, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(n, length, self.heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
        return self.out_proj(out.transpose(1, 2).reshape(n, length, d))


def timed(fn, x, backward: bool, iters: int) -> float:
    """Median seconds per call over ``iters`` calls."""
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        out = fn(x)
        if backward:
            out.sum().backward()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument(
        "--rounds", type=int, default=7, help="interleaved rounds; each times every contender"
    )
    parser.add_argument("--iters", type=int, default=10, help="calls per contender per round")
    args = parser.parse_args()
    torch.manual_seed(0)
    d_model = args.heads * args.head_dim
    ours = MultiHeadAttention(d_model=d_model, num_heads=args.heads, kernel=SDPAttention())
    raw = RawAttention(ours)  # shares ours' weights: identical arithmetic
    ref = nn.MultiheadAttention(d_model, args.heads, batch_first=True)
    causal_float = torch.nn.Transformer.generate_square_subsequent_mask(args.length)
    x = torch.randn(args.batch, args.length, d_model)

    print(f"# attention layer, N={args.batch} H={args.heads} L={args.length} E={args.head_dim} (D={d_model})")
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(
        f"{'case':<22}{'swapformer ms':>15}{'raw sdpa ms':>13}{'nn.MHA ms':>11}{'swap/raw':>10}{'swap/MHA':>10}"
    )
    for backward in (False, True):
        for causal in (False, True):
            contenders = {
                "swapformer": lambda t, c=causal: ours(t, is_causal=c),
                "raw": lambda t, c=causal: raw(t, c),
                "mha": lambda t, c=causal: ref(
                    t, t, t, need_weights=False, attn_mask=causal_float if c else None, is_causal=c
                )[0],
            }
            results = {name: [] for name in contenders}
            context = torch.enable_grad() if backward else torch.no_grad()
            with context:
                for fn in contenders.values():  # warm-up
                    timed(fn, x.requires_grad_(backward), backward, 3)
                for _ in range(args.rounds):
                    for name, fn in contenders.items():
                        results[name].append(timed(fn, x, backward, args.iters))
            ms = {name: 1000 * statistics.median(values) for name, values in results.items()}
            case = ("fwd+bwd" if backward else "fwd") + (" causal" if causal else " full")
            print(
                f"{case:<22}{ms['swapformer']:>15.2f}{ms['raw']:>13.2f}{ms['mha']:>11.2f}"
                f"{ms['swapformer'] / ms['raw']:>10.3f}{ms['swapformer'] / ms['mha']:>10.3f}"
            )


if __name__ == "__main__":
    main()
