"""``swapformer prepare``: tokenize a corpus once into token shards that training reads by memory map.

The work is cut into units (about :data:`UNIT_CHARS` characters of whole documents, or of one long document cut
where the tokenizer splits anyway) that depend only on the source and the tokenizer; ``workers`` processes encode
units and the main process writes their ids in unit order, so the shards are byte-identical for any worker count.

Train and validation: with at least ``1 / val_fraction`` documents, every ``round(1 / val_fraction)``-th document
is validation (spread over the corpus, however it is sorted); a source with fewer (one text file, a few files) is
split by position instead, as the text data modules do: the last ``val_fraction`` of its characters. Each
document, and each side of a document the cut falls in, ends with eos.

Resuming: after the tokenizer is fitted it is saved, and every few seconds ``prepare.state.json`` records the
units written and the shards' lengths. A killed prepare run again with the same arguments cuts the shards back to
the recorded lengths and goes on from the next unit.
"""

from __future__ import annotations

import collections
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from swapformer.data.bpe import _safe_chunks
from swapformer.data.cache import digest, load_tokenizer_file, save_tokenizer_file
from swapformer.data.errors import DataError
from swapformer.data.shards import DTYPES, META, SPLITS, TOKENIZER_FILE, ShardWriter, dtype_for, read_meta
from swapformer.data.sources import Source, open_source
from swapformer.data.tokenizer_base import Tokenizer
from swapformer.data.workers import worker_start_method

__all__ = ["SHARD_TOKENS", "UNIT_CHARS", "prepare", "tokenizer_from_spec"]

UNIT_CHARS = 1 << 17
"""Characters of text per unit of work (a document longer than this is cut where the tokenizer splits anyway)."""
SHARD_TOKENS = 1 << 28
"""Tokens per shard file: 512 MB of uint16."""
STATE = "prepare.state.json"
_SPLITTABLE = (
    "char",
    "byte",
    "bpe",
)  # tokenizers that give the same ids for a text cut at _safe_chunks' cuts
_SAVE_SECONDS = 2.0


@dataclass(frozen=True)
class Piece:
    """Text of one split; ``ends`` when it is the end of a document (eos follows)."""

    split: int  # index into SPLITS
    text: str
    ends: bool


def tokenizer_from_spec(spec: str, texts: Any) -> Tokenizer:
    """The tokenizer ``--tokenizer`` names: ``char``, ``byte``, ``bpe:N`` fitted on ``texts`` (an iterable of
    training documents), or a ``tokenizer.json`` / Hugging Face model folder / ``.ckpt`` read as it is."""
    from swapformer.data.base_datamodule import load_tokenizer
    from swapformer.data.tokenizers import build_tokenizer

    kind, _, size = spec.partition(":")
    if kind in ("char", "byte") and not size:
        return build_tokenizer(kind, texts)
    if kind == "bpe":
        if size and not size.isdigit():
            raise DataError(f"--tokenizer {spec}: the BPE vocabulary size must be a number, e.g. bpe:4096.")
        chunks = (chunk for text in texts for chunk in _safe_chunks(text))
        return build_tokenizer("bpe", chunks, vocab_size=int(size or 4096))
    if Path(spec).exists():
        return load_tokenizer(spec)
    raise DataError(
        f"--tokenizer {spec} is neither char, byte, bpe:N nor an existing tokenizer.json or model folder."
    )


