"""KV-cache bytes of a Gemma 3 style model (5 sliding-window layers : 1 full) decoding to an 8k context, against
the same model with every layer full (all-global), measured in one run.

A sliding layer's cache is a ring of ``window`` slots (:class:`swapformer.nn.AttentionCache`); a full layer's
holds every token. Both models: 6 layers, d_model 64, 4 heads, 2 key/value heads, d_ff 256, RoPE, RMSNorm,
SwiGLU, vocabulary 256, random weights; the sliding layers' window is Gemma 3's 1024. Each generates greedily from
a 16-token prompt to ``--context`` tokens (no eos), through the search ``generate`` runs, so the cache it filled
can be weighed afterwards: the bytes of every layer's key and value buffers (``KVCache.nbytes``).
Target: the 5:1 model's cache <= 30% of the all-global model's bytes at 8k context. Tokens/s of both are printed
beside it (median of ``--rounds``).

    python benchmarks/kv_cache.py [--context 8192 --window 1024 --rounds 1 --threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from swapformer import build_causal_lm
from swapformer.generation.search import Settings, sample_or_greedy

TARGET = 0.30
PROMPT = 16


def model(window: int | None, context: int) -> torch.nn.Module:
    """Five ``sliding_window`` layers then a full one; ``window=None``: six full layers."""
    local = {} if window is None else {"attention": {"name": "sliding_window", "window": window}}
    config = dict(vocab_size=256, d_model=64, num_heads=4, num_kv_heads=2, num_layers=6, d_ff=256,
                  max_seq_len=context, positional="rope", norm="rmsnorm", placement="pre", ffn="swiglu",
                  dropout=0.0, layers={"pattern": ["local"] * 5 + ["global"],
                                       "types": {"local": local, "global": {}}})  # fmt: skip
    torch.manual_seed(0)
    return build_causal_lm(config).eval()


def decode(net: torch.nn.Module, prompt: torch.Tensor, new: int) -> tuple[torch.Tensor, int, float]:
    """``(ids, KV-cache bytes, seconds)`` of greedy decoding: what ``net.generate(prompt, max_new_tokens=new,
    eos_token_id=[])`` runs, with the step (and so its cache) kept to be weighed."""
    settings = Settings(max_new_tokens=new)
    start = time.perf_counter()
    with torch.inference_mode():
        step, ids, mask = net.decoding(prompt, None, settings, use_cache=True, decoder_start_token_id=None)
        out = sample_or_greedy(step, ids, mask, settings)
    return out, step.cache.nbytes, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--context", type=int, default=8192, help="prompt + new tokens")
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a model this small: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    new = args.context - PROMPT
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"# prompt {PROMPT}, new tokens {new} (context {args.context}), greedy, median of {args.rounds}")
    prompt = torch.randint(3, 256, (1, PROMPT), generator=torch.Generator().manual_seed(1))
    rows = {"all-global": None, f"5:1 sliding (window {args.window})": args.window}
    results = {}
    for name, window in rows.items():
        net = model(window, args.context)
        runs = [decode(net, prompt, new) for _ in range(args.rounds)]
        out, nbytes, _ = runs[0]
        if out.size(1) != args.context:
            raise SystemExit(f"{name} stopped at {out.size(1)} tokens instead of {args.context}")
        results[name] = (nbytes, statistics.median(seconds for *_, seconds in runs))
    base = results["all-global"][0]
    print(f"{'model':28s} {'KV-cache MiB':>12s} {'vs all-global':>14s} {'tokens/s':>9s}")
    for name, (nbytes, seconds) in results.items():
        print(f"{name:28s} {nbytes / 2**20:12.2f} {nbytes / base:13.1%} {new / seconds:9.0f}")
    ratio = results[f"5:1 sliding (window {args.window})"][0] / base
    verdict = "met" if ratio <= TARGET else "not met"
    print(
        f"# target: 5:1 KV cache <= {TARGET:.0%} of all-global's at context {args.context}: {verdict} ({ratio:.1%})"
    )


if __name__ == "__main__":
    main()
