"""Training straight from a ``datasets`` source too large to prepare: documents tokenized as they stream in.

::

    rows of the source, in its order (datasets.load_dataset(..., streaming=True))
    row 0 .. V-1          | row V, V+1, V+2, ...
    validation (the head) | training: row V + j goes to shard j % S,  S = world_size * workers,
                          |           shard s = rank * workers + worker (a DataLoader worker; 1 with num_workers=0)

    a shard:  encode(row) + [eos], encode(next own row) + [eos], ...   one token stream
              |<---- seq_len + 1 ---->|                               a window; the next starts seq_len later
                                      |<---- seq_len + 1 ---->|       (every token is predicted once)
              batch_size windows make a batch; at the source's end the shard starts its rows again (cycle 1, 2, ...)

Every training row is read by exactly one shard (none twice, none skipped), and a rank's DataLoader yields its
``k``-th batch from its worker ``k % workers`` (after a resume, worker 0 takes the shard whose turn came next). Each batch travels with its shard's position after it: ``(cycle, row,
offset)``, the token where the shard's next window starts. The data module records the position of every batch
that training consumed (not of those the loader prefetched), the checkpoint keeps them, and a resumed shard reads
the source again up to that row (reading, not tokenizing, the rows before it), tokenizes it and starts at that
token: the resumed run sees exactly the batches of the uninterrupted one.
"""

from __future__ import annotations

import importlib.util
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from swapformer.data.errors import DataError
from swapformer.data.shards import is_prepared
from swapformer.data.tokenizer_base import Tokenizer
from swapformer.data.tokenizers import TOKENIZER_KINDS
from swapformer.data.workers import worker_start_method

__all__ = ["StreamWindows", "StreamingLoader", "StreamingSource", "check_streaming_tokenizer", "open_stream"]

EXTRA = "pip install 'swapformer[data]'"
Position = tuple[int, int, int]
"""``(cycle, row, offset)``: a shard's next window starts at token ``offset`` of source row ``row`` (its own
first row at or after ``row`` when ``offset`` is 0) in its ``cycle``-th pass over the source."""


def check_streaming_tokenizer(tokenizer: str | None) -> None:
    """Refuse a tokenizer that must be fitted on the corpus: a stream is not there to fit it on.

    Raises:
        DataError: ``tokenizer`` is None (``char``), ``char``, ``bpe`` or ``bpe:N``; one line naming the fixes.
    """
    named = "char" if tokenizer is None else str(tokenizer)
    if named == "byte" or (named not in TOKENIZER_KINDS and not named.startswith("bpe:")):
        return
    raise DataError(
        f"streaming: true cannot fit tokenizer={named!r}, which is trained on the whole corpus first; run "
        "swapformer prepare SOURCE --tokenizer bpe:N --out DIR and train on DIR, or give a trained tokenizer "
        "(a tokenizer.json folder, a Hugging Face model folder, a .ckpt) or tokenizer: byte."
    )


def open_stream(path: str | None, *, text_column: str) -> Any:
    """``path`` as a ``datasets.IterableDataset`` of its ``train`` rows, checked to have ``text_column``.

    ``path`` is a dataset name (``load_dataset(name, split="train", streaming=True)``), a ``save_to_disk`` folder,
    or ``.jsonl`` / ``.jsonl.gz`` / ``.parquet`` files (a file or a folder of them).

    Raises:
        DataError: ``datasets`` missing (named with the pip command); a source that is no ``datasets`` source
            (plain text, a prepared folder, none); a name ``datasets`` cannot load; no ``text_column``.
    """
    if importlib.util.find_spec("datasets") is None:
        raise DataError(f"streaming: true needs the datasets package: {EXTRA}")
    import datasets

    local = None if path is None else Path(path).expanduser()
    if local is None or (local.exists() and is_prepared(local)):
        what = "not set (the standard library's text)" if local is None else "a folder of swapformer prepare"
        raise _not_a_datasets_source(path, what)
    if not local.exists():
        try:
            stream = datasets.load_dataset(path, split="train", streaming=True)
        except Exception as error:  # the library's errors for a wrong name or no network are many
            first = str(error).splitlines()[0] if str(error) else ""
            raise DataError(
                f"data.path={path} is no file or folder, and datasets could not stream it ({type(error).__name__}: "
                f"{first}); check the path or the dataset name."
            ) from None
    elif local.is_dir() and any((local / f).is_file() for f in ("dataset_info.json", "dataset_dict.json")):
        saved = datasets.load_from_disk(str(local))
        if isinstance(saved, datasets.DatasetDict):
            if "train" not in saved:
                raise DataError(
                    f"data.path={path} has splits {list(saved)} but no 'train'; save a train split."
                )
            saved = saved["train"]
        stream = saved.to_iterable_dataset()
    else:
        builder, files = _data_files(local)
        if builder is None:
            raise _not_a_datasets_source(
                path, "text" if local.is_file() else "a folder without .jsonl or .parquet"
            )
        stream = datasets.load_dataset(
            builder, data_files=[str(f) for f in files], split="train", streaming=True
        )
    _check_column(stream, text_column, path)
    return stream