def prepare(
    source: str,
    *,
    tokenizer: str,
    out: str | os.PathLike[str],
    workers: int = 1,
    text_column: str = "text",
    val_fraction: float = 0.005,
    glob: str = "*.txt",
    shard_tokens: int = SHARD_TOKENS,
    progress: bool = True,
) -> dict[str, Any]:
    """Tokenize ``source`` into ``out`` (see :mod:`swapformer.data.shards` for the folder); returns its meta.

    Args:
        source: A text file or folder, ``.jsonl`` / ``.parquet`` files, a ``save_to_disk`` folder or a dataset
            name (:mod:`swapformer.data.sources`).
        tokenizer: ``char``, ``byte``, ``bpe:N`` (fitted on the training documents) or a tokenizer's path.
        out: The folder to write; one that holds a finished prepare of the same source and tokenizer is left
            as it is, an unfinished one is resumed.
        workers: Processes that encode.
        text_column: The field of a record that holds its text.
        val_fraction: Share of the documents (or text) held out for validation.
        glob: Pattern of the text files in a folder.
        shard_tokens: Tokens per shard file.
        progress: Show documents and tokens per second on stderr.

    Raises:
        DataError: A bad argument, an unreadable or empty source, ``out`` holding another source's or
            tokenizer's shards (or other files).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise DataError(f"--workers {workers!r} must be an integer >= 1, e.g. the number of CPU cores.")
    if not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise DataError(f"--val_fraction {val_fraction!r} must be strictly between 0 and 1, e.g. 0.005.")
    if isinstance(shard_tokens, bool) or not isinstance(shard_tokens, int) or shard_tokens < 1:
        raise DataError(f"--shard_tokens {shard_tokens!r} must be a positive integer.")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; give a folder to write the shards into.")
    src = open_source(source, text_column=text_column, glob=glob)
    settings = {
        "source_hash": src.content_hash(),
        "tokenizer": _tokenizer_identity(tokenizer),
        "text_column": text_column,
        "val_fraction": val_fraction,
        "shard_tokens": shard_tokens,
    }
    every = max(2, round(1 / val_fraction))
    count = src.count(limit=every)
    if count == 0:
        raise DataError(f"SOURCE {source} holds no text (0 non-empty documents); give a corpus with text.")
    state = _existing(out, settings, source, tokenizer)
    if state == "done":
        meta = read_meta(out)
        _say(progress, f"prepare: {out} already holds this source with this tokenizer; nothing to do")
        return meta
    out.mkdir(parents=True, exist_ok=True)
    if state is None:
        state = {"settings": settings, "units": 0, "documents": [0, 0], "shards": [[], []]}
        _save_json(out / STATE, state)
    plan = _PositionSplit(src, val_fraction) if count < every else _EveryKth(src, every)
    fitted = _fitted_tokenizer(out, tokenizer, plan)
    if fitted.eos_id is None:
        raise DataError(
            f"--tokenizer {tokenizer} has no end-of-sequence token, which ends every document; use a tokenizer "
            "with one (char, byte and bpe:N have </s>)."
        )
    dtype = dtype_for(fitted.vocab_size)
    writers = [
        ShardWriter(out, split, dtype, shard_tokens, state["shards"][index])
        for index, split in enumerate(SPLITS)
    ]
    units = _units(plan, splittable=fitted.kind in _SPLITTABLE)
    done = state["units"]
    documents = list(state["documents"])
    meter = _Progress(progress, documents=sum(documents), tokens=sum(w.total for w in writers))
    saved = time.monotonic()
    for index, result in enumerate(_encoded(units, fitted, dtype, workers=workers, skip=done), start=done):
        for writer, ids in zip(writers, result[:2]):
            writer.write(ids)
        documents = [documents[0] + result[2], documents[1] + result[3]]
        meter.update(result[2] + result[3], len(result[0]) + len(result[1]))
        if time.monotonic() - saved > _SAVE_SECONDS:
            _checkpoint(out, settings, index + 1, documents, writers)
            saved = time.monotonic()
    for writer in writers:
        writer.close()
    tokens = [writer.total for writer in writers]
    if tokens[0] == 0 or tokens[1] == 0:
        empty = SPLITS[tokens.index(0)]
        raise DataError(
            f"SOURCE {source} leaves the {empty} split empty; give more text or change --val_fraction."
        )
    (out / "tokenizer.json").write_text(fitted.to_hf_json(), encoding="utf-8")
    meta = {
        "format": 1,
        "tokenizer": tokenizer,
        "tokenizer_kind": fitted.kind,
        "vocab_size": fitted.vocab_size,
        "dtype": dtype,
        "eos_id": fitted.eos_id,
        "tokens": dict(zip(SPLITS, tokens)),
        "documents": dict(zip(SPLITS, documents)),
        "shards": {split: writer.shards for split, writer in zip(SPLITS, writers)},
        "source": source,
        "source_kind": src.kind,
        "split": plan.describe(),
        **settings,
    }
    _save_json(out / META, meta)
    (out / STATE).unlink(missing_ok=True)
    meter.finish(out)
    return meta


# ---- the folder: new, finished or to resume --------------------------------------------------------------
def _tokenizer_identity(spec: str) -> str:
    kind = spec.partition(":")[0]
    if kind in ("char", "byte", "bpe") or not Path(spec).exists():
        return spec
    return "file:" + digest(json.dumps(tokenizer_from_spec(spec, ()).to_dict(), sort_keys=True))


def _existing(out: Path, settings: dict[str, Any], source: str, tokenizer: str) -> Any:
    """``"done"``, the state to resume, or None for a new folder."""
    if not out.is_dir() or not any(out.iterdir()):
        return None
    for name in (META, STATE):
        file = out / name
        if not file.is_file():
            continue
        try:
            recorded = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise DataError(
                f"--out {out}: {file} is not valid JSON; delete the folder to prepare it again."
            ) from None
        recorded = recorded.get("settings", recorded)
        changed = [key for key in settings if recorded.get(key) != settings[key]]
        if changed:
            what = {
                "source_hash": f"another source ({recorded.get('source', 'other files')})",
                "tokenizer": f"another tokenizer ({recorded.get('tokenizer')})",
            }.get(changed[0], f"another {changed[0]} ({recorded.get(changed[0])!r})")
            raise DataError(
                f"--out {out} holds shards of {what}, not of {source} with --tokenizer {tokenizer}; give another "
                "--out, or delete the folder to prepare it again."
            )
        return "done" if name == META else json.loads(file.read_text(encoding="utf-8"))
    raise DataError(
        f"--out {out} is not empty and was not written by swapformer prepare; give a new or empty folder."
    )


def _fitted_tokenizer(out: Path, spec: str, plan: Any) -> Tokenizer:
    file = out / TOKENIZER_FILE
    if file.is_file():  # fitted before the run was stopped
        return load_tokenizer_file(file)
    fitted = tokenizer_from_spec(spec, plan.train_texts())
    temporary = file.with_suffix(".tmp")
    save_tokenizer_file(fitted, temporary)
    os.replace(temporary, file)
    return fitted


def _checkpoint(out: Path, settings: dict, units: int, documents: list[int], writers: list) -> None:
    shards = [writer.shards for writer in writers]
    _save_json(out / STATE, {"settings": settings, "units": units, "documents": documents, "shards": shards})


def _save_json(file: Path, value: Any) -> None:
    temporary = file.with_name(file.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, file)


# ---- units of work -----------------------------------------------------------------------------------------
class _EveryKth:
    """Every ``every``-th document (1-based: the ``every``-th, ``2 x every``-th, ...) is validation."""

    def __init__(self, source: Source, every: int) -> None:
        self.source, self.every = source, every

    def describe(self) -> str:
        return f"every {self.every}th document is validation"

    def train_texts(self) -> Iterator[str]:
        return (text for index, text in enumerate(self.source.documents(), 1) if index % self.every)

    def pieces(self) -> Iterator[Piece]:
        for index, text in enumerate(self.source.documents(), 1):
            yield Piece(int(index % self.every == 0), text, True)


class _PositionSplit:
    """The last ``val_fraction`` of the text (documents in order) is validation."""

    def __init__(self, source: Source, val_fraction: float) -> None:
        self.texts = list(source.documents())
        total = sum(map(len, self.texts))
        self.cut = min(max(1, int(total * (1.0 - val_fraction))), total - 1)

    def describe(self) -> str:
        return f"by position: the first {self.cut} characters are training text"

    def train_texts(self) -> Iterator[str]:
        return (piece.text for piece in self.pieces() if piece.split == 0)

    def pieces(self) -> Iterator[Piece]:
        start = 0
        for text in self.texts:
            end = start + len(text)
            if end <= self.cut:
                yield Piece(0, text, True)
            elif start >= self.cut:
                yield Piece(1, text, True)
            else:
                yield Piece(0, text[: self.cut - start], True)
                yield Piece(1, text[self.cut - start :], True)
            start = end


def _units(plan: Any, *, splittable: bool) -> Iterator[list[Piece]]:
    unit: list[Piece] = []
    size = 0
    for piece in plan.pieces():
        parts = _safe_chunks(piece.text) if splittable and len(piece.text) > UNIT_CHARS else [piece.text]
        for number, part in enumerate(parts, 1):
            unit.append(Piece(piece.split, part, piece.ends and number == len(parts)))
            size += len(part)
            if size >= UNIT_CHARS:
                yield unit
                unit, size = [], 0
    if unit:
        yield unit


# ---- encoding, in this process or in workers ---------------------------------------------------------------
class _Encoder:
    """A unit's pieces as ``(train ids, val ids, train documents, val documents)``, ids in the shard dtype."""

    def __init__(self, tokenizer: Tokenizer, dtype: str) -> None:
        self.tokenizer, self.dtype = tokenizer, DTYPES[dtype]

    def __call__(self, unit: list[Piece]) -> tuple[np.ndarray, np.ndarray, int, int]:
        ids: list[list[int]] = [[], []]
        documents = [0, 0]
        eos = self.tokenizer.eos_id
        for piece in unit:
            ids[piece.split].extend(self.tokenizer.encode(piece.text))
            if piece.ends:
                ids[piece.split].append(eos)
                documents[piece.split] += 1
        train, val = (np.array(split, dtype=self.dtype) for split in ids)
        return train, val, documents[0], documents[1]


