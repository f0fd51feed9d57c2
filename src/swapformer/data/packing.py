"""Packing: fixed-length rows filled with whole documents, each ending with eos, instead of windows that cut
documents anywhere or one document per padded row.

::

    stream   a a a </s> b b </s> c c c c c </s> d </s> ...          (a prepared folder: every document ends with eos)
    row 0    a a a </s> b b </s> <pad>                               seq_len = 8: c's 6 tokens do not fit any more
    ids      0 0 0 0    1 1 1    2
    labels   a a </s> - b </s> - -                                   - = ignored: no token predicts across documents
    row 1    c c c c c </s> d </s>

Rows are cut from the stream in order (each row is one contiguous slice of it), so a row is a pair of offsets and
the packing of a corpus is a function of its tokens and ``seq_len`` alone: a sampler whose order depends only on
``(seed, epoch)`` replays the same batches after a resume (:mod:`swapformer.data.resumable`). A document longer
than ``seq_len`` is cut into rows of ``seq_len`` tokens; its last piece starts a row that later documents fill.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["PackedRows", "pack_rows"]

_SCAN = 1 << 22
"""Tokens read at a time while looking for document ends (a memory-mapped corpus is never read whole)."""


def document_ends(tokens: Any, *, eos_id: int) -> np.ndarray:
    """Offsets just after each eos of ``tokens`` (a 1-D tensor or a :class:`~swapformer.data.shards.ShardStream`),
    plus the stream's end when its last document has no eos."""
    total = int(tokens.numel())
    ends = []
    for start in range(0, total, _SCAN):
        chunk = tokens[start : min(start + _SCAN, total)]
        ends.append(torch.nonzero(chunk == eos_id).flatten().numpy() + start + 1)
    found = np.concatenate(ends) if ends else np.zeros(0, dtype=np.int64)
    if not found.size or found[-1] != total:
        found = np.append(found, total)
    return found.astype(np.int64)


def pack_rows(tokens: Any, *, eos_id: int, seq_len: int) -> np.ndarray:
    """``(R, 2)`` start and end offsets of each packed row: whole documents, in order, as many as fit in
    ``seq_len`` tokens (next-fit); a document longer than ``seq_len`` fills rows of its own first.

    Shape:
        output ``(R, 2)`` int64, ``0 < end - start <= seq_len``.
    """
    rows: list[tuple[int, int]] = []
    row_start = start = 0
    for end in document_ends(tokens, eos_id=eos_id).tolist():
        if end - row_start > seq_len:  # the document does not fit in the row: close it
            if row_start < start:
                rows.append((row_start, start))
                row_start = start
            while end - row_start > seq_len:  # longer than a row: full rows of it
                rows.append((row_start, row_start + seq_len))
                row_start += seq_len
        start = end
    if row_start < start:
        rows.append((row_start, start))
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


class PackedRows(Dataset):
    """Item ``i`` is packed row ``i`` of :func:`pack_rows`, padded to ``seq_len``.

    Args:
        tokens: 1-D integer tensor or :class:`~swapformer.data.shards.ShardStream`, documents ending with eos.
        rows: ``pack_rows(tokens, ...)``.
        seq_len: Row length ``L``.
        eos_id: The id that ends each document.
        pad_id: Fills the rest of a row (masked out by ``attention_mask``).
        ignore_id: The label of tokens nothing is asked of (the loss ignores it: the tokenizer's pad id, or -100).
        document_ids: Put each token's document number in the item (``document_mask: true``).

    Shape:
        - ``input_ids``: ``(L,)`` long, whole documents then ``pad_id``.
        - ``labels``: ``(L,)`` long, the next token of the same document; ``pad_id`` at each document's last
          token (nothing follows it in the document; a document cut at a row's end included) and at padding:
          ``ignore_id``.
        - ``attention_mask``: ``(L,)`` bool, True = real token.
        - ``document_ids``: ``(L,)`` long, 0, 1, ... per document; the padding has a number of its own.
    """

    def __init__(
        self,
        *,
        tokens: Any,
        rows: np.ndarray,
        seq_len: int,
        eos_id: int,
        pad_id: int,
        ignore_id: int,
        document_ids: bool,
    ) -> None:
        self.tokens, self.rows, self.seq_len = tokens, rows, seq_len
        self.eos_id, self.pad_id, self.ignore_id, self.document_ids = eos_id, pad_id, ignore_id, document_ids

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} out of range [0, {len(self)})")
        start, end = (int(v) for v in self.rows[index])
        row = self.tokens[start:end].long()  # (n,)
        length = row.numel()
        ends = row == self.eos_id
        document = ends.long().cumsum(0) - ends.long()  # documents seen before each token
        padding = self.seq_len - length
        input_ids = torch.cat([row, row.new_full((padding,), self.pad_id)])
        documents = torch.cat([document, document.new_full((padding,), int(document[-1]) + 1)])
        same = documents[1:] == documents[:-1]
        labels = torch.where(same, input_ids[1:], self.ignore_id)
        labels = torch.cat([labels, labels.new_full((1,), self.ignore_id)])
        labels[length:] = self.ignore_id
        item = {
            "input_ids": input_ids,
            "labels": labels,
            "attention_mask": torch.arange(self.seq_len) < length,
        }
        if self.document_ids:
            item["document_ids"] = documents
        return item
