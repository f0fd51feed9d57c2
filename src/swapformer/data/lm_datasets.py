"""Fixed-length windows over a token stream, for next-token prediction.

A window of ``seq_len + 1`` tokens gives inputs and labels shifted by one::

    tokens  t0 t1 t2 t3 t4
    inputs  t0 t1 t2 t3       labels[i] is the token after inputs[i]
    labels     t1 t2 t3 t4
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from swapformer.data.errors import DataError

__all__ = ["ConsecutiveWindows", "OffsetWindows", "check_stream_length"]


def check_stream_length(tokens: torch.Tensor, *, seq_len: int, split: str, fix: str) -> None:
    """Fail early when a token stream cannot hold one window of ``seq_len + 1`` tokens.

    Raises:
        DataError: Naming the split, both sizes and ``fix``.
    """
    if tokens.numel() < seq_len + 1:
        raise DataError(
            f"the {split} text has {tokens.numel()} tokens, fewer than seq_len + 1 = {seq_len + 1} needed "
            f"for one window; {fix}"
        )


def _window(tokens: torch.Tensor, start: int, seq_len: int) -> dict[str, torch.Tensor]:
    chunk = tokens[start : start + seq_len + 1].long()
    return {"input_ids": chunk[:-1], "labels": chunk[1:]}


class OffsetWindows(Dataset):
    """Item ``i`` is the window starting at token ``i``; a sampler chooses which offsets to visit.

    Args:
        tokens: 1-D integer tensor, the whole token stream.
        seq_len: Input length ``L``.

    Shape:
        - ``input_ids``: ``(L,)`` long.
        - ``labels``: ``(L,)`` long, ``input_ids`` shifted left by one.
    """

    def __init__(self, *, tokens: torch.Tensor, seq_len: int) -> None:
        check_stream_length(tokens, seq_len=seq_len, split="train", fix="lower seq_len or add text.")
        self.tokens = tokens
        self.seq_len = seq_len

    def __len__(self) -> int:
        return self.tokens.numel() - self.seq_len

    def __getitem__(self, offset: int) -> dict[str, torch.Tensor]:
        if not 0 <= offset < len(self):
            raise IndexError(f"offset {offset} out of range [0, {len(self)})")
        return _window(self.tokens, offset, self.seq_len)


class ConsecutiveWindows(Dataset):
    """Non-overlapping windows ``[i * L, i * L + L + 1)``: every token is predicted once, no randomness.

    Args:
        tokens: 1-D integer tensor with at least ``seq_len + 1`` tokens.
        seq_len: Input length ``L``.

    Shape:
        - ``input_ids``: ``(L,)`` long.
        - ``labels``: ``(L,)`` long.
    """

    def __init__(self, *, tokens: torch.Tensor, seq_len: int) -> None:
        check_stream_length(tokens, seq_len=seq_len, split="validation", fix="lower seq_len or add text.")
        self.tokens = tokens
        self.seq_len = seq_len

    def __len__(self) -> int:
        return (self.tokens.numel() - 1) // self.seq_len

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range [0, {len(self)})")
        return _window(self.tokens, index * self.seq_len, self.seq_len)
