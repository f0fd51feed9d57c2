"""Helpers shared by the data tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader


def assert_resume_continues(loader: Callable[[], DataLoader], *, stop_after: int = 3) -> None:
    """A loader stopped after ``stop_after`` batches, and a fresh one given its state, deliver together exactly the
    batches of one uninterrupted pass (``loader()`` makes a new loader of the same data and epoch each call)."""
    straight = [b["input_ids"] for b in loader()]
    first, seen = loader(), []
    for batch in first:
        seen.append(batch["input_ids"])
        if len(seen) == stop_after:
            break
    again = loader()
    again.load_state_dict(first.state_dict())
    rest = [b["input_ids"] for b in again]
    assert len(seen) + len(rest) == len(straight)
    assert all(torch.equal(a, b) for a, b in zip(seen + rest, straight, strict=True))