def _not_a_datasets_source(path: str | None, what: str) -> DataError:
    return DataError(
        f"streaming: true reads a datasets source (a dataset name, a save_to_disk folder, .jsonl or .parquet "
        f"files), but data.path={path} is {what}; drop streaming: true to read it as it is, or give such a source."
    )


def _data_files(local: Path) -> tuple[str | None, list[Path]]:
    kinds = (("json", (".jsonl", ".jsonl.gz")), ("parquet", (".parquet",)))
    for builder, suffixes in kinds:
        if local.is_file():
            if local.name.lower().endswith(suffixes):
                return builder, [local]
            continue
        files = sorted(
            (f for f in local.rglob("*") if f.is_file() and f.name.lower().endswith(suffixes)),
            key=lambda f: f.parts,
        )
        if files:
            return builder, files
    return None, []


def _check_column(stream: Any, column: str, path: str) -> None:
    columns = stream.column_names
    if columns is None:  # JSON lines: the columns are those of the first row
        first = next(iter(stream.take(1)), None)
        if first is None:
            raise DataError(f"data.path={path} holds no rows; give a source with documents.")
        columns = list(first)
    if column not in columns:
        raise DataError(
            f"data.path={path} has no column {column!r}; its columns are {list(columns)}: set data.text_column "
            "to one of them."
        )


def _texts(stream: Any, column: str, path: str) -> Iterator[tuple[int, str]]:
    """``(row, text)`` of every row, empty ones left out (they would be a lone eos)."""
    row = 0
    for batch in stream.select_columns([column]).iter(batch_size=256):
        for text in batch[column]:
            if text is not None and not isinstance(text, str):
                raise DataError(
                    f"data.path={path} row {row}: {column!r} holds a {type(text).__name__}, not text; set "
                    "data.text_column to a text column."
                )
            if text:
                yield row, text
            row += 1


def encode_document(tokenizer: Tokenizer, text: str) -> np.ndarray:
    """The document's ids and the eos that ends it (int64)."""
    return np.asarray([*tokenizer.encode(text), tokenizer.eos_id], dtype=np.int64)


class _Cutter:
    """Cuts consecutive windows of ``seq_len + 1`` tokens, ``seq_len`` apart, out of the documents added."""

    def __init__(self, seq_len: int) -> None:
        self.seq_len = seq_len
        self.pieces: deque[tuple[Position, np.ndarray]] = deque()  # ids of a row from the position on
        self.size = 0

    def add(self, position: Position, ids: np.ndarray) -> None:
        self.pieces.append((position, ids))
        self.size += ids.size

    def windows(self) -> Iterator[np.ndarray]:
        while self.size > self.seq_len:
            window, need = [], self.seq_len + 1
            for _, ids in self.pieces:
                window.append(ids[:need])
                need -= window[-1].size
                if not need:
                    break
            self._drop(self.seq_len)  # the window's last token starts the next one
            yield np.concatenate(window)

    def _drop(self, count: int) -> None:
        self.size -= count
        while count:
            (cycle, row, offset), ids = self.pieces[0]
            if ids.size <= count:
                count -= ids.size
                self.pieces.popleft()
            else:
                self.pieces[0] = ((cycle, row, offset + count), ids[count:])
                count = 0

    def front(self) -> Position:
        """Where the next window starts (there is always a token left after a window)."""
        return self.pieces[0][0]


