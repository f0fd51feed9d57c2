"""A DataLoader that a mid-epoch checkpoint can resume exactly.

Lightning saves the state of a training dataloader that has ``state_dict()`` / ``load_state_dict()`` in every
checkpoint (under ``loops.fit_loop.state_dict.combined_loader``) and restores it before the resumed epoch's
iterator is made. Without that, a run resumed from a checkpoint taken in the middle of an epoch starts the
epoch's batches again from the first one (Lightning warns: "resuming from a checkpoint that ended before the
epoch ended"), so it trains on different data than an uninterrupted run would.

:class:`ResumableDataLoader` counts the batches it has handed out in the current epoch; after
``load_state_dict`` its next iteration draws and drops that many batches first. With swapformer's samplers,
whose order depends only on ``(seed, epoch)``, the resumed run then sees exactly the batches of the
uninterrupted one. Dropping batches costs their loading (cheap for token windows), not training.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

__all__ = ["ResumableDataLoader"]


class ResumableDataLoader(DataLoader):
    """``torch.utils.data.DataLoader`` plus the checkpointable position in the current epoch.

    Same arguments as ``DataLoader``. ``state_dict()`` is ``{"batches": n, "length": len(self)}``, where ``n`` is
    the number of batches yielded since the current iteration began, skipped ones included (the epoch's
    position: Lightning does not prefetch from loaders with a length). A state saved after a complete epoch
    (``n == length``) skips nothing, since the next iteration is a new epoch. If the epoch now has another number
    of batches (another device count or batch size), the same fraction of it is skipped.
    """

    restored: tuple[int, int, int] | None = None
    """After ``load_state_dict``: ``(batches, length, position)``, the saved position in the saved epoch's
    batches per process and the same position in this loader's (``length`` when the epoch was complete)."""

    def state_dict(self) -> dict[str, int]:
        return {"batches": getattr(self, "_batches_yielded", 0), "length": len(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        batches, length = int(state.get("batches", 0)), int(state.get("length", len(self)))
        if batches >= length:  # saved after a complete epoch: the next iteration is a new one
            self._skip_batches = 0
            self.restored = (batches, length, len(self))
            return
        # The same fraction of the epoch, should it now have another number of batches per process (devices or
        # batch size changed). Exact when it divides, as it does for a device count that doubles or halves.
        skip, remainder = divmod(batches * len(self), length)
        if remainder:
            warnings.warn(
                f"resuming at batch {batches} of {length} in an epoch that now has {len(self)} batches per process: "
                f"skipping {skip}, so up to one batch per process is seen twice. Resume with the device count and "
                "batch size of the checkpoint, or from an epoch-end checkpoint, for an exact continuation.",
                stacklevel=2,
            )
        self._skip_batches = skip
        self.restored = (batches, length, skip)

    def __iter__(self) -> Iterator[Any]:
        # A generator: nothing runs (and no pending skip is used up) until the first batch is asked for, so
        # Lightning's "is it iterable?" probe before the state is loaded changes nothing.
        skip, self._skip_batches = getattr(self, "_skip_batches", 0), 0
        self._batches_yielded = 0
        iterator = super().__iter__()
        for _ in range(skip):
            next(iterator)
            self._batches_yielded += 1
        for batch in iterator:
            self._batches_yielded += 1
            yield batch
