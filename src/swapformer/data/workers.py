"""How DataLoader workers start, one choice for every loader (the windows, the pairs, the stream)."""

from __future__ import annotations

import multiprocessing
import sys

__all__ = ["worker_start_method"]


def worker_start_method(num_workers: int) -> str | None:
    """``"fork"`` when there are workers and the platform forks safely; else None, the process's default.

    Forked also where the process's default is spawn: inside a ``ddp_spawn`` rank. A spawned worker imports
    torch, Lightning (and datasets, for a stream) again before its first batch, and at exit finalizes all of it,
    which on a busy machine overran the DataLoader's join timeouts and held a rank's shutdown for minutes. Not on
    macOS, where fork is offered but CPython made spawn the default because system libraries crash in forked
    children.

    Args:
        num_workers: the DataLoader's worker processes; 0 loads in the main process and starts none.

    Returns:
        The DataLoader's ``multiprocessing_context``.
    """
    if num_workers and sys.platform != "darwin" and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return None
