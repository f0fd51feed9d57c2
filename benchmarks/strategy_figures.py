"""Tokens/s, MFU and peak memory of training under one strategy, for the GPT-2 124M shape or a Llama-style 1B shape.

    python benchmarks/strategy_figures.py --shape gpt2-124m --strategy single [--devices 1] [--steps 20]
    python benchmarks/strategy_figures.py --shape llama-1b --strategy tp --devices 2
    python benchmarks/strategy_figures.py --shape gpt2-124m --strategy single --tiny     # the path on CPUs (gloo)

Strategies: ``single`` (one device), ``ddp``, ``fsdp2`` (``FSDP2Strategy``), ``tp`` (``TensorParallelStrategy``,
TP = devices) and ``2d`` (FSDP2 x TP, TP 2). The shapes: ``gpt2-124m`` is the ``causal_lm/gpt2-124m`` recipe's
model (50257-token vocabulary, 8 x 1024 tokens a data-parallel rank); ``llama-1b`` is Llama 3.2 1B's shape
(D 2048, 16 layers, 32 query and 8 key/value heads, SwiGLU of 8192, RMSNorm, RoPE, tied 128256-token
vocabulary; 4 x 2048 tokens a data-parallel rank). Batches are random ids (nothing downloaded, no tokenizer),
precision ``bf16-mixed``, eager unless ``--compile`` (the strategies compared on the same footing; the compiled
GPT-2 figure is ``gpt2_mfu.py``'s), and the timing covers steps ``--warmup``..``--steps``.

One line per run, from rank 0::

    strategy tp, llama-1b, 2 devices (data parallel 1 x tensor parallel 2), 4 x 2048 tokens a step: tokens/s 21,345;
    MFU 38.2% of 989 TFLOP/s bf16 a device; peak memory 31.2 GiB a device

tokens/s counts every data-parallel rank's tokens (a TP group reads one batch); MFU = FLOPs per batch (the module's
``flops_per_batch``, matrix products) x data-parallel ranks / step time / (devices x the device's peak); peak
memory is ``torch.cuda.max_memory_allocated`` on rank 0. On CPUs (``--tiny``: toy sizes of the same shapes, CPU
processes over gloo) MFU and peak memory print ``n/a``.

A failing run prints, on the stream of the figures, one ``strategy_figures: rank N ...`` line per failed rank and
exits non-zero: a rank's exception, and from rank 0 each rank Lightning started that exited non-zero, was killed
by a signal (the out-of-memory killer's SIGKILL leaves no message of its own: rank 0 then fails only on gloo's
"Connection closed by peer"), or still ran after rank 0 stopped (killed then).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from gpt2_mfu import RandomBatches, StepTimer, peak_tflops  # the peaks table (H100, H200, A100) is there
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
LLAMA_1B = {  # Llama 3.2 1B (transformers' LlamaConfig of meta-llama/Llama-3.2-1B)
    **dict(d_model=2048, num_heads=32, num_kv_heads=8, num_layers=16, d_ff=8192, max_seq_len=2048),
    **dict(positional={"name": "rope", "base": 500000.0}, norm="rmsnorm", ffn="swiglu", bias=False),
    **dict(tie_embeddings=True, dropout=0.0, attention="sdpa", placement="pre"),
}
TINY = dict(d_model=64, num_heads=4, num_layers=2, d_ff=256, max_seq_len=64)
STRATEGIES = ("single", "ddp", "fsdp2", "tp", "2d")


def shape(name: str, *, tiny: bool) -> tuple[dict, int, int, int]:
    """``(model options, vocabulary, batch, length)`` of a shape (toy sizes with ``tiny``)."""
    if name == "gpt2-124m":
        config = yaml.safe_load((RECIPES / "causal_lm" / "gpt2-124m.yaml").read_text())
        options = {**config["model"]["init_args"], "dropout": 0.0}
        vocab, batch, length = 50257, config["data"]["init_args"]["batch_size"], 1024
    else:
        options, vocab, batch, length = dict(LLAMA_1B), 128256, 4, 2048
    if tiny:
        kv = {"num_kv_heads": 2} if "num_kv_heads" in options else {}
        options.update(TINY, **kv)
        vocab, batch, length = 512, 4, TINY["max_seq_len"]
    return options, vocab, batch, length


def strategy(name: str, devices: int) -> tuple[object, int, int]:
    """``(Lightning strategy, data-parallel ranks, tensor-parallel ranks)``."""
    from swapformer.training import FSDP2Strategy, TensorParallelStrategy

    if name == "single":
        return "auto", 1, 1
    if name == "ddp":
        return "ddp", devices, 1
    if name == "fsdp2":
        return FSDP2Strategy(), devices, 1
    if name == "tp":
        return TensorParallelStrategy(data_parallel_size=1, tensor_parallel_size=devices), 1, devices
    return TensorParallelStrategy(data_parallel_size=devices // 2, tensor_parallel_size=2), devices // 2, 2


def report(line: str) -> None:
    # stdout, beside the figure line: stderr holds hundreds of lines of warnings and tracebacks
    print(f"strategy_figures: {line}", flush=True)


def launched_rank_failures(trainer: Trainer, *, wait: float) -> list[str]:
    """One line per rank that Lightning started from this process (rank 0; the others start none) and that
    exited non-zero, was killed by a signal, or still runs ``wait`` seconds on: that one is killed, since an
    orphan blocked in a collective would hold its caller's pipes until the process group's timeout."""
    lines, deadline = [], time.monotonic() + wait
    for rank, process in enumerate(getattr(trainer.strategy.launcher, "procs", []), start=1):
        try:
            code = process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            lines.append(
                f"rank {rank} (pid {process.pid}) still running {wait:g} s after rank 0 stopped: killed"
            )
            continue
        if code < 0:
            oom = " (the out-of-memory killer sends SIGKILL)" if -code == signal.SIGKILL else ""
            name = signal.Signals(-code).name
            lines.append(f"rank {rank} (pid {process.pid}) killed by {name}, with no message of its own{oom}")
        elif code > 0:
            lines.append(f"rank {rank} (pid {process.pid}) exited with status {code}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("gpt2-124m", "llama-1b"), default="gpt2-124m")
    parser.add_argument("--strategy", choices=STRATEGIES, default="single")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    parser.add_argument("--compile", action="store_true", help="torch.compile each block")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak")
    parser.add_argument(
        "--tiny", action="store_true", help="toy sizes, on CPU processes: a check of the path"
    )
    args = parser.parse_args()
    if args.warmup >= args.steps:
        raise SystemExit(f"--warmup {args.warmup} must be below --steps {args.steps}")
    needed = {"single": 1, "ddp": 2, "fsdp2": 1, "tp": 2, "2d": 4}[args.strategy]
    if (args.strategy == "single" and args.devices != 1) or args.devices < needed:
        raise SystemExit(
            f"--strategy {args.strategy} runs on {needed}{'' if needed == 1 else ' or more'} devices"
        )
    cuda = torch.cuda.is_available() and not args.tiny
    if not (cuda or args.tiny):
        raise SystemExit(
            "no CUDA device: the shapes' figures are for GPUs; --tiny runs the path on CPU processes"
        )
    from swapformer.tasks import CausalLMModule

    options, vocab, batch, length = shape(args.shape, tiny=args.tiny)
    module = CausalLMModule(
        vocab_size=vocab, **options, total_steps=args.steps, compile=args.compile and cuda
    )
    loader = DataLoader(RandomBatches(vocab_size=vocab, batch_size=batch, seq_len=length), batch_size=None)
    chosen, data_parallel, tensor_parallel = strategy(args.strategy, args.devices)
    timer = StepTimer(args.warmup)
    trainer = Trainer(
        accelerator="cuda" if cuda else "cpu",
        devices=args.devices,
        strategy=chosen,
        precision="bf16-mixed",
        max_steps=args.steps,
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    try:
        trainer.fit(module, train_dataloaders=loader)
    except BaseException as error:
        message = str(error).strip().splitlines()
        report(
            f"rank {trainer.global_rank} failed: {type(error).__name__}{': ' + message[0] if message else ''}"
        )
        for line in launched_rank_failures(trainer, wait=10):
            report(line)
        raise
    if not trainer.is_global_zero:
        return 0
    seconds, steps = timer.end - timer.start, args.steps - args.warmup
    tokens_per_second = steps * batch * length * data_parallel / seconds
    flops, peak = module.flops_per_batch, peak_tflops(args.peak_tflops)
    if flops is None or peak is None:
        mfu = f"MFU n/a ({'FLOPs not measured' if flops is None else 'no peak known for this device'})"
    else:
        mfu = f"MFU {flops * data_parallel * steps / seconds / (args.devices * peak * 1e12):.1%} of {peak:g} "
        mfu += "TFLOP/s bf16 a device"
    memory = (
        f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB a device"
        if cuda
        else "peak memory n/a (CPU)"
    )
    size = f"{args.shape}{' (toy sizes)' if args.tiny else ''}"
    mesh = f"data parallel {data_parallel} x tensor parallel {tensor_parallel}"
    print(
        f"strategy {args.strategy}, {size}, {args.devices} device(s) ({mesh}), {batch} x {length} tokens a "
        f"data-parallel rank, {'compiled' if args.compile and cuda else 'eager'}: tokens/s {tokens_per_second:,.0f}; "
        f"{mfu}; {memory}"
    )
    failures = launched_rank_failures(trainer, wait=60)
    for line in failures:
        report(line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
