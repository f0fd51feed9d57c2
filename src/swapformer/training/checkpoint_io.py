"""Atomic checkpoint files: a kill during a save never leaves a corrupt ``last.ckpt``.

Lightning's :class:`~lightning.pytorch.plugins.io.TorchCheckpointIO` writes the file in place, so a process killed
half way (preemption, an out-of-memory kill, a full disk) leaves a truncated ``last.ckpt`` that ``--ckpt_path
last`` then fails to read, while the previous good one is gone. :class:`AtomicCheckpointIO` writes a temporary
file in the same folder, flushes it to disk and renames it over the target (``os.replace`` is atomic on POSIX and
Windows within one file system): the target is the old checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from swapformer.training.checkpoints import read_distributed_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """:class:`TorchCheckpointIO` whose local saves are atomic (remote URLs keep Lightning's own writer), and
    which also loads a distributed checkpoint folder (FSDP2's shards), so one process and DDP resume from it."""

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if "://" not in str(path) and Path(path).is_dir():  # TorchCheckpointIO: "last.ckpt: Is a directory"
            return read_distributed_checkpoint(path)
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)
            return
        with atomic_path(Path(path)) as temporary, open(temporary, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())


@contextlib.contextmanager
def atomic_path(target: Path):
    """Yield a temporary path next to ``target``; on success it replaces ``target``, on failure it is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        yield Path(name)
        os.replace(name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(name)
        raise
    _fsync_folder(target.parent)  # the rename itself survives a power cut only once the folder is on disk


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened (Windows)
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _atomic_link(trainer: pl.Trainer, filepath: str, linkpath: str) -> None:
    """ModelCheckpoint's ``save_last="link"``, made atomic: Lightning removes ``last.ckpt`` before it links (or
    copies) the new one, so a kill in between leaves no ``last`` at all, or half a copy."""
    if trainer.is_global_zero and os.path.abspath(filepath) != os.path.abspath(linkpath):
        target = Path(linkpath)
        if target.is_dir() and not target.is_symlink():  # a sharded checkpoint's folder: Lightning's own way
            shutil.rmtree(target)
        with atomic_path(target) as temporary:
            os.remove(temporary)
            try:
                os.symlink(os.path.relpath(filepath, target.parent), temporary)
            except OSError:  # no symbolic links for this user (Windows): a copy
                shutil.copy(filepath, temporary)
    trainer.strategy.barrier()


def use_atomic_checkpoints(trainer: pl.Trainer) -> None:
    """Make ``trainer``'s checkpoint writes atomic: its strategy's default ``TorchCheckpointIO`` becomes
    :class:`AtomicCheckpointIO` (a CheckpointIO the user chose is left alone) and every ModelCheckpoint's
    ``last`` link is replaced atomically."""
    strategy = trainer.strategy
    if type(getattr(strategy, "_checkpoint_io", None) or strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()
    for callback in trainer.checkpoint_callbacks:
        if type(callback)._link_checkpoint is ModelCheckpoint._link_checkpoint:
            callback._link_checkpoint = _atomic_link  # an instance attribute: called without self
