"""A content-addressed cache of fitted tokenizers and encoded corpora, shared by launches and by ranks.

Fitting a BPE tokenizer and encoding a multi-MB corpus takes seconds to minutes, and every launch (fit, resume,
validate, test, predict) and every process of a distributed run did it again. Entries are named by a digest of
what they depend on, so a changed corpus or tokenizer setting can never pick up a stale entry::

    <cache_dir>/tokenizers/<digest of kind, options, training text>.json     Tokenizer.to_dict()
    <cache_dir>/corpora/<digest of the tokenizer file, train and val text>.pt  {"train", "val"}: int32 1-D

The folder is ``cache_dir`` of the data module, else ``$SWAPFORMER_CACHE_DIR``, else
``$XDG_CACHE_HOME/swapformer``, else ``~/.cache/swapformer``: outside any run folder (runs share entries) and never
inside the package. Deleting it is always safe. Concurrent processes (the ranks of a node, or nodes on a shared
file system) build an entry once: the first takes a lock file and the others wait for its result.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from swapformer.data.tokenizers import Tokenizer

__all__ = ["cache_root", "cached", "digest", "encode_chunked", "load_tokenizer_file", "save_tokenizer_file"]

T = TypeVar("T")
CHUNK_CHARS = 1 << 20
"""Characters encoded at once: the Python list of ids of one chunk is the only transient copy."""
WAIT_SECONDS = 1800.0
"""How long a process waits for another's lock before building the entry itself (a crashed builder)."""
# After "<non-space>\n" and before a non-space: every tokenizer of this package splits there anyway (see bpe.py)
_SAFE_CUT = re.compile(r"(?<=\S\n)(?=\S)")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir``, ``$SWAPFORMER_CACHE_DIR``, ``$XDG_CACHE_HOME/swapformer`` or
    ``~/.cache/swapformer``, in that order."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("SWAPFORMER_CACHE_DIR"):
        return Path(os.environ["SWAPFORMER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "swapformer"


def digest(*parts: str | bytes) -> str:
    """A short hex digest of ``parts`` (BLAKE2b, 128 bits), each part length-prefixed so none can run into
    the next."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def cached(
    path: Path, build: Callable[[], T], save: Callable[[T, Path], None], load: Callable[[Path], T]
) -> T:
    """``load(path)`` if the entry exists, else ``build()``, saved atomically (a temporary file renamed).

    While one process builds, others that ask for the same entry wait on its lock file and then load it; a lock
    older than :data:`WAIT_SECONDS` is taken as left by a crashed process, and the waiter builds the entry itself.
    """
    if path.is_file():
        return load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    while True:
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            break
        except FileExistsError:
            if path.is_file():
                return load(path)
            try:
                stale = time.time() - lock.stat().st_mtime > WAIT_SECONDS
            except FileNotFoundError:  # released meanwhile: loop and look again
                continue
            if stale:
                lock.unlink(missing_ok=True)
            time.sleep(0.05)
    try:
        if path.is_file():  # built by another process between our look and our lock
            return load(path)
        value = build()
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        save(value, temporary)
        os.replace(temporary, path)
        return value
    finally:
        lock.unlink(missing_ok=True)


def save_tokenizer_file(tokenizer: Tokenizer, path: Path) -> None:
    """Write ``tokenizer.to_dict()`` as JSON (read back with :func:`load_tokenizer_file`)."""
    path.write_text(json.dumps(tokenizer.to_dict(), ensure_ascii=False), encoding="utf-8")


def load_tokenizer_file(path: Path) -> Tokenizer:
    return Tokenizer.from_dict(json.loads(path.read_text(encoding="utf-8")))


def encode_chunked(tokenizer: Tokenizer, text: str, *, chunk_chars: int = CHUNK_CHARS) -> torch.Tensor:
    """``tokenizer.encode(text)`` as a 1-D int32 tensor, encoded a chunk at a time.

    A whole-corpus Python list costs 8 bytes per id (plus an object per id above 256) next to the text; chunks
    keep that to one chunk's worth. Cuts fall where the tokenizers split anyway (after a line ending in a
    non-space, before a non-space), so the ids equal those of one ``encode`` of the whole text; tokenizers
    loaded from elsewhere (a Hugging Face ``tokenizer.json``, which may add a prefix space per call) encode
    the text whole.
    """
    if tokenizer.kind not in ("char", "byte", "bpe") or len(text) <= chunk_chars:
        return torch.tensor(tokenizer.encode(text), dtype=torch.int32)
    pieces, start = [], 0
    while start < len(text):
        end = start + chunk_chars
        if end < len(text):
            cut = _SAFE_CUT.search(text, end)  # the first safe place at or after the chunk's end
            end = cut.start() if cut else len(text)
        pieces.append(torch.tensor(tokenizer.encode(text[start:end]), dtype=torch.int32))
        start = end
    return torch.cat(pieces)
