"""Encoder-decoder decoding speed: swapformer's ``generate`` (the decoding plan, cross-attention keys and values
projected once per source) against Hugging Face's ``generate`` on the same weights, greedy and beam-4, measured
in one run.

Shapes (all 4 encoder and 4 decoder layers, d_model 128, 4 heads, d_ff 512, vocabulary 65), each Hugging Face's
model built from its config (random weights drawn as the interop tests draw them, so tokens vary) and ours
imported from it with ``swapformer.from_hf``:

- ``marian``: ``MarianMTModel``: sinusoidal positions, post-norm, SiLU MLP, embeddings scaled by sqrt(D).
- ``bart``: ``BartForConditionalGeneration``: learned positions, the embedding's LayerNorm, post-norm, GELU MLP.
- ``t5``: ``T5ForConditionalGeneration`` (v1.1): relative position buckets, pre-norm RMSNorm, gated GELU, no
  biases, untied head.

A 24-token source and 64 new tokens, batch 1 and batch 8, greedy and 4 beams; both are given the same settings,
``min_new_tokens`` = the budget so every row makes every token (the eos is blocked in both). The tokens of the two
are checked equal before timing. Rounds are interleaved (each round times every row once, in a rotating order)
and the medians are compared.
Target: swapformer >= 2.5x Hugging Face for every shape, search and batch.

    python benchmarks/seq2seq_generate.py [--new-tokens 64 --rounds 5 --batches 1 8 --beams 1 4 --threads N]
    python benchmarks/seq2seq_generate.py --threads 1 --clock process   # on a machine shared with other jobs
    python benchmarks/seq2seq_generate.py --device cuda      # on a GPU (benchmarks/gpu.sh runs it)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

from swapformer import from_hf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.generate import interleaved  # the same interleaved timer as the decoder-only comparison

SIZES = dict(d_model=128, heads=4, layers=4, d_ff=512, vocab=65)
TARGET = 2.5
SPECIAL_IDS = dict(pad_token_id=0, eos_token_id=1, decoder_start_token_id=2)


def hugging_face(shape: str):
    """Hugging Face's model of ``shape`` with random weights, in eval mode."""
    import transformers

    d, heads, layers, d_ff, vocab = (SIZES[k] for k in ("d_model", "heads", "layers", "d_ff", "vocab"))
    bart_like = dict(
        d_model=d,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=d_ff,
        decoder_ffn_dim=d_ff,
        vocab_size=vocab,
        max_position_embeddings=512,
        forced_eos_token_id=None,
        **SPECIAL_IDS,
    )
    if shape == "marian":
        config = transformers.MarianConfig(activation_function="swish", scale_embedding=True, **bart_like)
    elif shape == "bart":
        config = transformers.BartConfig(forced_bos_token_id=None, **bart_like)
    else:
        config = transformers.T5Config(
            d_model=d,
            d_kv=d // heads,
            d_ff=d_ff,
            num_layers=layers,
            num_heads=heads,
            feed_forward_proj="gated-gelu",
            tie_word_embeddings=False,
            vocab_size=vocab,
            **SPECIAL_IDS,
        )
    torch.manual_seed(0)
    model = transformers.AutoModelForSeq2SeqLM.from_config(config).eval()
    with torch.no_grad():  # as tests/interop/hf_models.py: weights of 1/sqrt(fan_in), biases and norms moved
        for key, weight in model.named_parameters():
            if weight.dim() == 2 and not any(part in key for part in ("embed", "shared", "relative")):
                weight.normal_(0.0, weight.size(1) ** -0.5)
            elif key.endswith("bias") or "norm" in key:
                weight.add_(torch.randn_like(weight) * 0.1)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--source-tokens", type=int, default=24)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 4])
    parser.add_argument(
        "--shapes", nargs="+", default=["marian", "bart", "t5"], choices=["marian", "bart", "t5"]
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--clock",
        choices=["wall", "process"],
        default="wall",
        help="wall time, or this process's CPU time (with --threads 1: the work done, which other jobs on a "
        "shared machine disturb less; not for cuda)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.clock == "process" and device.type != "cpu":
        parser.error("--clock process counts this process's CPU time: use it on the CPU (--device cpu)")
    clock = time.process_time if args.clock == "process" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    new = args.new_tokens
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, threads {torch.get_num_threads()}, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, device {device}, clock {args.clock}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    print(f"# source {args.source_tokens}, new tokens {new} (eos blocked), median of {args.rounds} rounds")
    print(
        f"{'shape':6s} {'search':7s} {'batch':>5s} {'HF ms/step':>10s} {'ours ms/step':>12s} {'vs HF':>7s}  same tokens"
    )
    ratios = []
    for shape in args.shapes:
        theirs = hugging_face(shape)
        ours = from_hf(theirs).to(device)
        theirs = theirs.to(device)
        for beams in args.beams:
            for batch in args.batches:
                torch.manual_seed(1)
                source = torch.randint(3, SIZES["vocab"], (batch, args.source_tokens)).to(device)
                mask = torch.ones_like(source)
                settings = dict(
                    max_new_tokens=new,
                    min_new_tokens=new,
                    num_beams=beams,
                    do_sample=False,
                    length_penalty=1.0,
                )

                def theirs_generate(source=source, mask=mask, settings=settings, theirs=theirs):
                    with torch.inference_mode():
                        return theirs.generate(source, attention_mask=mask, **settings)

                def ours_generate(source=source, mask=mask, settings=settings, ours=ours):
                    return ours.generate(source, mask, **settings)

                same = torch.equal(ours_generate(), theirs_generate())
                rows = {"hf": theirs_generate, "ours": ours_generate}
                times = interleaved(rows, args.rounds, clock)
                ratio = times["hf"] / times["ours"]
                ratios.append(ratio)
                search = "greedy" if beams == 1 else f"beam-{beams}"
                print(
                    f"{shape:6s} {search:7s} {batch:5d} {1000 * times['hf'] / new:10.3f} "
                    f"{1000 * times['ours'] / new:12.3f} {ratio:6.2f}x  {same}",
                    flush=True,
                )
    worst = min(ratios)
    verdict = "met" if worst >= TARGET else "not met"
    print(
        f"# target: swapformer >= {TARGET}x HF for every shape, search and batch: {verdict} (worst {worst:.2f}x); "
        f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
