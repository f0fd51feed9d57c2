"""Token shards: the folder ``swapformer prepare`` writes and the data modules read by memory map.

::

    DIR/
      train-00000.bin  train-00001.bin ...   raw little-endian ids, uint16 or uint32 (nanoGPT's format:
      val-00000.bin                          numpy.memmap(path, dtype="<u2", mode="r") reads one)
      tokenizer.json                         the tokenizer, for any Hugging Face tokenizers reader
      tokenizer.swapformer.json              the same tokenizer exactly as swapformer rebuilds it
      meta.json                              what the shards hold (below)

``meta.json``: ``format`` (1), ``tokenizer`` (the ``--tokenizer`` given to prepare), ``tokenizer_kind``,
``vocab_size``, ``dtype`` (``"uint16"`` / ``"uint32"``), ``eos_id``, ``tokens`` and ``documents`` per split,
``shards`` (per split, a list of ``{"file", "tokens"}``), ``source`` and ``source_hash``, ``text_column``,
``val_fraction``. Every document ends with ``eos_id``; a split's shards, read in order, are one token stream.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from swapformer.data.errors import DataError
from swapformer.data.tokenizer_base import Tokenizer

__all__ = [
    "DTYPES",
    "META",
    "SPLITS",
    "TOKENIZER_FILE",
    "PreparedDir",
    "ShardStream",
    "ShardWriter",
    "dtype_for",
    "is_prepared",
    "same_tokenizer",
]

META = "meta.json"
TOKENIZER_FILE = "tokenizer.swapformer.json"
SPLITS = ("train", "val")
DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
FORMAT = 1
_PROBE = 1 << 16
"""Ids read at each end of a shard to check they fit the vocabulary (a shard of another dtype or tokenizer)."""


def dtype_for(vocab_size: int) -> str:
    """``"uint16"`` when every id of a ``vocab_size`` vocabulary fits in 16 bits, else ``"uint32"``."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def is_prepared(path: str | Path | None) -> bool:
    """Whether ``path`` is a folder written by ``swapformer prepare`` (it has a ``meta.json``)."""
    return path is not None and Path(path).is_dir() and (Path(path) / META).is_file()


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}.bin"


class ShardStream:
    """A split's shards as one 1-D token stream, read by memory map: slicing reads only the pages it touches.

    Behaves as much of a 1-D tensor as the window datasets need: ``numel()``, ``len()`` and ``stream[a:b]``
    (a long tensor, copied out of the map; a slice may run across shards). Pickled for a DataLoader worker it
    carries the file names only, and the worker maps the files itself: no process holds the corpus in memory.

    Args:
        files: The shard files, in stream order.
        tokens: Each shard's token count.
        dtype: ``"uint16"`` or ``"uint32"``.
    """

    def __init__(self, *, files: list[Path], tokens: list[int], dtype: str) -> None:
        self.files, self.tokens, self.dtype = [Path(f) for f in files], list(tokens), dtype
        self._starts = np.cumsum([0, *self.tokens])
        self._nonempty = [
            index for index, count in enumerate(self.tokens) if count
        ]  # a 0-byte file cannot map
        self._maps: list[np.memmap] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": None}  # a memmap pickles as its whole contents

    def _mapped(self) -> list[np.memmap]:
        if self._maps is None:
            self._maps = [
                np.memmap(file, dtype=DTYPES[self.dtype], mode="r", shape=(count,))
                for file, count in zip(self.files, self.tokens)
                if count
            ]
        return self._maps

    def numel(self) -> int:
        return int(self._starts[-1])

    def __len__(self) -> int:
        return self.numel()

    def numpy(self, start: int, stop: int) -> np.ndarray:
        """Ids ``[start, stop)`` as a new int64 array."""
        start, stop = max(0, start), min(stop, self.numel())
        maps = self._mapped()
        pieces = []
        for shard, index in zip(maps, self._nonempty):
            first, last = int(self._starts[index]), int(self._starts[index + 1])
            if last <= start or first >= stop:
                continue
            pieces.append(shard[max(start, first) - first : min(stop, last) - first])
        if len(pieces) == 1:
            return pieces[0].astype(np.int64)
        return np.concatenate(pieces).astype(np.int64) if pieces else np.zeros(0, dtype=np.int64)

    def __getitem__(self, index: slice) -> torch.Tensor:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("a ShardStream is read by contiguous slices: stream[start:stop]")
        start, stop, _ = index.indices(self.numel())
        return torch.from_numpy(self.numpy(start, stop))

    def long(self) -> torch.Tensor:
        """The whole stream as one tensor (for small streams and tests; it reads everything)."""
        return self[:]

    def __repr__(self) -> str:
        return f"ShardStream({len(self.files)} shard(s), {self.numel()} {self.dtype} tokens)"


