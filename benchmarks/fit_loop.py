"""What the ``swapformer fit`` loop costs around the step, and where it stands against nanoGPT's ``train.py``.

One run prints, for the shakespeare-char recipe with learned positions and with its own rope:

* **bare**: the recipe's model (``CausalLMModule`` built from the recipe's model section), the data module's
  training loader, the module's own ``configure_optimizers`` (fused AdamW, warmup-cosine) and norm clipping at
  the recipe's ``gradient_clip_val``, in a plain ``for`` loop;
* **fit**: ``swapformer fit`` in-process on the same recipe and steps, validation, checkpointing, logging and
  callbacks as the recipe sets them; the training loop is timed from the start of a warm-up step to the end of
  the last step, validation subtracted (so Lightning's hooks, logging, progress and the loader are all in);
* **nanoGPT**: a peer written in ``benchmarks/nanogpt.py`` after nanoGPT's design (no copied code). Model:
  fused q/k/v projection, no biases, ``F.scaled_dot_product_attention(is_causal=True)``, learned positions,
  tied head. Loop: characters in a uint8 tensor, batches at ``torch.randint`` offsets, fused AdamW with decay
  on >= 2-D tensors, cosine lr with linear warmup, clipping at 1.0, ``loss.item()`` every
  ``log_every_n_steps``, an evaluation every ``val_check_interval`` steps over ``limit_val_batches`` batches of
  the validation split (the recipe's settings; nanoGPT's own also evaluates the training split and at step 0)
  with a checkpoint when it improves. It runs as a whole process (text read and encoded inside; torch
  imported, Lightning not), as does ``python -m swapformer fit``, for the end-to-end ratio.

Ratios: ``fit / bare`` in time per training step (goal <= 1.03) and ``nanoGPT / fit`` in tokens/s of the whole
process (goal: <= 1 for learned positions, i.e. swapformer ahead, and about 1 for rope). Rounds are interleaved
(bare, fit, fit process, nanoGPT process, per variant, per round) and medians reported.

The in-process rows run ``--steps`` steps (default 500); the whole processes run ``--process-steps`` (default
1500, as nanoGPT's comparison was first measured), so start-up (imports: Lightning alone takes about 3 s more
than torch) weighs as it does in a real run. ``--no-loop`` / ``--no-process`` leave out one part.

    python benchmarks/fit_loop.py [--steps 500] [--process-steps 1500] [--rounds 3] [--variants learned,rope]
        [--no-loop | --no-process] [--data PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from nanogpt import RECIPE, recipe
from torch import nn

from swapformer.cli import run
from swapformer.cli.fit import SwapformerCLI
from swapformer.data import CausalLMDataModule
from swapformer.tasks import CausalLMModule

DATA = "../shared/data/tinyshakespeare/input.txt"


def fit_overrides(positional: str, steps: int, data: Path, root: str) -> list[str]:
    """``swapformer fit`` arguments running the recipe as :func:`recipe` describes it."""
    return [
        "fit",
        "--config",
        str(RECIPE),
        f"--data.init_args.path={data}",
        f"--model.init_args.positional={positional}",
        f"--model.init_args.total_steps={steps}",
        f"--trainer.max_steps={steps}",
        f"--trainer.default_root_dir={root}",
    ]


# ---- bare: the same model, data and optimizer in a plain loop -------------------------------------------------
def bare_loop(positional: str, steps: int, data: Path, warmup: int) -> float:
    """Seconds of steps ``warmup..steps`` of a plain loop over the recipe's module, loader and optimizer."""

    config = recipe(positional, steps)
    torch.manual_seed(config["seed_everything"])
    with tempfile.TemporaryDirectory() as tmp:
        datamodule = CausalLMDataModule(**{**config["data"]["init_args"], "path": data, "cache_dir": tmp})
        datamodule.setup("fit")
        module = CausalLMModule(vocab_size=datamodule.vocab_size, **config["model"]["init_args"])
        optimizers = module.configure_optimizers()
        optimizer, scheduler = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
        clip = config["trainer"]["gradient_clip_val"]
        module.train()
        start = 0.0
        batches = iter(datamodule.train_dataloader())
        for step in range(steps):
            if step == warmup:
                start = time.perf_counter()
            batch = next(batches)
            logits = module.model(batch["input_ids"])
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch["labels"].reshape(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(module.parameters(), clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start


# ---- fit in-process: the training loop timed by a callback -------------------------------------------------
class LoopTimer(Callback):
    """Wall time from the start of batch ``warmup`` to the end of the last batch, the validations run in between
    subtracted (not the one after the last batch, which is outside that span)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end = 0.0
        self.validations: list[tuple[float, float]] = []
        self._val_start = 0.0

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        self.end = time.perf_counter()

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self.start is not None:
            self.validations.append((self._val_start, time.perf_counter()))

    @property
    def seconds(self) -> float:
        if self.start is None:
            return 0.0
        inside = sum(
            end - start for start, end in self.validations if self.start <= start and end <= self.end
        )
        return self.end - self.start - inside


@contextlib.contextmanager
def timed_trainer(timer: Callback) -> Iterator[None]:
    """Add ``timer`` to the trainer ``swapformer fit`` builds (a benchmark-only hook, undone on exit)."""

    original = SwapformerCLI.instantiate_trainer

    def instantiate(self: Any, **kwargs: Any) -> Any:
        trainer = original(self, **kwargs)
        trainer.callbacks.insert(0, timer)
        return trainer

    SwapformerCLI.instantiate_trainer = instantiate
    try:
        yield
    finally:
        SwapformerCLI.instantiate_trainer = original


def fit_in_process(positional: str, steps: int, data: Path, warmup: int) -> float:
    """Seconds of steps ``warmup..steps`` of ``swapformer fit`` (validation excluded), output silenced."""

    timer = LoopTimer(warmup)
    with (
        tempfile.TemporaryDirectory() as tmp,
        timed_trainer(timer),
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stdout(devnull),
    ):
        run(fit_overrides(positional, steps, data, tmp))
    return timer.seconds


def whole_process(command: list[str]) -> float:
    """Wall seconds of ``command`` as a fresh Python process, output discarded."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


# ---- the comparison ----------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="training steps of the in-process rows")
    parser.add_argument(
        "--process-steps", type=int, default=1500, help="training steps of the whole-process rows"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20, help="steps left out of the in-process timings")
    parser.add_argument(
        "--variants", default="learned,rope", help="positional encodings to run the recipe with"
    )
    parser.add_argument("--data", default=DATA, help="tiny shakespeare's input.txt")
    parser.add_argument("--no-process", action="store_true", help="skip the whole-process runs")
    parser.add_argument("--no-loop", action="store_true", help="skip the in-process loop rows")
    args = parser.parse_args()
    data = Path(args.data).resolve()
    if not data.is_file():
        raise SystemExit(f"--data {args.data}: no such file; pass tiny shakespeare's input.txt")
    if args.warmup >= args.steps:
        raise SystemExit(f"--warmup {args.warmup} must be below --steps {args.steps}")
    variants = args.variants.split(",")
    tokens = recipe("learned", args.steps)["data"]["init_args"]
    tokens_per_step = tokens["batch_size"] * tokens["seq_len"]
    timed = args.steps - args.warmup
    results: dict[str, list[float]] = {}
    steps = args.process_steps
    nanogpt = [sys.executable, str(Path(__file__).resolve().with_name("nanogpt.py")), f"--steps={steps}"]
    for _ in range(args.rounds):
        for variant in variants:
            if not args.no_loop:
                results.setdefault(f"bare {variant}", []).append(
                    bare_loop(variant, args.steps, data, args.warmup)
                )
                results.setdefault(f"fit {variant}", []).append(
                    fit_in_process(variant, args.steps, data, args.warmup)
                )
            if args.no_process:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                command = [sys.executable, "-m", "swapformer", *fit_overrides(variant, steps, data, tmp)]
                results.setdefault(f"fit process {variant}", []).append(whole_process(command))
            results.setdefault("nanoGPT process", []).append(whole_process([*nanogpt, f"--data={data}"]))
    median = {name: statistics.median(times) for name, times in results.items()}
    print(
        f"shakespeare-char, batches of {tokens['batch_size']} x {tokens['seq_len']}, "
        f"{torch.get_num_threads()} threads, median of {args.rounds} interleaved rounds"
    )
    if not args.no_loop:
        print(
            f"\n{'training loop (steps ' + str(args.warmup) + '..' + str(args.steps) + ')':40} {'ms/step':>8}"
        )
    for variant in [] if args.no_loop else variants:
        bare, fit = median[f"bare {variant}"], median[f"fit {variant}"]
        for name, seconds in ((f"bare loop, {variant}", bare), (f"swapformer fit, {variant}", fit)):
            print(f"{name:40} {seconds / timed * 1e3:8.2f}")
        print(f"{'fit / bare, ' + variant:40} {fit / bare:8.3f}   (goal <= 1.03)")
    if args.no_process:
        return
    nano = median["nanoGPT process"]
    print(f"\n{'whole process, ' + str(steps) + ' steps':40} {'seconds':>8} {'tokens/s':>9}")
    print(f"{'nanoGPT train.py design':40} {nano:8.1f} {tokens_per_step * steps / nano:9,.0f}")
    for variant in variants:
        fit = median[f"fit process {variant}"]
        print(f"{'swapformer fit, ' + variant:40} {fit:8.1f} {tokens_per_step * steps / fit:9,.0f}")
    for variant in variants:
        goal = "<= 1.00, swapformer ahead" if variant == "learned" else "<= 1.00, at least even"
        ratio = median[f"fit process {variant}"] / nano  # = nanoGPT tokens/s over fit's
        print(f"{'nanoGPT / fit tokens/s, ' + variant:40} {ratio:8.3f}   (goal {goal})")


if __name__ == "__main__":
    main()
