"""Greedy decoding speed: swapformer with the KV cache against Hugging Face's ``generate`` (greedy, cached) on
the same weights, for two model shapes and two batch sizes, measured in one run.

Shapes (both 4 layers, d_model 128, 4 heads, d_ff 512, vocabulary 65 as shakespeare-char):

- ``gpt2``: learned positions, pre-norm LayerNorm, GELU (tanh) MLP, biases, tied embeddings; HF's
  ``GPT2LMHeadModel`` holding swapformer's weights (the copy the tests prove exact).
- ``llama``: HF's ``LlamaForCausalLM`` from a ``LlamaConfig`` (random weights) with grouped-query attention
  (4 heads, 2 key/value heads), RoPE, RMSNorm, SwiGLU; swapformer's model is ``swapformer.from_hf(hf_model)``.

Two mixture-of-experts shapes, asked for with ``--shapes mixtral qwen3_moe`` (issue 27): the Llama shape's
attention with 8 SwiGLU experts of width 256, top-2 (the same active width per token, 512), HF's
``MixtralForCausalLM`` / ``Qwen3MoeForCausalLM`` (q/k norms, every second layer sparse and the others dense of
width 512) and ours ``swapformer.from_hf(hf_model)``.

A 16-token prompt and 256 new tokens, batch 1 and batch 8, no eos (both make every token). The tokens of the two
are checked equal before timing. Rounds are interleaved (each round times every row once, in a rotating order)
and the medians are compared. ``--compile`` adds swapformer's compiled decoding step (``compile=True``); its
one-off compile time is printed apart from the per-token figures.
Targets: swapformer cached >= 3x Hugging Face's tokens/s at batch 1 for the dense shapes, >= 2x for the MoE ones.

    python benchmarks/generate.py [--new-tokens 256 --rounds 5 --batches 1 8 --threads N --compile]
    python benchmarks/generate.py --shapes mixtral qwen3_moe --batches 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from swapformer import build_causal_lm, from_hf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.generation.hf_reference import hugging_face_gpt2  # the copy the tests prove exact

GPT2 = dict(
    vocab_size=65,
    d_model=128,
    num_heads=4,
    num_layers=4,
    d_ff=512,
    max_seq_len=1024,
    positional="learned",
    placement="pre",
    ffn={"name": "gelu", "approximate": "tanh"},
    dropout=0.0,
)
NO_SPECIAL_IDS = dict(pad_token_id=0, eos_token_id=None, bos_token_id=None)  # no eos: every token is made
TARGETS = {"gpt2": 3.0, "llama": 3.0, "mixtral": 2.0, "qwen3_moe": 2.0}


def gpt2_pair():
    """``(ours, theirs)`` of the GPT-2 shape with equal weights."""
    torch.manual_seed(0)
    ours = build_causal_lm(GPT2).eval()
    return ours, hugging_face_gpt2(ours, GPT2, **NO_SPECIAL_IDS)


def llama_pair():
    """``(ours, theirs)`` of the Llama shape: HF's model with random weights, ours imported from it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    theirs = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=GPT2["vocab_size"],
            hidden_size=GPT2["d_model"],
            intermediate_size=GPT2["d_ff"],
            num_hidden_layers=GPT2["num_layers"],
            num_attention_heads=GPT2["num_heads"],
            num_key_value_heads=2,
            max_position_embeddings=GPT2["max_seq_len"],
            tie_word_embeddings=False,
            **NO_SPECIAL_IDS,
        )
    ).eval()
    return from_hf(theirs), theirs


def moe_pair(family: str):
    """``(ours, theirs)`` of a mixture-of-experts shape: HF's Mixtral or Qwen3-MoE with random weights (the
    experts' at the std of a linear layer's, so the router does not pick the same two everywhere), ours imported
    from it."""
    import transformers

    sizes = dict(
        vocab_size=GPT2["vocab_size"],
        hidden_size=GPT2["d_model"],
        num_hidden_layers=GPT2["num_layers"],
        num_attention_heads=GPT2["num_heads"],
        num_key_value_heads=2,
        max_position_embeddings=GPT2["max_seq_len"],
        num_experts_per_tok=2,
        tie_word_embeddings=False,
        **NO_SPECIAL_IDS,
    )
    if family == "mixtral":
        config = transformers.MixtralConfig(**sizes, intermediate_size=256, num_local_experts=8)
    else:
        config = transformers.Qwen3MoeConfig(
            **sizes, moe_intermediate_size=256, intermediate_size=512, num_experts=8, decoder_sparse_step=2
        )
    torch.manual_seed(0)
    theirs = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for weight in theirs.parameters():
            if weight.dim() == 3:  # stacked experts (E, out, in); HF leaves them as torch.empty made them
                weight.normal_(0.0, weight.size(2) ** -0.5)
    return from_hf(theirs), theirs