class ShardWriter:
    """Appends a split's ids to its shards, a new file every ``shard_tokens``; resumes from recorded shards
    (``[{"file", "tokens"}]``, as ``meta.json`` lists them), cutting each file back to its recorded length and
    removing later ones.

    Each write opens its file to append (once per unit of work): nothing is buffered between writes, so the
    recorded lengths in ``prepare.state.json`` are always on disk.
    """

    def __init__(self, out: Path, split: str, dtype: str, shard_tokens: int, shards: list[dict]) -> None:
        self.out, self.split, self.shard_tokens = out, split, shard_tokens
        self.shards = [dict(shard) for shard in shards]
        itemsize = DTYPES[dtype].itemsize
        for shard in self.shards:  # cut back what a killed run wrote after its last record
            with open(out / shard["file"], "r+b") as handle:
                handle.truncate(shard["tokens"] * itemsize)
        listed = {shard["file"] for shard in self.shards}
        for stray in out.glob(f"{split}-*.bin"):
            if stray.name not in listed:
                stray.unlink()
        self.total = sum(shard["tokens"] for shard in self.shards)

    def write(self, ids: np.ndarray) -> None:
        while ids.size:
            if not self.shards or self.shards[-1]["tokens"] == self.shard_tokens:
                self._next_shard()
            room = self.shard_tokens - self.shards[-1]["tokens"]
            part, ids = ids[:room], ids[room:]
            with open(self.out / self.shards[-1]["file"], "ab") as handle:
                handle.write(part.tobytes())
            self.shards[-1]["tokens"] += int(part.size)
            self.total += int(part.size)

    def _next_shard(self) -> None:
        self.shards.append({"file": shard_name(self.split, len(self.shards)), "tokens": 0})
        (self.out / self.shards[-1]["file"]).write_bytes(b"")

    def close(self) -> None:
        if not self.shards:  # a split with no tokens still gets its (empty) first shard
            self._next_shard()


