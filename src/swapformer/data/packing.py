"""Packing: fixed-length rows filled with whole documents, each ending with eos, instead of windows that cut
documents anywhere or one document per padded row.

::

    stream   a a a </s> b b </s> c c c c c </s> d </s> ...          (a prepared folder: every document ends with eos)
    row 0    a a a </s> b b </s> <pad>                               seq_len = 8: c's 6 tokens do not fit any more
    ids      0 0 0 0    1 1 1    2
    labels   a a </s> - b </s> - -                                   - = ignored: no token predicts across documents
    row 1    c c c c c </s> d </s>

Two ways to choose a row's documents, both a function of the tokens and ``seq_len`` alone, computed once in
``setup``: a sampler whose order depends only on ``(seed, epoch)`` then replays the same batches after a resume
(:mod:`swapformer.data.resumable`), in every process alike.

- ``next_fit`` (:func:`pack_rows`): rows cut from the stream in order, each row one contiguous slice of it; a
  document that does not fit closes the row. Documents of 20-400 tokens fill about 85% of 1024-token rows.
- ``best_fit`` (:func:`pack_best_fit`): best-fit decreasing over windows of the stream of
  :data:`BEST_FIT_WINDOW` rows' worth of tokens: the window's documents, longest first, each go to the open row
  with the least room that holds it, or start a row. The same documents fill about 99% of the rows; a row's
  documents come from one window (a bounded stretch of the stream) and keep their stream order within it.

A document longer than ``seq_len`` is cut into rows of ``seq_len`` tokens; its last piece (ending with its eos) is
packed like a document: next-fit starts a row with it, best-fit places it as any other.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from swapformer.data.errors import DataError

__all__ = [
    "BEST_FIT_WINDOW",
    "PACKINGS",
    "PackedRows",
    "Packing",
    "check_packing",
    "pack_best_fit",
    "pack_documents",
    "pack_rows",
]

_SCAN = 1 << 22
"""Tokens read at a time while looking for document ends (a memory-mapped corpus is never read whole)."""

BEST_FIT_WINDOW = 256
"""Rows' worth of the stream (``BEST_FIT_WINDOW * seq_len`` tokens) whose documents best-fit packs together:
enough to fill ~99% of the slots, few enough that a row's documents lie close together in the stream."""

PACKINGS = ("best_fit", "next_fit")
"""The packings ``pack`` names; ``pack: true`` is the first."""


@dataclass(frozen=True)
class Packing:
    """Rows of pieces of a token stream: row ``r`` is ``spans[offsets[r]:offsets[r + 1]]`` read one after another.

    Shape:
        - ``spans``: ``(P, 2)`` int64 start and end offsets in the stream, each a whole document or a piece of
          one longer than a row; a next-fit row is one span that may hold several documents.
        - ``offsets``: ``(R + 1,)`` int64, ``offsets[0] == 0`` and ``offsets[-1] == P``.
    """

    spans: np.ndarray
    offsets: np.ndarray

    @classmethod
    def of_slices(cls, rows: np.ndarray) -> Packing:
        """The packing whose row ``r`` is the slice ``rows[r]`` (:func:`pack_rows`)."""
        return cls(spans=np.asarray(rows, dtype=np.int64).reshape(-1, 2), offsets=np.arange(len(rows) + 1))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, index: int) -> np.ndarray:
        """``(k, 2)`` the spans of row ``index``."""
        return self.spans[self.offsets[index] : self.offsets[index + 1]]

    def lengths(self) -> np.ndarray:
        """``(R,)`` tokens in each row."""
        sizes = np.concatenate([[0], np.cumsum(self.spans[:, 1] - self.spans[:, 0])])
        return sizes[self.offsets[1:]] - sizes[self.offsets[:-1]]

    def fill(self, seq_len: int) -> float:
        """The share of the rows' ``R * seq_len`` slots that hold tokens (the rest is padding)."""
        return float(self.lengths().sum()) / max(1, len(self) * seq_len)


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


def pack_best_fit(tokens: Any, *, eos_id: int, seq_len: int, window: int = BEST_FIT_WINDOW) -> Packing:
    """Rows of whole documents chosen by best-fit decreasing over windows of ``window * seq_len`` tokens.

    A document belongs to the window it starts in. Within a window the documents (and the last pieces of those
    longer than ``seq_len``, whose full rows come first) go longest first, ties in stream order, to the open row
    with the least room left that holds them (the earliest such row on a tie), or start a new row. Rows are
    ordered by their first token, and a row's spans by their place in the stream.

    Shape:
        ``spans`` ``(P, 2)``: every document (or piece) once; rows of at most ``seq_len`` tokens.
    """
    ends = document_ends(tokens, eos_id=eos_id)
    starts = np.concatenate([np.zeros(1, dtype=np.int64), ends[:-1]])
    starts, ends = starts[ends > starts], ends[ends > starts]  # an empty stream has one empty "document"
    windows = starts // (window * seq_len)
    bounds = [0, *(np.flatnonzero(np.diff(windows)) + 1).tolist(), len(ends)]
    spans, offsets = [], [np.zeros(1, dtype=np.int64)]
    for first, last in pairwise(bounds):
        rows = _best_fit_window(starts[first:last], ends[first:last], seq_len)
        spans.append(rows.spans)
        offsets.append(rows.offsets[1:] + offsets[-1][-1])
    return Packing(spans=np.concatenate(spans).reshape(-1, 2), offsets=np.concatenate(offsets))


