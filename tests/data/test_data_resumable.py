"""ResumableDataLoader: a loader restored from its state continues exactly where the saved one stopped."""

from __future__ import annotations

import pytest
import torch

from swapformer.data import EpochShuffleSampler, ResumableDataLoader


def _loader(batch_size: int = 4, n: int = 40) -> ResumableDataLoader:
    sampler = EpochShuffleSampler(num_items=n, seed=7)
    return ResumableDataLoader(torch.arange(n), batch_size=batch_size, sampler=sampler)


def _epoch(loader, epoch: int) -> list[list[int]]:
    loader.sampler.set_epoch(epoch)
    return [b.tolist() for b in loader]


def test_restored_loader_continues_the_epoch_exactly():
    straight = _epoch(_loader(), 3)
    first = _loader()
    first.sampler.set_epoch(3)
    seen = []
    for batch in first:
        seen.append(batch.tolist())
        if len(seen) == 4:
            break
    state = first.state_dict()
    assert state == {"batches": 4, "length": 10}

    second = _loader()
    probe = iter(second)  # Lightning probes iterability before the state is loaded: that must change nothing
    del probe
    second.load_state_dict(state)
    second.sampler.set_epoch(3)
    rest = []
    for batch in second:
        rest.append(batch.tolist())
        if len(rest) == 3:
            break
    # a second interruption in the same epoch: the position counts the skipped batches too
    assert second.state_dict() == {"batches": 7, "length": 10}
    third = _loader()
    third.load_state_dict(second.state_dict())
    assert seen + rest + _epoch(third, 3) == straight
    assert _epoch(third, 4) == _epoch(_loader(), 4)  # the skip applies once; the next epoch is whole


def test_state_after_a_complete_epoch_skips_nothing():
    loader = _loader()
    _epoch(loader, 0)
    assert loader.state_dict() == {"batches": 10, "length": 10}
    fresh = _loader()
    fresh.load_state_dict(loader.state_dict())
    assert _epoch(fresh, 1) == _epoch(_loader(), 1)


def test_other_epoch_length_skips_the_same_fraction():
    half = _loader(batch_size=8)  # 5 batches per epoch where the checkpoint had 10
    half.load_state_dict({"batches": 4, "length": 10})
    assert len(_epoch(half, 0)) == 3  # 2 of 5 skipped
    odd = _loader(batch_size=8)
    with pytest.warns(UserWarning, match="resuming at batch 3 of 10 in an epoch that now has 5"):
        odd.load_state_dict({"batches": 3, "length": 10})
    assert len(_epoch(odd, 0)) == 4  # 1 skipped (1.5 rounded down)