class StreamWindows(IterableDataset):
    """A rank's share of a streamed source as batches of windows; each DataLoader worker reads its own shard.

    Args:
        stream: The ``datasets.IterableDataset`` (:func:`open_stream`).
        text_column: The column holding a row's text.
        tokenizer: ``Tokenizer.to_dict()`` of the tokenizer (plain values: a worker rebuilds it).
        seq_len: Input length ``L``.
        batch_size: Windows per batch ``N``.
        first_row: The first training row (the rows before it are validation).
        rank: This process's rank; ``world_size``: the number of ranks.
        start: Each shard's position to start from (``{shard: (cycle, row, offset)}``); a shard not in it starts
            at ``(0, first_row, 0)``.
        batches: Batches this rank trained on before (a resumed run): worker ``w`` reads shard
            ``rank * workers + (w + batches) % workers``, so the worker whose turn came next is the first again.
        name: The source's name, for messages.

    Yields:
        ``(batch, (shard, position))``: the batch, the shard that made it and that shard's position after it.

    Shape:
        ``batch["input_ids"]`` and ``batch["labels"]``: ``(N, L)`` long, the labels shifted left by one token.
    """

    def __init__(
        self,
        *,
        stream: Any,
        text_column: str,
        tokenizer: dict[str, Any],
        seq_len: int,
        batch_size: int,
        first_row: int,
        rank: int,
        world_size: int,
        start: dict[int, Position],
        batches: int = 0,
        name: str,
    ) -> None:
        super().__init__()
        self.stream, self.text_column, self.tokenizer = stream, text_column, tokenizer
        self.seq_len, self.batch_size, self.first_row = seq_len, batch_size, first_row
        self.rank, self.world_size, self.start, self.name = rank, world_size, dict(start), name
        self.batches = batches

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], tuple[int, Position]]]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        shard, shards = self.rank * workers + (worker + self.batches) % workers, self.world_size * workers
        tokenizer = Tokenizer.from_dict(self.tokenizer)
        cycle, row, offset = self.start.get(shard, (0, self.first_row, 0))
        cutter, windows = _Cutter(self.seq_len), []
        while True:
            read_any = False
            for index, text in _texts(self.stream, self.text_column, self.name):
                if index < row or (index - self.first_row) % shards != shard:
                    continue
                read_any = True
                skip = offset if index == row else 0
                cutter.add((cycle, index, skip), encode_document(tokenizer, text)[skip:])
                for window in cutter.windows():
                    windows.append(window)
                    if len(windows) == self.batch_size:
                        ids = torch.from_numpy(np.stack(windows))
                        yield {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}, (shard, cutter.front())
                        windows = []
            if not read_any and row == self.first_row:
                raise DataError(
                    f"shard {shard} of {shards} (ranks x workers) got no training document of data.path={self.name}: "
                    "it has fewer training rows than shards; lower data.num_workers or the device count."
                )
            cycle, row, offset = cycle + 1, self.first_row, 0


class StreamingLoader(DataLoader):
    """The ``DataLoader`` of a :class:`StreamWindows`: batches as the workers make them, plus the position of each
    shard after the batches that training consumed (:meth:`batch_trained`), which a checkpoint keeps.

    Args:
        dataset: The :class:`StreamWindows`.
        **kwargs: ``DataLoader`` arguments (``num_workers``, ``worker_init_fn``, ...); the dataset makes the
            batches, so ``batch_size`` is None.
    """

    def __init__(self, dataset: StreamWindows, **kwargs: Any) -> None:
        kwargs["batch_size"] = None
        kwargs.setdefault("multiprocessing_context", worker_start_method(kwargs.get("num_workers", 0)))
        super().__init__(dataset, **kwargs)
        self.positions: dict[int, Position] = dict(dataset.start)
        self.batches = dataset.batches
        self._pending: deque[tuple[int, Position]] = deque()

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        # A generator: nothing starts (no worker, no pending position dropped) until the first batch is asked for,
        # so Lightning's "is it iterable?" probe changes nothing.
        self._pending.clear()
        for batch, (shard, position) in super().__iter__():
            self._pending.append((shard, position))  # handed out, maybe only prefetched: not trained on yet
            yield batch

    def batch_trained(self) -> None:
        """The oldest batch handed out has been trained on: its shard's position moves past it."""
        if self._pending:
            shard, position = self._pending.popleft()
            self.positions[shard] = position
            self.batches += 1


