"""Greedy decoding speed: swapformer with the KV cache, without it, and Hugging Face's
``GPT2LMHeadModel.generate`` (cached) on the same GPT-2 configuration and the same weights, measured in one run.

Config: 4 layers, 4 heads, d_model 128, GELU (tanh) MLP 4x, learned positions, pre-norm, tied embeddings,
vocabulary 65 (shakespeare-char); a 16-token prompt, 256 new tokens, batch 1 (and a batched row for context).
Target: swapformer cached >= 2x Hugging Face's cached tokens/s at batch 1 on CPU. Both produce the same tokens
(checked before timing).

    python benchmarks/generate.py [--new-tokens 256 --rounds 5 --batch 1 --threads N]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

from swapformer import build_causal_lm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.generation.hf_reference import hugging_face_gpt2  # the copy the tests prove exact

CONFIG = dict(
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


def seconds(fn, rounds: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
    except ImportError:
        transformers = None

    torch.manual_seed(0)
    ours = build_causal_lm(CONFIG).eval()
    prompt = torch.randint(3, CONFIG["vocab_size"], (args.batch, args.prompt_tokens))
    new = args.new_tokens

    def cached():
        return ours.generate(prompt, max_new_tokens=new)

    def uncached():
        return ours.generate(prompt, max_new_tokens=new, use_cache=False)

    rows = [("swapformer, KV cache", cached), ("swapformer, no cache", uncached)]
    if transformers is not None:
        # no eos: both must run all new tokens
        theirs = hugging_face_gpt2(ours, CONFIG, pad_token_id=0, eos_token_id=None, bos_token_id=None)
        mask = torch.ones_like(prompt)

        def hugging_face():
            with torch.inference_mode():
                return theirs.generate(
                    prompt, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False
                )

        same = torch.equal(cached(), hugging_face())
        rows.append(("Hugging Face GPT2, cache", hugging_face))
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    print(
        f"# batch {args.batch}, prompt {args.prompt_tokens}, new tokens {new}, median of {args.rounds} rounds"
    )
    if transformers is not None:
        print(f"# same tokens as Hugging Face: {same}")
    times = {name: seconds(fn, args.rounds) for name, fn in rows}
    reference = times.get("Hugging Face GPT2, cache")
    print(f"{'':28s} {'tokens/s':>10s} {'ms/token':>9s} {'vs HF':>7s}")
    for name, t in times.items():
        rate = args.batch * new / t
        ratio = f"{reference / t:6.2f}x" if reference else "   n/a"
        print(f"{name:28s} {rate:10.0f} {1000 * t / new:9.3f} {ratio}")


if __name__ == "__main__":
    main()
