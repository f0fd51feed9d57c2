"""The figures of one run in one file, ``run_summary.json``, for ``swapformer compare`` to tabulate.

``swapformer compare`` adds this callback to every run it starts (``--trainer.callbacks+=...``), so a run made
by ``compare`` itself, by an emitted W&B sweep or by a SLURM array writes the same file whatever its logger:
the validation and training loss against tokens seen, training throughput, parameter count, FLOPs per token,
peak memory and wall time. Its state travels in the checkpoint, so a resumed run keeps its whole curve.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_only

SUMMARY_FILE = "run_summary.json"
"""The file's name, in the run's ``trainer.default_root_dir``."""
CURVE_FILE = "run_curve.json"
"""The curve so far, rewritten at every validation: a checkpoint taken at a step is saved before that step's
validation runs, and a run resumed from it does not validate that step again; the point is taken from here."""


class RunSummary(pl.Callback):
    """Record a run's curve and costs; write them to ``<default_root_dir>/run_summary.json`` when fit ends.

    Args:
        variant: the comparison's name for this run's overrides (``positional=alibi``), written into the file.
        eval_lengths: context lengths at which the final model is also scored on the validation tokens (a
            causal LM's length-extrapolation study); ``val_loss@L`` is None where the model cannot run at L.
        eval_windows: windows of the longest length scored: every length scores the same span of validation
            tokens (``eval_windows`` times the longest length, from the start of the stream), cut into its own
            windows, so the columns differ by context length alone.
    """

    def __init__(
        self, *, variant: str | None = None, eval_lengths: list[int] | None = None, eval_windows: int = 16
    ) -> None:
        self.variant = variant
        self.eval_lengths = list(eval_lengths or [])
        self.eval_windows = eval_windows
        self.curve: list[dict[str, float]] = []
        self.tokens = 0
        self.train_seconds = 0.0
        self.wall_seconds = 0.0
        self._fit_start: float | None = None
        self._batch_start: float | None = None
        self._batch_tokens = 0
        self._pending: dict[str, int] | None = None  # a logged step whose train/loss is not read yet
        self._memory = _PeakMemory()

    # ---- state in the checkpoint: a resumed run keeps what it had -------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        wall = self.wall_seconds + (time.perf_counter() - self._fit_start if self._fit_start else 0.0)
        return {"curve": self.curve, "tokens": self.tokens, "train_seconds": self.train_seconds, "wall": wall}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.curve = list(state_dict.get("curve", []))
        self.tokens = int(state_dict.get("tokens", 0))
        self.train_seconds = float(state_dict.get("train_seconds", 0.0))
        self.wall_seconds = float(state_dict.get("wall", 0.0))

    # ---- recording ------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.perf_counter()
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        else:
            self._memory.start()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._points_after_checkpoint(trainer)  # the step counter is restored by now (not in on_fit_start)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._take_train_loss(trainer)
        self._batch_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, *args: Any
    ) -> None:
        if self._batch_start is not None:
            self.train_seconds += time.perf_counter() - self._batch_start
        self._batch_tokens = int(pl_module.batch_tokens(batch))
        self.tokens += self._batch_tokens * trainer.world_size
        step = trainer.global_step
        if step % max(1, trainer.log_every_n_steps) == 0 or trainer.is_last_batch:
            # the module logs train/loss in its own on_train_batch_end, which runs after the callbacks': the
            # value is read when the next batch (or the validation, or the end) comes
            self._pending = {"step": step, "tokens": self.tokens}

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._take_train_loss(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._take_train_loss(trainer)

    def _take_train_loss(self, trainer: pl.Trainer) -> None:
        pending, self._pending = self._pending, None
        loss = trainer.callback_metrics.get("train/loss")
        if pending is None or loss is None:
            return
        if not any(p["step"] == pending["step"] and "train_loss" in p for p in self.curve):
            self.curve.append({**pending, "train_loss": float(loss)})

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss = trainer.callback_metrics.get("val/loss")
        if trainer.sanity_checking or loss is None:
            return
        self.curve.append({"step": trainer.global_step, "tokens": self.tokens, "val_loss": float(loss)})
        self._write_curve(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._memory.stop()
        summary = self.summary(trainer, pl_module)
        self._write(trainer, summary)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._memory.stop()

    # ---- the file --------------------------------------------------------------------------------------------
    def summary(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """The run's figures (what ``run_summary.json`` holds)."""
        val = [p["val_loss"] for p in self.curve if "val_loss" in p]
        wall = self.wall_seconds + (time.perf_counter() - self._fit_start if self._fit_start else 0.0)
        seed = os.environ.get("PL_GLOBAL_SEED")
        return {
            "status": "finished",
            "variant": self.variant,
            "seed": int(seed) if seed is not None and seed.lstrip("-").isdigit() else None,
            "step": trainer.global_step,
            "tokens": self.tokens,
            "val_loss": val[-1] if val else None,
            "best_val_loss": min(val) if val else None,
            "tokens_per_s": self.tokens / self.train_seconds if self.train_seconds else None,
            "params": sum(p.numel() for p in pl_module.parameters()),
            "flops_per_token": _flops_per_token(pl_module, self._batch_tokens),
            "peak_memory_mb": _peak_memory_mb(pl_module, self._memory),
            "wall_s": wall,
            "eval_lengths": {
                str(n): _loss_at_length(trainer, pl_module, n, self.eval_windows * max(self.eval_lengths))
                for n in self.eval_lengths
            },
            "curve": self.curve,
        }

    @rank_zero_only
    def _write(self, trainer: pl.Trainer, summary: dict[str, Any], name: str = SUMMARY_FILE) -> None:
        root = Path(trainer.default_root_dir)
        root.mkdir(parents=True, exist_ok=True)
        temporary = root / f"{name}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(summary, indent=1))
        os.replace(temporary, root / name)

    def _write_curve(self, trainer: pl.Trainer) -> None:
        self._write(trainer, {"step": trainer.global_step, "curve": self.curve}, CURVE_FILE)

    def _points_after_checkpoint(self, trainer: pl.Trainer) -> None:
        """On resume: the validation points of the checkpoint's own step (and before) that its state lacks."""
        path = Path(trainer.default_root_dir) / CURVE_FILE
        if trainer.global_step == 0 or not path.is_file():
            return
        try:
            written = json.loads(path.read_text()).get("curve", [])
        except (OSError, ValueError):
            return
        have = {(p["step"], tuple(sorted(p))) for p in self.curve}
        for point in written:
            if point["step"] <= trainer.global_step and (point["step"], tuple(sorted(point))) not in have:
                self.curve.append(point)
        self.curve.sort(key=lambda p: (p["step"], "val_loss" in p))


class _PeakMemory:
    """The largest resident set size of this process while a run trains, sampled every 20 ms (Linux); elsewhere
    the process's peak so far."""

    def __init__(self) -> None:
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.peak_bytes = _resident_bytes() or 0
        if not os.path.exists("/proc/self/statm"):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="run-summary-memory")
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_bytes = max(self.peak_bytes, _resident_bytes() or 0)

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    @property
    def peak_mb(self) -> float | None:
        if self.peak_bytes:
            return self.peak_bytes / 2**20
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _peak_memory_mb(pl_module: pl.LightningModule, memory: _PeakMemory) -> float | None:
    if pl_module.device.type == "cuda":
        return torch.cuda.max_memory_allocated(pl_module.device) / 2**20
    return memory.peak_mb


