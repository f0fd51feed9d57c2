"""The ``flex`` kernel (FlexAttention, a block mask built from the documents) against ``sdpa``'s spans on packed
rows (issue 29: "FlexAttention's block masks where available"), one attention call at 4 x 4 heads x 1024 x 32.

The rows: best-fit packed documents of 20 to 400 tokens (the corpus of ``benchmarks/packing.py``), batch 4, a
causal document mask. Contenders, each given what a model's layer gets (the ``DocumentMask`` the model builds
once per forward, or the dense ``(N, 1, L, L)`` mask):

* ``sdpa spans``: ``sdpa`` attends each document alone, one fused call per group of documents (the default path);
* ``flex eager``: ``flex`` with ``compiled: false`` (torch's reference path: it computes every score);
* ``flex compiled``: ``flex`` with ``compiled: true`` (the fused kernel; the first calls compile, untimed);
* ``dense mask``: ``sdpa`` on the dense block-diagonal mask (every score of the row computed);
* ``causal``: ``sdpa`` causal over the whole row, no document mask (the cheapest peer, for scale).

``flex`` builds its block mask in every timed call (the memo on the spans is emptied), as the first layer of a
forward pass does; ``flex, mask kept`` is the compiled call with the block mask already built (every later layer). On CPU the calls are forward only, without gradients (torch
2.13 has no FlexAttention backward on CPU); with ``--device cuda`` each call is forward and backward
(``--backward``, the default there), which is the figure that says whether ``sdpa`` should route packed rows to
``flex`` on a GPU. Timed in interleaved rounds (:func:`rope.time_interleaved`), wall time on CUDA (synchronized),
the process's CPU time on CPU; medians; the load average before and after.

    python benchmarks/flex_attention.py [--rounds 5] [--per-round 3] [--device cpu|cuda] [--dtype float32|bfloat16]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import packing  # the corpus and the packed rows, beside this script
import rope  # the interleaved timer
import torch

from swapformer.components.attention import FlexAttention, MathAttention, SDPAttention
from swapformer.components.attention.documents import DocumentMask
from swapformer.nn.masks import document_attention_inputs

HEADS, HEAD_DIM = 4, 32


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def packed_rows(documents: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first batch of best-fit packed rows: ``(input_ids, document_ids)``, each ``(4, 1024)``."""
    batch = packing.packed_batches(packing.corpus(documents))[0]
    return batch["input_ids"], batch["document_ids"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=3)
    parser.add_argument("--documents", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--backward", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--no-eager", action="store_true", help="leave out flex eager (slow on a GPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    backward = device.type == "cuda" if args.backward is None else args.backward
    if backward and device.type == "cpu":
        parser.error("--backward on CPU: torch 2.13 has no FlexAttention backward there; leave it out")

    ids, document_ids = packed_rows(args.documents)
    ids, document_ids = ids.to(device), document_ids.to(device)
    spans, _, _ = document_attention_inputs(
        ids, None, document_ids, "attention_mask", causal=True, spans=True
    )
    dense, _, _ = document_attention_inputs(ids, None, document_ids, "attention_mask", causal=True)
    assert isinstance(spans, DocumentMask)
    batch, length = ids.shape
    g = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (
        torch.randn(batch, HEADS, length, HEAD_DIM, generator=g).to(device, dtype).requires_grad_(backward)
        for _ in range(3)
    )
    grad = torch.randn(batch, HEADS, length, HEAD_DIM, generator=g).to(device, dtype)
    sdpa, eager, compiled = SDPAttention(), FlexAttention(compiled=False), FlexAttention(compiled=True)

    def call(kernel: torch.nn.Module, rebuild: bool = True, **mask: object) -> Callable[[], None]:
        def step() -> None:
            if rebuild:  # flex builds its block mask, as a forward pass's first layer does
                spans.memo.clear()
            with torch.set_grad_enabled(backward):
                out = kernel(q, k, v, **mask)[0]
                if backward:
                    torch.autograd.grad(out, (q, k, v), grad)
            if device.type == "cuda":
                torch.cuda.synchronize()

        return step

    steps = {"sdpa spans": call(sdpa, attn_mask=spans)}
    if not args.no_eager:
        steps["flex eager"] = call(eager, attn_mask=spans)
    steps |= {
        "flex compiled": call(compiled, attn_mask=spans),
        "flex, mask kept": call(compiled, rebuild=False, attn_mask=spans),  # the later layers of a forward
        "dense mask": call(sdpa, attn_mask=dense),
        "causal": call(sdpa, is_causal=True),
    }
    documents = int((document_ids[:, 1:] != document_ids[:, :-1]).sum()) + batch
    what = "forward and backward" if backward else "forward, no gradient"
    print(
        f"{batch} x {HEADS} heads x {length} x {HEAD_DIM}, {documents} documents, {what}, {device}, {args.dtype}"
    )
    print(load())

    with torch.no_grad():  # exactness first: flex (both) against the math kernel on the dense mask
        reference = MathAttention()(q.float(), k.float(), v.float(), attn_mask=dense)[0]
        for name, kernel in (("flex compiled", compiled), ("flex eager", eager), ("sdpa spans", sdpa)):
            spans.memo.clear()
            start = time.perf_counter()
            out = kernel(q, k, v, attn_mask=spans)[0]
            first = time.perf_counter() - start
            print(
                f"{name}: max |difference| to math {(out.float() - reference).abs().max().item():.2g}", end=""
            )
            print(f" (first call {first:.1f} s)" if name == "flex compiled" else "")
        spans.memo.clear()
        start = time.perf_counter()
        compiled(q, k, v, attn_mask=spans)  # builds the block mask, then the compiled call
        with_build = time.perf_counter() - start
        start = time.perf_counter()
        compiled(q, k, v, attn_mask=spans)  # the memo: no build
        print(f"flex compiled: a call with the block mask's build {with_build * 1e3:.1f} ms, without "
              f"{(time.perf_counter() - start) * 1e3:.1f} ms")  # fmt: skip

    clock = time.perf_counter if device.type == "cuda" else time.process_time
    times = rope.time_interleaved(steps, rounds=args.rounds, per_round=args.per_round, warmup=2, clock=clock)
    base = times["sdpa spans"]
    for name, seconds in times.items():
        print(f"{name:16s} {seconds * 1e3:9.1f} ms   {seconds / base:6.2f}x sdpa spans")
    print(load())


if __name__ == "__main__":
    main()
