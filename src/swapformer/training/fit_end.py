"""Every fit with checkpointing on ends with ``last.ckpt`` holding its final weights, whatever its step count.

Lightning's ModelCheckpoint writes ``last.ckpt`` only beside a checkpoint it takes (every N steps, after a
validation, at an epoch's end) and, at the end of training, only when it never wrote one: a 20-step run with
validation every 50 steps ends with no checkpoint, and a 70-step run with one every 50 ends with step 50's
weights in ``last.ckpt``. :class:`SaveLastAtEnd` saves ``last.ckpt`` once more when training ends if the
newest save is older than the final step (every ModelCheckpoint with ``save_last``; the CLI's has it on).
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint


class SaveLastAtEnd(pl.Callback):
    """At the end of training, ``last.ckpt`` of every ModelCheckpoint with ``save_last`` holds the final step."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for callback in trainer.checkpoint_callbacks:
            if not isinstance(callback, ModelCheckpoint) or not callback.save_last:
                continue
            saved_now = (
                callback._last_checkpoint_saved and callback._last_global_step_saved == trainer.global_step
            )
            if not saved_now or not callback.last_model_path:
                # called on every process (a collective save under DDP / FSDP2), as the callback's own saves are
                callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))
