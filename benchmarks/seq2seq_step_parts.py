"""Where an encoder-decoder's decoding step goes, beside transformers' whole step (issue 31's profile).

For each shape of ``benchmarks/seq2seq_generate.py`` (same models, source, 32 new tokens with the eos blocked) and
each ``batch x beams``, the process's CPU time (run it with ``--threads 1``: the work done, which other jobs on a
shared machine disturb less than the wall time), in ms per new token:

- ``HF step``, ``ours step``: the whole ``generate`` of each, divided by the new tokens (median of 3 calls);
- ``model step``: swapformer's decoding plan alone (``Seq2SeqStep.plan``), one token at position 16, in a loop;
- ``reorder``: the cache reorder of a beam step alone (a random permutation of the rows), in a loop;
- ``encoder``: ``model.encode`` of the sources, divided by the new tokens;
- ``rest``: ours step minus those three (the search, its processors, and what a loop's warm caches hide);
- ``arithmetic``: the step's GEMMs (every Linear of the decoder and the head, with its weights, at the step's
  rows) and its attention calls (self-attention over 17 keys, cross-attention over the source, as the plan makes
  them), each in a loop: the floor no decoding loop goes under on this CPU, which transformers computes too.

    python benchmarks/seq2seq_step_parts.py --threads 1 [--shapes marian bart t5 --rows 8x4 8x1 1x4 1x1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from swapformer import from_hf
from swapformer.generation.resolve import resolve

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.seq2seq_generate import SIZES, hugging_face

NEW = 32
clock = time.process_time


def per_call(function, calls: int) -> float:
    """ms per call: the median of 3 loops of ``calls`` calls, after two warm-up calls."""
    function()
    function()
    loops = []
    for _ in range(3):
        start = clock()
        for _ in range(calls):
            function()
        loops.append((clock() - start) / calls)
    return sorted(loops)[1] * 1000


def parts(theirs, ours, shape: str, batch: int, beams: int) -> dict[str, float]:
    torch.manual_seed(1)
    source = torch.randint(3, SIZES["vocab"], (batch, 24))
    mask = torch.ones_like(source)
    settings = dict(
        max_new_tokens=NEW, min_new_tokens=NEW, num_beams=beams, do_sample=False, length_penalty=1.0
    )

    def theirs_generate():
        with torch.inference_mode():
            theirs.generate(source, attention_mask=mask, **settings)

    out = {
        "HF step": per_call(theirs_generate, 3) / NEW,
        "ours step": per_call(lambda: ours.generate(source, mask, **settings), 3) / NEW,
    }
    with torch.inference_mode():
        resolved, start_id = resolve(
            ours, source, dict(max_new_tokens=NEW, min_new_tokens=NEW, num_beams=beams)
        )
        step, first, _ = ours.decoding(
            source, None, resolved, use_cache=True, decoder_start_token_id=start_id
        )
        rows, half = first.size(0), NEW // 2
        ids = torch.randint(3, SIZES["vocab"], (rows, 1))
        for position in range(half):  # the cache half full: a step in the middle of the sequence
            step._plan(ids, position)
        caches = [layer.self_attention for layer in step.cache.layers]

        def model_step():
            for cache in caches:
                cache.length = half
            step._plan(ids, half)

        out["model step"] = per_call(model_step, 200)
        index = torch.randperm(rows)
        for cache in caches:
            cache.length = half + 1
        out["reorder"] = per_call(lambda: step.reorder(index), 200) if beams > 1 else 0.0
        out["encoder"] = per_call(lambda: ours.encode(source), 20) / NEW
        out["rest"] = out["ours step"] - out["model step"] - out["reorder"] - out["encoder"]
        out["arithmetic"] = arithmetic(ours, step, shape, rows, half)
    return out


def arithmetic(ours, step, shape: str, rows: int, half: int) -> float:
    """ms of the step's GEMMs and attention calls alone, at its shapes, with its weights."""
    linears = []
    for layer in ours.decoder.layers:
        self_attention, cross = layer.self_attention.sublayer, layer.cross_attention.sublayer
        stacked = [self_attention.q_proj, self_attention.k_proj, self_attention.v_proj]
        bias = None if stacked[0].bias is None else torch.cat([p.bias for p in stacked])
        linears.append((torch.cat([p.weight for p in stacked]), bias))
        for linear in (self_attention.out_proj, cross.q_proj, cross.out_proj):
            linears.append((linear.weight, linear.bias))
        for module in layer.feed_forward.sublayer.modules():
            if isinstance(module, torch.nn.Linear):
                linears.append((module.weight, module.bias))
    linears.append((ours.lm_head.weight, ours.lm_head.bias))
    inputs = {width: torch.randn(rows, 1, width) for width in {w.size(1) for w, _ in linears}}
    heads, dim = SIZES["heads"], SIZES["d_model"] // SIZES["heads"]
    self_cache, cross_cache = step.cache.layers[0].self_attention, step.cache.layers[0].cross_attention
    keys, values = self_cache.keys[:, :, : half + 1], self_cache.values[:, :, : half + 1]
    query = torch.randn(rows, heads, 1, dim)
    sources = cross_cache.keys.size(0)
    folded = torch.randn(sources, heads, rows // sources, dim)  # a source's beams as its queries
    bias = torch.randn(1, heads, 1, half + 1) if shape == "t5" else None
    scale = 1.0 if shape == "t5" else None
    layers = len(ours.decoder.layers)

    def gemms():
        for weight, linear_bias in linears:
            F.linear(inputs[weight.size(1)], weight, linear_bias)

    def attention():
        for _ in range(layers):
            F.scaled_dot_product_attention(query, keys, values, attn_mask=bias, scale=scale)
            F.scaled_dot_product_attention(folded, cross_cache.keys, cross_cache.values, scale=scale)

    with torch.inference_mode():
        return per_call(gemms, 100) + per_call(attention, 100)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--shapes", nargs="+", default=["marian", "bart", "t5"], choices=["marian", "bart", "t5"]
    )
    parser.add_argument("--rows", nargs="+", default=["8x4", "8x1", "1x4", "1x1"], help="batch x beams")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    load = lambda: " ".join(f"{x:.2f}" for x in os.getloadavg())  # noqa: E731
    print(f"# threads {torch.get_num_threads()}, CPU time, ms per new token; load average {load()}")
    names = ["HF step", "ours step", "model step", "reorder", "encoder", "rest", "arithmetic"]
    print("| shape | search | batch | " + " | ".join(names) + " | HF / arithmetic |")
    print("|---|---|---:|" + "---:|" * (len(names) + 1))
    for shape in args.shapes:
        theirs = hugging_face(shape)
        ours = from_hf(theirs)
        for spec in args.rows:
            batch, beams = (int(part) for part in spec.split("x"))
            out = parts(theirs, ours, shape, batch, beams)
            search = "greedy" if beams == 1 else f"beam-{beams}"
            cells = " | ".join(f"{out[name]:.3f}" for name in names)
            print(
                f"| {shape} | {search} | {batch} | {cells} | {out['HF step'] / out['arithmetic']:.2f}x |",
                flush=True,
            )
    print(f"# load average at the end {load()}")


if __name__ == "__main__":
    main()