PAIRS = {"gpt2": gpt2_pair, "llama": llama_pair, "mixtral": lambda: moe_pair("mixtral")}
PAIRS["qwen3_moe"] = lambda: moe_pair("qwen3_moe")


def interleaved(
    rows: dict[str, Callable[[], object]], rounds: int, clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """Median seconds of each row; every round runs each row once, starting from a different row. ``clock``:
    wall time, or ``time.process_time`` (this process's CPU time, which other jobs on a shared machine disturb
    less than its wall time)."""
    names = list(rows)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            start = clock()
            rows[name]()
            samples[name].append(clock() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--shapes", nargs="+", default=["gpt2", "llama"], choices=list(PAIRS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--uncached", action="store_true", help="also time swapformer without the cache")
    parser.add_argument("--compile", action="store_true", help="also time the compiled decoding step")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    new = args.new_tokens
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, threads {torch.get_num_threads()}, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"# prompt {args.prompt_tokens}, new tokens {new}, greedy, no eos, median of {args.rounds} rounds")
    print(
        f"{'shape':9s} {'batch':>5s} {'row':24s} {'tokens/s':>10s} {'ms/step':>8s} {'vs HF':>7s}  same tokens"
    )
    ratios = []
    for shape in args.shapes:
        ours, theirs = PAIRS[shape]()
        for batch in args.batches:
            torch.manual_seed(1)
            prompt = torch.randint(3, GPT2["vocab_size"], (batch, args.prompt_tokens))
            mask = torch.ones_like(prompt)

            def hugging_face(prompt=prompt, mask=mask, theirs=theirs):
                with torch.inference_mode():
                    return theirs.generate(
                        prompt, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False
                    )

            def cached(prompt=prompt, ours=ours):
                return ours.generate(prompt, max_new_tokens=new, eos_token_id=[])

            rows = {"Hugging Face, cache": hugging_face, "swapformer, cache": cached}
            if args.uncached:
                rows["swapformer, no cache"] = lambda prompt=prompt, ours=ours: ours.generate(
                    prompt, max_new_tokens=new, eos_token_id=[], use_cache=False
                )
            compile_seconds = None
            if args.compile:

                def compiled(prompt=prompt, ours=ours):
                    return ours.generate(prompt, max_new_tokens=new, eos_token_id=[], compile=True)

                start = time.perf_counter()
                compiled()  # the first call compiles
                compile_seconds = time.perf_counter() - start
                rows["swapformer, compiled"] = compiled
            reference = hugging_face()
            same = {name: torch.equal(fn(), reference) for name, fn in rows.items()}
            for fn in rows.values():
                fn()  # warm-up
            times = interleaved(rows, args.rounds)
            for name, seconds in times.items():
                ratio = times["Hugging Face, cache"] / seconds
                ratios.append((shape, name, batch, ratio))
                print(
                    f"{shape:9s} {batch:5d} {name:24s} {batch * new / seconds:10.0f} {1000 * seconds / new:8.3f} "
                    f"{ratio:6.2f}x  {same[name]}"
                )
            if compile_seconds is not None:
                print(
                    f"{shape:9s} {batch:5d} compile time (first call, once per shape and batch): {compile_seconds:.1f} s"
                )
    for row in ("swapformer, cache", "swapformer, compiled"):
        for shape in args.shapes:
            at_batch_one = [r for s, name, batch, r in ratios if (s, name, batch) == (shape, row, 1)]
            if at_batch_one:
                target, ratio = TARGETS[shape], at_batch_one[0]
                verdict = "met" if ratio >= target else "not met"
                print(f"# target: {shape}, {row} >= {target:.0f}x HF at batch 1: {verdict} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
