"""Samplers whose randomness depends only on ``(seed, epoch)``.

Lightning calls ``set_epoch(epoch)`` on a dataloader's sampler before every epoch (also after resuming
from a checkpoint), so a run killed and resumed at an epoch boundary sees exactly the batches an
uninterrupted run would have seen (and, with :class:`~swapformer.data.ResumableDataLoader` skipping the
batches already drawn, a run resumed mid-epoch too). A ``torch.Generator`` kept across epochs would not: its
state is lost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from swapformer.data.errors import DataError

__all__ = ["EpochShuffleSampler", "RandomOffsetSampler", "epoch_generator"]


def epoch_generator(*, seed: int, epoch: int) -> torch.Generator:
    """A CPU generator seeded from a hash of ``(seed, epoch)``, so nearby seeds/epochs do not collide."""
    digest = hashlib.blake2b(f"{seed}:{epoch}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


class _EpochSampler(Sampler[int]):
    """What both samplers share: a seed, and the epoch Lightning selects with ``set_epoch``."""

    def __init__(self, *, seed: int, length: int) -> None:
        self.seed, self.epoch, self._length = seed, 0, length

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose indices the next iteration yields."""
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        return epoch_generator(seed=self.seed, epoch=self.epoch)

    def __len__(self) -> int:
        return self._length


class RandomOffsetSampler(_EpochSampler):
    """Yields ``num_samples`` random window offsets in ``[0, num_offsets)``, drawn with replacement.

    Args:
        num_offsets: Number of valid start positions.
        num_samples: Offsets per epoch.
        seed: Base seed; the offsets of an epoch depend only on ``(seed, epoch)``.

    Raises:
        DataError: If ``num_offsets`` or ``num_samples`` is not positive.
    """

    def __init__(self, *, num_offsets: int, num_samples: int, seed: int) -> None:
        if num_offsets < 1 or num_samples < 1:
            raise DataError(f"num_offsets={num_offsets} and num_samples={num_samples} must both be positive.")
        super().__init__(seed=seed, length=num_samples)
        self.num_offsets = num_offsets
        self.num_samples = num_samples

    def __iter__(self) -> Iterator[int]:
        offsets = torch.randint(self.num_offsets, (self.num_samples,), generator=self._generator())
        return iter(offsets.tolist())


class EpochShuffleSampler(_EpochSampler):
    """A fresh permutation of ``range(num_items)`` per epoch, determined by ``(seed, epoch)``.

    Args:
        num_items: Dataset length.
        seed: Base seed.

    Raises:
        DataError: If ``num_items`` is not positive.
    """

    def __init__(self, *, num_items: int, seed: int) -> None:
        if num_items < 1:
            raise DataError(f"num_items={num_items} must be positive; the dataset is empty.")
        super().__init__(seed=seed, length=num_items)
        self.num_items = num_items

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.num_items, generator=self._generator()).tolist())
