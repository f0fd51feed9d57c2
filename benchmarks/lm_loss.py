"""Peak memory and time of a training step at a 128k vocabulary: the chunked LM loss against the full logits.

A small causal-LM body (2 layers, d_model 512, 8 heads, tied embeddings) under Llama 3's vocabulary of 128,256,
4 sequences of 512 tokens: the head and the loss dominate the step, as they do in small models of large
vocabularies. One training step is :class:`~swapformer.tasks.CausalLMModule`'s own ``training_step`` path
(``_step``), backward and a fused AdamW step, with ``loss_chunk: 0`` (the whole ``(2048, 128256)`` logits, the
path before chunking) and with the default chunks (``loss_chunk: null``).

Each variant runs in a fresh process, so one variant's freed memory cannot serve the other. There: a warm-up step
(AdamW allocates its state), then the peak resident memory (``VmHWM``) is reset through ``/proc/self/clear_refs``
and ``--steps`` steps are timed; the step's memory is the peak minus the resident memory before it (weights,
AdamW state, batch). Variants alternate over ``--rounds`` rounds, so a change in machine load hits both alike;
``--clock cpu`` times the process's CPU time, which other jobs on a shared machine disturb less than wall time.
Targets (issue 31): chunked peak <= 1/3 of the full path's, step time within 5%.

    python benchmarks/lm_loss.py [--rounds 3] [--steps 3] [--vocab 128256] [--threads 2] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {"full": 0, "chunked": None}  # loss_chunk


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(variant: str, *, steps: int, vocab: int, threads: int, clock: str) -> dict[str, float]:
    """One variant in this process: the step's peak memory over what it starts from, and its median time."""
    import gc

    import torch

    from swapformer.tasks import CausalLMModule

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    module = CausalLMModule(
        vocab_size=vocab,
        d_model=512,
        num_heads=8,
        num_layers=2,
        d_ff=1024,
        max_seq_len=512,
        dropout=0.0,
        positional="rope",
        norm="rmsnorm",
        ffn="swiglu",
        attention="sdpa",
        loss_chunk=VARIANTS[variant],
    )
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, fused=True)
    ids = torch.randint(3, vocab, (4, 513))
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:].clone()}

    timer = time.process_time if clock == "cpu" else time.perf_counter

    def step() -> float:
        start = timer()
        loss = module._step("train", batch, 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return timer() - start

    step()  # AdamW's state
    gc.collect()
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    times = [step() for _ in range(steps)]
    peak = _status_kib("VmHWM")
    return {"step_mib": (peak - before) / 1024, "peak_mib": peak / 1024, "seconds": statistics.median(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=128_256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.variant is not None:
        print(
            json.dumps(
                measure(
                    args.variant, steps=args.steps, vocab=args.vocab, threads=args.threads, clock=args.clock
                )
            )
        )
        return
    results: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    for round_index in range(args.rounds):
        for name in VARIANTS:
            command = [sys.executable, __file__, "--variant", name, *sys.argv[1:]]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[name].append(json.loads(out.strip().splitlines()[-1]))
            print(f"round {round_index + 1} {name}: {results[name][-1]}", flush=True)
    median = {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for name, runs in results.items()
    }
    full, chunked = median["full"], median["chunked"]
    print(
        f"\nvocab {args.vocab}, 4 x 512 tokens, {args.threads} threads, {args.clock} clock, "
        f"median of {args.rounds} rounds"
    )
    print("| loss | step peak MiB (over weights + AdamW) | process peak MiB | step s |")
    print("|---|---:|---:|---:|")
    for name, row in median.items():
        print(f"| {name} | {row['step_mib']:.0f} | {row['peak_mib']:.0f} | {row['seconds']:.2f} |")
    print(
        f"chunked / full: step peak {chunked['step_mib'] / full['step_mib']:.3f} (target <= 0.333), "
        f"process peak {chunked['peak_mib'] / full['peak_mib']:.3f}, "
        f"step time {chunked['seconds'] / full['seconds']:.3f} (target <= 1.05)"
    )


if __name__ == "__main__":
    main()