def _flops_per_token(pl_module: pl.LightningModule, batch_tokens: int) -> float | None:
    flops = getattr(pl_module, "flops_per_batch", None)
    return flops / batch_tokens if flops and batch_tokens else None


@torch.inference_mode()
def _loss_at_length(
    trainer: pl.Trainer, pl_module: pl.LightningModule, length: int, span: int
) -> float | None:
    """Mean next-token loss over the first ``span`` validation tokens cut into consecutive windows of ``length``
    (None: not a causal LM with a token stream, too little validation text, or a model that cannot run at that
    length)."""
    stream = getattr(trainer.datamodule, "val_tokens", None)
    if getattr(pl_module, "kind", None) != "causal_lm" or stream is None:
        return None
    count = min(span, stream.numel() - 1) // length
    if count < 1:
        return None
    batch = torch.stack([stream[i * length : i * length + length + 1] for i in range(count)]).long()
    batch = batch.to(pl_module.device)
    training = pl_module.training
    pl_module.eval()
    try:
        total = 0.0
        for chunk in batch.split(4):
            logits = pl_module(chunk[:, :-1])  # (N, L, V)
            total += float(
                F.cross_entropy(logits.flatten(0, 1).float(), chunk[:, 1:].flatten(), reduction="sum")
            )
    except (ValueError, RuntimeError, IndexError):  # a positional table shorter than ``length``
        return None
    finally:
        pl_module.train(training)
    loss = total / (count * length)
    return loss if math.isfinite(loss) else None
