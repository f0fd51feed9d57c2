"""Where ``swapformer prepare`` reads documents from: text files, JSON lines, Parquet, ``datasets``.

Each source yields its documents in a fixed order and has a content hash, so that a prepared folder can say
what it was made from and a second ``prepare`` into it can tell the same source from another one.

===========================================  =============================================  ====================
SOURCE                                       one document is                                needs
===========================================  =============================================  ====================
a text file, or a folder of ``*.txt``        a file (``.gz`` read too)                      -
a ``.jsonl`` file, or a folder of them       a line's ``text_column``                       -
a ``.parquet`` file, or a folder of them     a row's ``text_column``                        ``pyarrow``
a folder written by ``save_to_disk``         a row's ``text_column`` (the ``train`` split)  ``datasets``
a dataset name (``user/corpus``)             a row's ``text_column`` (the ``train`` split)  ``datasets``
===========================================  =============================================  ====================
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from swapformer.data.errors import DataError
from swapformer.data.files import read_text_file

__all__ = ["Source", "open_source"]

EXTRA = "pip install 'swapformer[data]'"


class Source:
    """Documents read in a fixed order.

    Attributes:
        name: What the user gave (a path or a dataset name), as ``meta.json`` records it.
        kind: ``"text"``, ``"jsonl"``, ``"parquet"``, ``"datasets"``.
    """

    def __init__(self, *, name: str, kind: str, files: list[Path], text_column: str) -> None:
        self.name, self.kind, self.files, self.text_column = name, kind, files, text_column

    def content_hash(self) -> str:
        """BLAKE2b of the files' names (relative to the source) and bytes, in order."""
        h = hashlib.blake2b(digest_size=16)
        root = Path(self.name)
        for file in self.files:
            relative = file.relative_to(root).as_posix() if root.is_dir() else file.name
            h.update(relative.encode() + b"\0")
            with open(file, "rb") as handle:
                while block := handle.read(1 << 22):
                    h.update(block)
            h.update(b"\0")
        return h.hexdigest()

    def documents(self) -> Iterator[str]:
        """The documents' texts, in order; empty ones are skipped (they would be a lone eos)."""
        for file in self.files:
            for text in self._texts(file):
                if text:
                    yield text

    def count(self, *, limit: int) -> int:
        """Non-empty documents, counted up to ``limit`` (enough to decide how to split train and validation)."""
        return sum(1 for _ in itertools.islice(self.documents(), limit))

    def _texts(self, file: Path) -> Iterator[str]:
        if self.kind == "text":
            yield read_text_file(file)
        elif self.kind == "jsonl":
            yield from _jsonl_texts(file, self.text_column)
        else:
            yield from _parquet_texts(file, self.text_column)


class DatasetSource(Source):
    """A ``datasets.Dataset`` (``load_from_disk`` or ``load_dataset``): rows' ``text_column``."""

    def __init__(self, *, name: str, dataset: Any, text_column: str) -> None:
        super().__init__(name=name, kind="datasets", files=[], text_column=text_column)
        _check_column(text_column, list(dataset.column_names), name)
        self.dataset = dataset

    def content_hash(self) -> str:
        fingerprint = getattr(self.dataset, "_fingerprint", None) or str(len(self.dataset))
        return hashlib.blake2b(f"{self.name}\0{fingerprint}".encode(), digest_size=16).hexdigest()

    def documents(self) -> Iterator[str]:
        for batch in self.dataset.select_columns([self.text_column]).iter(batch_size=1000):
            yield from (text for text in batch[self.text_column] if text)

    def count(self, *, limit: int) -> int:
        return min(len(self.dataset), limit)


