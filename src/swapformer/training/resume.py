"""Resume checks: ``fit --ckpt_path`` continues the checkpoint's model, so the recipe must describe that model.

Lightning builds the model from the recipe and then loads the checkpoint's tensors into it. A recipe whose model
differs fails with a size mismatch at best (``d_model`` 32 vs 64); at worst the shapes agree (``num_heads``,
``norm``, ``positional``, ``attention``) and the run silently trains other computations on the loaded weights,
while ``config.yaml`` records the recipe. :func:`check_resume` compares the two before anything trains and lists
every difference.

Which keys must match: every model field (:data:`~swapformer.config.MODEL_KEYS`, the vocabulary and ``kind``
among them) and the task module's class, except :data:`MAY_CHANGE`, which change no weight and no computation of
the trained function (``dropout``: regularization; ``init_std``: initialization only, the weights are loaded), and
the attention kernels that compute the same function (``sdpa`` and ``math``, :data:`SAME_FUNCTION`). The training
options (``lr``, the schedule, ``max_steps``, ...) are not model fields and are not compared (beware: the optimizer
and scheduler states restored from the checkpoint keep the learning rates they had).
A key the checkpoint does not hold (written before the field existed) is not compared.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info

from swapformer.config import MODEL_KEYS
from swapformer.data.resumable import ResumableDataLoader
from swapformer.errors import ConfigError

MAY_CHANGE = ("dropout", "init_std")
"""Model fields a resumed run may set differently from its checkpoint."""

SAME_FUNCTION = {"attention": ({"sdpa", "math"},)}
"""Values that compute the same function with another kernel (so a resumed run may swap them)."""


def checkpoint_hyperparameters(path: str | os.PathLike) -> dict[str, Any] | None:
    """The ``hyper_parameters`` of a checkpoint file, or of a sharded (FSDP2) checkpoint folder's ``meta.pt``;
    None when there are none to read (a folder without metadata, a URL)."""
    source = Path(path)
    if source.is_dir():
        source = source / "meta.pt"  # Lightning's sharded layout: the non-tensor state, saved by rank 0
    if not source.is_file():
        return None
    # mmap: only the small pickled header is read, not the tensors
    state = torch.load(source, map_location="cpu", weights_only=True, mmap=True)
    hyperparameters = state.get("hyper_parameters") if isinstance(state, dict) else None
    return dict(hyperparameters) if hyperparameters is not None else None


def resume_differences(recipe: dict[str, Any], checkpoint: dict[str, Any]) -> list[str]:
    """One line per key on which the recipe's model (its hyperparameters) and the checkpoint's disagree."""
    keys = ["_class_path", *(k for k in MODEL_KEYS if k not in MAY_CHANGE)]
    return [
        f"{_name(key)}: the recipe has {_plain(recipe.get(key))!r}, the checkpoint has {_plain(checkpoint[key])!r}"
        for key in keys
        if key in checkpoint and not _same(key, _plain(recipe.get(key)), _plain(checkpoint[key]))
    ]


def check_resume(ckpt_path: str | os.PathLike | None, *, hyperparameters: dict[str, Any]) -> None:
    """Raise when the model of ``hyperparameters`` (the recipe's, resolved) is not the checkpoint's.

    Raises:
        ConfigError: every differing key, with the two ways out: resume with the checkpoint's values, or start
            from its weights with ``init_from``.
    """
    if not ckpt_path or str(ckpt_path) in ("last", "best", "hpc") or "://" in str(ckpt_path):
        return  # nothing on disk to compare with (Lightning reports a missing "last" itself)
    saved = checkpoint_hyperparameters(ckpt_path)
    if saved is None:
        return
    problems = resume_differences(hyperparameters, saved)
    if problems:
        raise ConfigError(
            problems,
            title=f"the recipe's model is not the model of --ckpt_path {ckpt_path}: to resume, give the recipe "
            "the checkpoint's values (drop the overrides); to start from its weights with another model config, use "
            f"--model.init_args.init_from {ckpt_path} instead of --ckpt_path",
        )


def _same(key: str, ours: Any, theirs: Any) -> bool:
    if ours == theirs:
        return True
    return any(
        ours in group and theirs in group for group in SAME_FUNCTION.get(key, ()) if isinstance(ours, str)
    )


def _name(key: str) -> str:
    return "model.class_path" if key == "_class_path" else f"model.init_args.{key}"


def _plain(value: Any) -> Any:
    """Tuples as lists, as the hyperparameters store them."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def carry_epoch_position(trainer: pl.Trainer) -> None:
    """After resuming on another number of processes, count the batches of the epoch done so far in this run's
    batches per process, as the training loader already does for what it skips.

    Lightning restores its count of the epoch's batches as the checkpoint's world had them (1 of 2 on two
    processes) and takes from it where gradient accumulation ends and where the epoch ends: on one process
    (4 batches an epoch, 2 accumulated) the next batch would close an optimizer step after one micro-batch,
    not two. Here the count becomes the loader's (2 of 4); earlier epochs are scaled alike. Call it once the
    loader's state is loaded and before the epoch loop resets (``on_train_start``).
    """
    loader = trainer.train_dataloader
    if not isinstance(loader, ResumableDataLoader) or loader.restored is None:
        return
    batches, length, position = loader.restored
    loader.restored = None
    if length == len(loader):
        return
    progress = trainer.fit_loop.epoch_loop.batch_progress
    current, total = progress.current, progress.total
    earlier = (total.ready - current.ready) * len(loader) // length  # whole epochs, in this loader's batches
    # from a checkpoint of on_train_batch_end, "completed" is 1 behind the others: keep each one's lag
    lags = {
        name: current.ready - getattr(current, name)
        for name in ("ready", "started", "processed", "completed")
    }
    for name, lag in lags.items():
        setattr(current, name, position - lag)
        setattr(total, name, earlier + position - lag)
    rank_zero_info(
        f"resumed at batch {batches} of {length} per process (the checkpoint's world size): batch {position} of "
        f"{len(loader)} per process here"
    )