def _best_fit_window(starts: np.ndarray, ends: np.ndarray, seq_len: int) -> Packing:
    full = (ends - starts - 1) // seq_len  # rows of seq_len tokens before a long document's last piece
    cuts = starts + full * seq_len
    long_rows = np.repeat(starts, full) + seq_len * _ranges(full)  # (F,) starts of the full rows
    lengths = (ends - cuts).tolist()
    # Open rows as sorted keys room * n + row: the first key >= length * n is the row with the least room that
    # holds the piece (the earliest on a tie); n bounds the row numbers.
    n = len(starts) + 1
    open_rows: list[int] = []
    row_of = np.empty(len(starts), dtype=np.int64)
    made = 0
    for piece in np.argsort(-(ends - cuts), kind="stable").tolist():
        length = lengths[piece]
        place = bisect_left(open_rows, length * n)
        if place == len(open_rows):
            row, room = made, seq_len - length
            made += 1
        else:
            key = open_rows.pop(place)
            row, room = key % n, key // n - length
        row_of[piece] = row
        if room:
            insort(open_rows, room * n + row)
    # every span with the row it is in: the full rows of long documents are rows of their own
    span_starts = np.concatenate([long_rows, cuts])
    span_ends = np.concatenate([long_rows + seq_len, ends])
    span_rows = np.concatenate([made + np.arange(len(long_rows)), row_of])
    order = np.lexsort((span_starts, span_rows))
    span_starts, span_ends, span_rows = span_starts[order], span_ends[order], span_rows[order]
    counts = np.bincount(span_rows, minlength=made + len(long_rows))
    firsts = np.cumsum(counts) - counts
    by_start = np.argsort(span_starts[firsts], kind="stable")  # rows in the order of their first token
    taken = np.repeat(firsts[by_start], counts[by_start]) + _ranges(counts[by_start])
    return Packing(
        spans=np.stack([span_starts[taken], span_ends[taken]], axis=1),
        offsets=np.concatenate([[0], np.cumsum(counts[by_start])]).astype(np.int64),
    )


def _ranges(counts: np.ndarray) -> np.ndarray:
    """``concat(arange(c) for c in counts)``."""
    total = int(counts.sum())
    return np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)


def pack_documents(tokens: Any, *, eos_id: int, seq_len: int, packing: str = "best_fit") -> Packing:
    """The rows of ``packing`` (one of :data:`PACKINGS`) over ``tokens``."""
    if packing == "next_fit":
        return Packing.of_slices(pack_rows(tokens, eos_id=eos_id, seq_len=seq_len))
    if packing == "best_fit":
        return pack_best_fit(tokens, eos_id=eos_id, seq_len=seq_len)
    raise ValueError(f"packing={packing!r} is not one of {', '.join(PACKINGS)}")


class PackedRows(Dataset):
    """Item ``i`` is packed row ``i``, its spans one after another, padded to ``seq_len``.

    Args:
        tokens: 1-D integer tensor or :class:`~swapformer.data.shards.ShardStream`, documents ending with eos.
        rows: The rows: :func:`pack_documents` of ``tokens``.
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
        rows: Packing,
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
        spans = self.rows.row(index).tolist()
        row = torch.cat([self.tokens[start:end].long() for start, end in spans])  # (n,)
        length = row.numel()
        # a document starts at each span and after each eos (a next-fit span holds several documents)
        starts = torch.zeros(length, dtype=torch.bool)
        starts[np.cumsum([0] + [end - start for start, end in spans[:-1]]).tolist()] = True
        starts[1:] |= row[:-1] == self.eos_id
        document = starts.long().cumsum(0) - 1  # (n,) 0, 1, ... per document
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


def check_packing(
    pack: bool | str, document_mask: bool | None, prepared: bool, path: str | None, *, streaming: bool = False
) -> None:
    """Refuse ``document_mask`` without ``pack``, and ``pack`` of a stream or of a corpus without document ends.

    Raises:
        DataError: one line naming the value and the fix.
    """
    if not isinstance(pack, bool) and pack not in PACKINGS:
        raise DataError(
            f"pack={pack!r} is not a packing; use pack: true (best_fit: the fullest rows), pack: next_fit "
            "(rows cut from the corpus in order) or pack: false."
        )
    if document_mask is not None and not isinstance(document_mask, bool):
        raise DataError(f"document_mask={document_mask!r} must be true, false or null (true with pack).")
    if document_mask and not pack:
        raise DataError(
            "document_mask: true needs pack: true (document masks separate the documents of packed rows); "
            "add pack: true, or drop document_mask."
        )
    if pack and streaming:
        raise DataError(
            "pack: true with streaming: true is not supported: packing reads a prepared folder's documents; "
            "drop pack to stream windows, or run swapformer prepare and pack the prepared folder."
        )
    if pack and not prepared:
        raise DataError(
            f"pack: true needs a corpus of documents, but data.path={path} is plain text without document ends; "
            "run swapformer prepare on it and give the prepared folder (every document ends with eos)."
        )