def open_source(source: str, *, text_column: str = "text", glob: str = "*.txt") -> Source:
    """The documents ``source`` names (see the module's table).

    Raises:
        DataError: Nothing there and not a loadable dataset name; a folder with no files to read; a package
            the source needs is missing (named with the pip command); no ``text_column`` in a record.
    """
    path = Path(source).expanduser()
    if not path.exists():
        return _dataset_by_name(source, text_column)
    if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        return _saved_dataset(path, source, text_column)
    if path.is_file():
        files = [path]
    else:
        for kind, pattern in (("jsonl", "*.jsonl"), ("jsonl", "*.jsonl.gz"), ("parquet", "*.parquet")):
            files = _files(path, pattern)
            if files:
                return _checked(Source(name=source, kind=kind, files=files, text_column=text_column))
        files = _files(path, glob)
        if not files:
            raise DataError(
                f"SOURCE {source} holds no {glob}, *.jsonl or *.parquet files; point at the corpus, or pass "
                "--glob for other text files."
            )
        return Source(name=source, kind="text", files=files, text_column=text_column)
    name = path.name.lower()
    kind = (
        "jsonl"
        if name.endswith((".jsonl", ".jsonl.gz"))
        else "parquet"
        if name.endswith(".parquet")
        else "text"
    )
    return _checked(Source(name=source, kind=kind, files=files, text_column=text_column))


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted((f for f in root.rglob(pattern) if f.is_file()), key=lambda f: f.parts)


def _checked(source: Source) -> Source:
    if source.kind == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise DataError(f"reading {source.name} (Parquet) needs pyarrow: {EXTRA}")
    if source.kind in ("jsonl", "parquet"):
        next(source.documents(), None)  # a missing text column is said before anything else happens
    return source


def _check_column(column: str, columns: list[str], where: str) -> None:
    if column not in columns:
        raise DataError(
            f"{where} has no column {column!r}; its columns are {columns}: pass --text_column with one of them."
        )


def _jsonl_texts(file: Path, column: str) -> Iterator[str]:
    opener = gzip.open if file.name.endswith(".gz") else open
    with opener(file, "rt", encoding="utf-8") as handle:
        try:
            yield from _records(file, handle, column)
        except UnicodeDecodeError as error:
            raise DataError(
                f"{file} is not valid UTF-8 (byte {error.start}); re-encode it as UTF-8."
            ) from None


def _records(file: Path, handle: Any, column: str) -> Iterator[str]:
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(
                f"{file} line {number} is not JSON ({error.msg}); fix or remove the line."
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"{file} line {number} is not a JSON object; each line must be {{{column!r}: ...}}."
            )
        if column not in record:
            _check_column(column, list(record), f"{file} line {number}")
        text = record[column]
        if text is not None and not isinstance(text, str):
            raise DataError(
                f"{file} line {number}: {column!r} holds a {type(text).__name__}, not text; pass --text_column "
                "naming a text column."
            )
        yield text or ""


def _parquet_texts(file: Path, column: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(file)
    _check_column(column, list(table.schema_arrow.names), str(file))
    for batch in table.iter_batches(columns=[column], batch_size=1000):
        yield from (text or "" for text in batch.column(0).to_pylist())


def _need_datasets(what: str) -> Any:
    if importlib.util.find_spec("datasets") is None:
        raise DataError(f"{what} needs the datasets package: {EXTRA}")
    import datasets

    return datasets


def _saved_dataset(path: Path, source: str, text_column: str) -> Source:
    datasets = _need_datasets(f"reading {source} (a datasets save_to_disk folder)")
    dataset = datasets.load_from_disk(str(path))
    if isinstance(dataset, datasets.DatasetDict):
        if "train" not in dataset:
            raise DataError(f"{source} has splits {list(dataset)} but no 'train'; save the split to prepare.")
        dataset = dataset["train"]
    return DatasetSource(name=source, dataset=dataset, text_column=text_column)


def _dataset_by_name(source: str, text_column: str) -> Source:
    datasets = _need_datasets(f"SOURCE {source} is no file or folder; loading it as a dataset name")
    try:
        dataset = datasets.load_dataset(source, split="train")
    except Exception as error:  # the library's errors for a wrong name or no network are many
        raise DataError(
            f"SOURCE {source} is no file or folder, and datasets could not load it ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); check the path or the dataset name."
        ) from None
    return DatasetSource(name=source, dataset=dataset, text_column=text_column)