class PreparedDir:
    """A folder written by ``swapformer prepare``, checked against its ``meta.json`` when opened.

    Args:
        path: The folder.

    Raises:
        DataError: No or unreadable ``meta.json``; a shard listed there missing, of another size (truncated,
            another dtype) or not listed; ids beyond the vocabulary; a tokenizer whose vocabulary does not fit
            the dtype; a ``meta.json`` whose totals disagree with its shards. One line each, naming the file
            and the fix.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.meta = read_meta(self.path)
        meta, where = self.meta, self.path / META
        self.dtype = meta["dtype"]
        if self.dtype not in DTYPES:
            raise DataError(f"{where}: dtype={self.dtype!r} is not one of {list(DTYPES)}; prepare DIR again.")
        self.vocab_size = int(meta["vocab_size"])
        limit = np.iinfo(DTYPES[self.dtype]).max + 1
        if self.vocab_size > limit:
            raise DataError(
                f"{where}: a vocabulary of {self.vocab_size} ids does not fit dtype {self.dtype} (at most "
                f"{limit}); prepare the folder again, which picks uint32 for it."
            )
        listed = {s["file"] for split in SPLITS for s in meta["shards"][split]}
        stray = sorted(p.name for p in self.path.glob("*.bin") if p.name not in listed)
        if stray:
            raise DataError(
                f"{self.path} holds shard(s) {stray[:3]} that {META} does not list: meta.json does not match its "
                f"shards; remove them or prepare the folder again."
            )
        self.streams = {split: self._stream(split) for split in SPLITS}

    def _stream(self, split: str) -> ShardStream:
        meta, itemsize = self.meta, DTYPES[self.dtype].itemsize
        shards = meta["shards"][split]
        files, counts = [self.path / s["file"] for s in shards], [int(s["tokens"]) for s in shards]
        if sum(counts) != int(meta["tokens"][split]):
            raise DataError(
                f"{self.path / META} says the {split} split has {meta['tokens'][split]} tokens but its shards "
                f"list {sum(counts)}: meta.json does not match its shards; prepare the folder again."
            )
        for file, count in zip(files, counts):
            if not file.is_file():
                raise DataError(
                    f"{file} is missing ({META} lists it); copy the whole folder, or prepare it again."
                )
            size = file.stat().st_size
            if size != count * itemsize:
                other = "uint32" if self.dtype == "uint16" else "uint16"
                hint = (
                    f" (it looks written as {other})"
                    if size == count * DTYPES[other].itemsize
                    else " (truncated, or written by something else)"
                )
                raise DataError(
                    f"{file} has {size} bytes but {META} says {count} {self.dtype} tokens = "
                    f"{count * itemsize} bytes{hint}; prepare the folder again."
                )
        stream = ShardStream(files=files, tokens=counts, dtype=self.dtype)
        for file, start, count in zip(files, stream._starts, counts):
            for a, b in (
                (start, start + min(count, _PROBE)),
                (start + max(0, count - _PROBE), start + count),
            ):
                ids = stream.numpy(int(a), int(b))
                if ids.size and int(ids.max()) >= self.vocab_size:
                    raise DataError(
                        f"{file} holds id {int(ids.max())}, beyond the tokenizer's {self.vocab_size} ids: the shard "
                        f"is not {self.dtype} ids of this tokenizer; prepare the folder again."
                    )
        return stream

    def tokenizer(self) -> Tokenizer:
        """The tokenizer the shards were written with."""
        from swapformer.data.cache import load_tokenizer_file

        file = self.path / TOKENIZER_FILE
        if not file.is_file():
            raise DataError(f"{file} is missing; copy the whole folder, or prepare it again.")
        tokenizer = load_tokenizer_file(file)
        if tokenizer.vocab_size != self.vocab_size:
            raise DataError(
                f"{file} has {tokenizer.vocab_size} ids but {self.path / META} says vocab_size={self.vocab_size}: "
                "meta.json does not match the folder; prepare it again."
            )
        return tokenizer


def same_tokenizer(first: Tokenizer, second: Tokenizer) -> bool:
    """Whether both give the same ids: equal, or the same ``tokenizer.json`` and special ids (a fitted BPE and
    the Hugging Face folder ``swapformer export`` wrote of it)."""
    if first == second:
        return True
    roles = ("pad_id", "bos_id", "eos_id", "unk_id")
    if any(getattr(first, role) != getattr(second, role) for role in roles):
        return False
    return json.loads(first.to_hf_json()) == json.loads(second.to_hf_json())


_REQUIRED = {
    "format",
    "tokenizer",
    "vocab_size",
    "dtype",
    "eos_id",
    "tokens",
    "documents",
    "shards",
    "source",
}


def read_meta(path: Path) -> dict[str, Any]:
    """``path/meta.json``, checked for the keys a reader needs.

    Raises:
        DataError: No such file, not JSON, or missing keys.
    """
    file = Path(path) / META
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} has no {META}: it is not a folder written by swapformer prepare.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{file} is not valid JSON ({error}); prepare the folder again.") from None
    missing = sorted(_REQUIRED - set(meta)) if isinstance(meta, dict) else sorted(_REQUIRED)
    if missing:
        raise DataError(f"{file} lacks {missing}: it was not written by swapformer prepare; prepare again.")
    for key in ("shards", "tokens"):
        if not isinstance(meta[key], dict) or set(SPLITS) - set(meta[key]):
            raise DataError(f"{file}: {key} must give both splits {list(SPLITS)}; prepare the folder again.")
    return meta
