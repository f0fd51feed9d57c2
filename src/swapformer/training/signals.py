"""SIGTERM and SIGINT (preemption, ``scancel``, Ctrl-C) end a run with a checkpoint instead of losing it.

:class:`SaveOnSignal` replaces the two handlers while training runs: the first signal only sets a flag; at the
end of the current optimizer step every process learns of it (one ``all_reduce`` of one number per step under
DDP / FSDP2, so a signal that reached a single rank stops them all at the same step), all save ``last.ckpt``
together where the ModelCheckpoint writes it (``--ckpt_path last`` then finds it), and the run exits with
128 + the signal's number (143 for SIGTERM, 130 for SIGINT), what a shell reports for a process a signal ended:
a scheduler (SLURM's requeue, torchrun's restarts) and ``fit && evaluate`` scripts see an unfinished run. A
second signal ends the process at once (the default handler): the checkpoint writes are atomic
(:mod:`swapformer.training.checkpoint_io`), so that never leaves a corrupt ``last.ckpt``.

The save happens where ModelCheckpoint's own step checkpoints are taken (``on_train_batch_end``), so resuming from
it continues the epoch exactly as from those (the data loader's position is in the checkpoint).

Lightning's own SIGTERM handling (``trainer.received_sigterm``) raises at the end of the batch without saving and
forwards the signal to its spawned processes; while this callback's handler is installed Lightning's is not called.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from swapformer.errors import StoppedBySignal

SIGNALS = (signal.SIGTERM, signal.SIGINT)
__all__ = ["SIGNALS", "SaveOnSignal", "StoppedBySignal"]


class SaveOnSignal(pl.Callback):
    """On SIGTERM or SIGINT: finish the optimizer step, save ``last.ckpt`` on every process, exit 128 + signal."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum
        signal.signal(signum, signal.SIG_DFL)  # a second one ends the process at once

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # Python lets only the main thread set handlers (a trainer run from a thread keeps the defaults)
        self.received = None
        for signum in SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches and not trainer.is_last_batch:
            return  # mid optimizer step
        signum = self._agreed_signal(trainer)
        if not signum:
            return
        path = self._save_last(trainer)
        name = signal.Signals(signum).name
        if trainer.is_global_zero:
            print(
                f"stopped by {name} at step {trainer.global_step}; saved {path}; resume with --ckpt_path last",
                flush=True,
            )
        raise StoppedBySignal(128 + signum)

    def _agreed_signal(self, trainer: pl.Trainer) -> int:
        """The signal any process received (the largest number), the same on every process."""
        received = self.received or 0
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            flag = torch.tensor([received], device=trainer.strategy.root_device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            received = int(flag.item())
        return received

    @staticmethod
    def _save_last(trainer: pl.Trainer) -> str:
        """Save ``last.ckpt`` (collectively) where the ModelCheckpoint writes it, or under the root without one."""
        callback = trainer.checkpoint_callback
        if isinstance(callback, ModelCheckpoint):
            candidates = callback._monitor_candidates(trainer)
            path = callback.format_checkpoint_name(candidates, ModelCheckpoint.CHECKPOINT_NAME_LAST)
            # its state in the checkpoint names this file as the last one, as its own save would
            callback.last_model_path = path
            callback._last_global_step_saved = trainer.global_step
        else:
            path = str(Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt")
        # a whole checkpoint to resume from; said, so Lightning does not announce that it defaulted to it
        trainer.save_checkpoint(path, weights_only=False)
        return os.path.abspath(path)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # before the trainer's own teardown puts back the handlers it found (teardown hooks run after it)
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
