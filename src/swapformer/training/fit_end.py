"""How every fit ends, whatever its step count: validated (and sampled) at its final step, and with ``last.ckpt``
holding its final weights when checkpointing is on.

Lightning validates every ``val_check_interval`` steps and at an epoch's end: a run that stops at ``max_steps``
between two validations (the docs' own 300-step example with validation every 250) ends with figures of an older
step, or none, and no samples. :class:`ValidateAtEnd` asks for the stop one step early in Lightning's own way
(``trainer.should_stop`` after the final optimizer step), which runs the validation loop there, SampleCallback
included.

Lightning's ModelCheckpoint writes ``last.ckpt`` only beside a checkpoint it takes (every N steps, after a
validation, at an epoch's end) and, at the end of training, only when it never wrote one: a 20-step run with
validation every 50 steps ends with no checkpoint, and a 70-step run with one every 50 ends with step 50's
weights in ``last.ckpt``. :class:`SaveLastAtEnd` saves ``last.ckpt`` once more when training ends if the
newest save is older than the final step (every ModelCheckpoint with ``save_last``; the CLI's has it on).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

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
                with _mid_epoch(trainer):
                    callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))


@contextlib.contextmanager
def _mid_epoch(trainer: pl.Trainer) -> Iterator[None]:
    """While a save at the end of training runs, count an epoch that ``max_steps`` (or a requested stop) cut short
    as unfinished, as the step checkpoints taken inside it count it: the fit resumed from ``last.ckpt`` goes on
    with that epoch's remaining batches, and says epoch 0, not a new epoch 1 after 30 of 500 batches."""
    loop = trainer.fit_loop
    if loop.epoch_loop.batch_progress.is_last_batch:  # the epoch ran out of batches: it did finish
        yield
        return
    trackers = (loop.epoch_progress.current, loop.epoch_progress.total)
    saved = [(t.processed, t.completed) for t in trackers]
    for tracker in trackers:
        tracker.processed = tracker.completed = max(tracker.started - 1, 0)
    try:
        yield
    finally:
        for tracker, (processed, completed) in zip(trackers, saved, strict=True):
            tracker.processed, tracker.completed = processed, completed


class ValidateAtEnd(pl.Callback):
    """Validate after the final optimizer step (``max_steps``, or the last batch of the last epoch)."""

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        last_step = trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step
        max_epochs = (
            trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else None
        )
        last_epoch = (
            max_epochs is not None and trainer.is_last_batch and trainer.current_epoch + 1 >= max_epochs
        )
        if (last_step or last_epoch) and trainer.enable_validation:
            trainer.should_stop = True  # Lightning validates before a requested stop