_WORKER_ENCODER: _Encoder | None = None  # one per worker process, made by _start_worker


def _start_worker(tokenizer: dict[str, Any], dtype: str) -> None:
    global _WORKER_ENCODER
    _WORKER_ENCODER = _Encoder(Tokenizer.from_dict(tokenizer), dtype)


def _encode_in_worker(unit: list[Piece]) -> tuple[np.ndarray, np.ndarray, int, int]:
    return _WORKER_ENCODER(unit)


def _encoded(
    units: Iterator[list[Piece]], tokenizer: Tokenizer, dtype: str, *, workers: int, skip: int
) -> Iterator[tuple[np.ndarray, np.ndarray, int, int]]:
    """The units' results in unit order, after the first ``skip`` (written before a stop)."""
    for _ in range(skip):
        if next(units, None) is None:
            return
    if workers == 1:
        yield from map(_Encoder(tokenizer, dtype), units)
        return
    # one thread per worker (the tokenizers library's threads would share the same cores), and the library
    # warns of, then turns off, threads in a process forked after it used them
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # the loaders' rule: fork where it is safe (a spawned worker would import torch and Lightning first, seconds),
    # the process's default on macOS, where forked children crash in system libraries
    context = multiprocessing.get_context(worker_start_method(workers))
    with context.Pool(workers, initializer=_start_worker, initargs=(tokenizer.to_dict(), dtype)) as pool:
        pending: collections.deque = collections.deque()
        for unit in units:  # a bounded queue: Pool.imap would read the whole corpus ahead
            pending.append(pool.apply_async(_encode_in_worker, (unit,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


# ---- progress ------------------------------------------------------------------------------------------------
class _Progress:
    """``prepare: 12,000 documents, 3.1M tokens, 1.20M tokens/s`` on stderr: redrawn on a terminal, a line every
    10 s in a log."""

    def __init__(self, enabled: bool, *, documents: int, tokens: int) -> None:
        self.enabled, self.documents, self.tokens = enabled, documents, tokens
        self.start = self.shown = time.monotonic()
        self.new_tokens = 0
        self.terminal = sys.stderr.isatty()

    def _line(self) -> str:
        rate = self.new_tokens / max(time.monotonic() - self.start, 1e-9)
        return f"prepare: {self.documents:,} documents, {_si(self.tokens)} tokens, {_si(rate)} tokens/s"

    def update(self, documents: int, tokens: int) -> None:
        self.documents += documents
        self.tokens += tokens
        self.new_tokens += tokens
        now = time.monotonic()
        if self.enabled and now - self.shown >= (0.5 if self.terminal else 10.0):
            self.shown = now
            print(f"\r{self._line()}" if self.terminal else self._line(), end="" if self.terminal else "\n",
                  file=sys.stderr, flush=True)  # fmt: skip

    def finish(self, out: Path) -> None:
        seconds = time.monotonic() - self.start
        _say(self.enabled, f"{chr(13) if self.terminal else ''}{self._line()} in {seconds:.1f} s -> {out}")


def _si(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


def _say(enabled: bool, line: str) -> None:
    if enabled:
        print(line, file=sys.stderr, flush=True)
