"""Tokens/s and MFU of GPT-2 124M training (bf16, ``torch.compile``) with swapformer's module and Trainer.

The model and optimizer settings are the ``causal_lm/gpt2-124m`` recipe's (its model section, GPT-2's 50257-token
vocabulary, fused AdamW, clipping at 1.0); batches are random ids of the recipe's shape (8 x 1024), so no
tokenizer is trained and nothing is downloaded. Each block is compiled (the module's ``compile: true``), the
precision is ``bf16-mixed``, and the timing covers steps ``--warmup``..``--steps`` (compilation left out).

MFU = FLOPs per step / step time / the device's peak dense bf16 FLOP/s. FLOPs per step are the module's own
``flops_per_batch`` (measured on the meta device, matrix products only; see ``swapformer.tasks.flops``). The peak
comes from ``--peak-tflops`` or the table below by device name. On CPU, ``--tiny`` runs the same path at toy sizes
and reports tokens/s with MFU left out (no peak is known for a CPU).

    python benchmarks/gpt2_mfu.py [--steps 120] [--warmup 30] [--peak-tflops 989] [--goal 0.5] [--tiny]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader, IterableDataset

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "causal_lm" / "gpt2-124m.yaml"
# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, from NVIDIA's data sheets (SXM parts).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}
TINY = dict(d_model=64, num_heads=4, num_layers=2, d_ff=256, max_seq_len=64)


class RandomBatches(IterableDataset):
    """Endless batches of random ids ``{"input_ids", "labels"}`` of shape ``(N, L)``."""

    def __init__(self, *, vocab_size: int, batch_size: int, seq_len: int) -> None:
        self.vocab_size, self.batch_size, self.seq_len = vocab_size, batch_size, seq_len

    def __iter__(self):
        generator = torch.Generator().manual_seed(0)
        while True:
            ids = torch.randint(self.vocab_size, (self.batch_size, self.seq_len + 1), generator=generator)
            yield {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}


class StepTimer(Callback):
    """Wall time from the start of step ``warmup`` to the end of the last step (device synchronized)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, None, 0.0

    def _sync(self, pl_module: Any) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            self._sync(pl_module)
            self.start = time.perf_counter()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._sync(pl_module)
        self.end = time.perf_counter()


def peak_tflops(explicit: float | None) -> float | None:
    """``explicit``, else the table's entry for the CUDA device's name, else None."""
    if explicit is not None:
        return explicit
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=30, help="steps left out of the timing (compilation)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak")
    parser.add_argument("--goal", type=float, default=0.5, help="exit status 1 when MFU is below this")
    parser.add_argument("--tiny", action="store_true", help="toy sizes, eager, for a CPU check of the path")
    args = parser.parse_args()
    if args.warmup >= args.steps:
        raise SystemExit(f"--warmup {args.warmup} must be below --steps {args.steps}")
    from swapformer.tasks import CausalLMModule

    config = yaml.safe_load(RECIPE.read_text())
    model_args = {**config["model"]["init_args"], "dropout": 0.0, "total_steps": args.steps}
    batch, length, vocab = config["data"]["init_args"]["batch_size"], 1024, 50257
    if args.tiny:
        model_args.update(TINY)
        batch, length, vocab = 4, TINY["max_seq_len"], 512
    cuda = torch.cuda.is_available() and not args.tiny
    module = CausalLMModule(vocab_size=vocab, **model_args, compile=cuda)
    loader = DataLoader(RandomBatches(vocab_size=vocab, batch_size=batch, seq_len=length), batch_size=None)
    timer = StepTimer(args.warmup)
    trainer = Trainer(
        accelerator="cuda" if cuda else "cpu",
        devices=1,
        precision="bf16-mixed",
        max_steps=args.steps,
        gradient_clip_val=config["trainer"]["gradient_clip_val"],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=loader)
    seconds = timer.end - timer.start
    steps = args.steps - args.warmup
    tokens_per_second = steps * batch * length / seconds
    flops = module.flops_per_batch
    size = "toy sizes" if args.tiny else "GPT-2 124M"
    print(f"{size}, batch {batch} x {length}, bf16-mixed{', compiled' if cuda else ''}, {steps} timed steps")
    print(f"tokens/s: {tokens_per_second:,.0f}")
    peak = peak_tflops(args.peak_tflops)
    if flops is None or peak is None:
        why = "FLOPs not measured" if flops is None else "no peak known for this device (pass --peak-tflops)"
        print(f"MFU: n/a ({why})")
        return 0
    mfu = flops * steps / seconds / (peak * 1e12)
    verdict = "PASS" if mfu >= args.goal else "FAIL"
    print(
        f"MFU: {mfu:.1%} of {peak:g} TFLOP/s bf16 ({flops / (batch * length) / 1e6:.0f} MFLOPs per token); "
        f"goal >= {args.goal:.0%}: {verdict}"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
