"""Callbacks the multi-process safety tests add by class path (this folder on PYTHONPATH): an accident that
happens on one rank only, at a chosen optimizer step."""

from __future__ import annotations

import math
import os
import signal

import lightning.pytorch as pl
import torch


class OneRankAccident(pl.Callback):
    """At optimizer step ``step`` on rank ``rank``: send this process ``signal`` (a name, e.g. ``SIGTERM``), or
    with ``signal: nan`` make its weights NaN so that its loss alone is NaN."""

    def __init__(self, rank: int, step: int, signal: str) -> None:
        self.rank, self.step, self.signal = rank, step, signal

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx
    ) -> None:
        if trainer.global_rank != self.rank or trainer.global_step != self.step:
            return
        if self.signal == "nan":
            with torch.no_grad():
                pl_module.model.embedding.token.weight.fill_(math.nan)
        else:
            os.kill(os.getpid(), getattr(signal, self.signal))
