"""Multi-head latent attention (``mla``): KV-cache bytes per token and layer against grouped-query and multi-head
attention, and the decoding speed of the absorbed step against the expanded one, measured in one run.

Four models of the same size (4 layers, d_model 256, 8 heads of 32, d_ff 512, RoPE, RMSNorm, SwiGLU, vocabulary
256, random weights) each generate greedily from a ``--prompt``-token prompt to ``--context`` tokens (no eos)
through the search ``generate`` runs, so the cache it filled can be weighed afterwards (``KVCache.nbytes``, every
slot preallocated for the context):

- ``mha``: 8 key/value heads; ``gqa``: 2 key/value heads: ``2 x kv_heads x head_dim`` values per token and layer;
- ``mla``: ``kv_lora_rank`` 64 and ``qk_rope_head_dim`` 16 (DeepSeek-V3's ratios to the head width: r = 4 dn / 2,
  dr = dn / 2): ``kv_lora_rank + qk_rope_head_dim`` values, absorbed decoding steps (the member's default);
- ``mla expanded``: the same weights, ``absorb: false``: every step expands every cached latent into keys and
  values.

Targets: the MLA cache holds exactly ``kv_lora_rank + qk_rope_head_dim`` values per token and layer; the absorbed
step is faster than the expanded one at this context. Tokens/s are the median of ``--rounds``.

    python benchmarks/mla.py [--prompt 64 --context 1024 --rounds 3 --threads 2]
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

RANK, ROPE = 64, 16
BASE = dict(vocab_size=256, d_model=256, num_heads=8, num_layers=4, d_ff=512, positional="rope", norm="rmsnorm",
            placement="pre", ffn="swiglu", dropout=0.0, bias=False)  # fmt: skip
MLA = {
    "name": "mla",
    "kv_lora_rank": RANK,
    "qk_rope_head_dim": ROPE,
    "qk_nope_head_dim": 32,
    "v_head_dim": 32,
}
MODELS = {
    "mha": {"num_kv_heads": 8},
    "gqa": {"num_kv_heads": 2},
    "mla": {"attention": MLA},
    "mla expanded": {"attention": {**MLA, "absorb": False}},
}


def model(changes: dict, context: int) -> torch.nn.Module:
    torch.manual_seed(0)  # the two mla models get the same weights
    return build_causal_lm({**BASE, **changes, "max_seq_len": context}).eval()


def decode(net: torch.nn.Module, prompt: torch.Tensor, new: int) -> tuple[torch.Tensor, int, float]:
    """``(ids, KV-cache bytes, seconds)`` of greedy decoding, the step (and so its cache) kept to be weighed."""
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
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--context", type=int, default=1024, help="prompt + new tokens")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    new = args.context - args.prompt
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"# prompt {args.prompt}, new tokens {new} (context {args.context}), greedy, median of {args.rounds}"
    )
    prompt = torch.randint(3, 256, (1, args.prompt), generator=torch.Generator().manual_seed(1))
    nets = {name: model(changes, args.context) for name, changes in MODELS.items()}
    runs: dict[str, list[tuple[torch.Tensor, int, float]]] = {name: [] for name in nets}
    for _ in range(args.rounds):  # interleaved: a slow moment of the machine falls on every model alike
        for name, net in nets.items():
            runs[name].append(decode(net, prompt, new))
    per_token = 4 * BASE["num_layers"] * args.context  # bytes of one fp32 value of every layer and token
    print(f"{'model':14s} {'values/token/layer':>19s} {'KV-cache MiB':>12s} {'vs mha':>7s} {'tokens/s':>9s}")
    base = runs["mha"][0][1]
    for name, results in runs.items():
        out, nbytes, _ = results[0]
        if out.size(1) != args.context:
            raise SystemExit(f"{name} stopped at {out.size(1)} tokens instead of {args.context}")
        speed = new / statistics.median(seconds for *_, seconds in results)
        print(
            f"{name:14s} {nbytes / per_token:19.0f} {nbytes / 2**20:12.2f} {nbytes / base:7.1%} {speed:9.0f}"
        )
    same = torch.equal(runs["mla"][0][0], runs["mla expanded"][0][0])
    expected = RANK + ROPE
    measured = runs["mla"][0][1] / per_token
    absorbed, expanded = (statistics.median(s for *_, s in runs[n]) for n in ("mla", "mla expanded"))
    print(f"# mla values per token and layer: {measured:.0f}, kv_lora_rank + qk_rope_head_dim = {expected}: "
          f"{'met' if measured == expected else 'not met'}; gqa's 2 x 2 x 32 = 128")  # fmt: skip
    print(f"# absorbed step {expanded / absorbed:.2f}x the expanded step's speed at context {args.context} "
          f"({'met' if absorbed < expanded else 'not met'}); same greedy ids: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