class StreamingSource:
    """What ``CausalLMDataModule(streaming=True)`` reads: the source's head as validation, the rest streamed.

    Args:
        path: A dataset name, a ``save_to_disk`` folder, ``.jsonl`` or ``.parquet`` files.
        text_column: The column holding a row's text.
        val_documents: The first rows of the source held out for validation; training starts after them.

    Raises:
        DataError: As :func:`open_stream`; ``val_documents`` below 1.
    """

    def __init__(self, *, path: str | None, text_column: str, val_documents: int) -> None:
        if isinstance(val_documents, bool) or not isinstance(val_documents, int) or val_documents < 1:
            raise DataError(
                f"val_documents={val_documents!r} is invalid: it must be an integer >= 1 (the first rows of the "
                "stream are held out for validation); use e.g. val_documents: 200."
            )
        self.path, self.text_column, self.val_documents = str(path), text_column, val_documents
        self.stream = open_stream(path, text_column=text_column)
        self.shards: int | None = None
        self.start: dict[int, Position] = {}
        self.batches = 0
        self.loader: StreamingLoader | None = None

    def val_tokens(self, tokenizer: Tokenizer) -> torch.Tensor:
        """The validation rows' ids, each document ending with eos, as one stream (1-D long)."""
        ids = [
            encode_document(tokenizer, text)
            for row, text in _texts(self.stream.take(self.val_documents), self.text_column, self.path)
        ]
        return torch.from_numpy(np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64))

    def train_loader(
        self,
        *,
        tokenizer: Tokenizer,
        seq_len: int,
        batch_size: int,
        num_workers: int,
        rank: int,
        world_size: int,
        worker_init_fn: Any = None,
    ) -> StreamingLoader:
        """This rank's loader, starting where a restored checkpoint's shards stopped.

        Raises:
            DataError: The checkpoint was streamed over another number of shards (devices x workers).
        """
        shards = world_size * max(1, num_workers)
        if self.shards is not None and self.shards != shards:
            raise DataError(
                f"the checkpoint streamed over {self.shards} shard(s) (devices x DataLoader workers), this run over "
                f"{shards} ({world_size} x {max(1, num_workers)}); resume with the checkpoint's devices and "
                "data.num_workers, since each shard's position is where its own documents stopped."
            )
        self.shards = shards
        dataset = StreamWindows(
            stream=self.stream,
            text_column=self.text_column,
            tokenizer=tokenizer.to_dict(),
            seq_len=seq_len,
            batch_size=batch_size,
            first_row=self.val_documents,
            rank=rank,
            world_size=world_size,
            start=self.start,
            batches=self.batches,
            name=self.path,
        )
        self.loader = StreamingLoader(
            dataset, num_workers=num_workers, worker_init_fn=worker_init_fn if num_workers else None
        )
        return self.loader

    def batch_trained(self) -> None:
        if self.loader is not None:
            self.loader.batch_trained()

    def state_dict(self) -> dict[str, Any]:
        """Every shard's position (all ranks', gathered when distributed), as plain values."""
        positions = dict(self.start)
        if self.loader is not None:
            positions.update(self.loader.positions)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, positions)
            positions = {shard: where for rank in gathered for shard, where in rank.items()}
        return {
            "shards": self.shards,
            "batches": self.loader.batches if self.loader is not None else self.batches,
            "first_row": self.val_documents,
            "positions": {int(shard): list(where) for shard, where in positions.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Start every shard where the checkpoint's stopped.

        Raises:
            DataError: The checkpoint held out another number of validation rows.
        """
        if state["first_row"] != self.val_documents:
            raise DataError(
                f"the checkpoint held out the first {state['first_row']} rows for validation, this run "
                f"val_documents={self.val_documents}; resume with val_documents: {state['first_row']}."
            )
        self.shards, self.batches = state["shards"], int(state["batches"])
        self.start = {int(shard): tuple(where) for shard, where in state["positions"].items()}
