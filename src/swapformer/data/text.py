"""Plain-text corpora for causal language modelling, split into train and validation text.

Two sources:

* a user's file or folder, split by position (the first ``1 - val_fraction`` of the text is train, the
  rest validation, as nanoGPT does for tiny shakespeare);
* the default, which needs no download: the source code of the installed Python standard library, split
  at the file level by a hash of each file's relative path, so the split is stable across machines that
  have the same Python version.
"""

from __future__ import annotations

import math
import os
import sysconfig
import zlib
from dataclasses import dataclass
from pathlib import Path

from swapformer.data.errors import DataError
from swapformer.data.files import existing_path, read_text_file

__all__ = [
    "STDLIB_SKIP_DIRS",
    "TextSplit",
    "is_validation_file",
    "load_text_split",
    "read_text_corpus",
    "split_text",
    "stdlib_corpus_files",
    "stdlib_text_split",
]

STDLIB_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "ensurepip"}
)


@dataclass(frozen=True)
class TextSplit:
    """Train and validation text of one corpus."""

    train: str
    val: str


def read_text_corpus(path: str | Path, *, glob: str = "*.txt") -> str:
    """Read a text file, or every file matching ``glob`` under a folder (recursively, in sorted order).

    A single file is read whatever its extension; ``.gz`` files are decompressed. Files are joined so each
    one ends with a newline.

    Args:
        path: A file or a folder.
        glob: Pattern for files inside a folder, e.g. ``"*.txt"`` or ``"*.txt.gz"``. Ignored for a file.

    Returns:
        The corpus text.

    Raises:
        DataError: If ``path`` does not exist, a file is not UTF-8, or the corpus is empty.
    """
    root = existing_path(path, argument="path")
    files = [root]
    if not root.is_file():
        files = sorted((file for file in root.rglob(glob) if file.is_file()), key=lambda file: file.parts)
    if not files:
        raise DataError(f"no files match glob={glob!r} under {str(path)!r}; change the glob or the folder.")
    texts = [read_text_file(file) for file in files]
    text = "".join(text if text.endswith("\n") else text + "\n" for text in texts if text)
    if not text.strip():
        raise DataError(f"the corpus at {str(path)!r} is empty ({len(files)} file(s)); give it some text.")
    return text


def split_text(text: str, *, val_fraction: float) -> TextSplit:
    """Split ``text`` by position: the first ``1 - val_fraction`` is train, the rest validation.

    Raises:
        DataError: If ``val_fraction`` is not strictly between 0 and 1.
    """
    _check_val_fraction(val_fraction)
    cut = int(len(text) * (1.0 - val_fraction))
    return TextSplit(train=text[:cut], val=text[cut:])


def stdlib_corpus_files(*, root: str | Path | None = None) -> list[Path]:
    """List the standard-library ``*.py`` files used as the default corpus, sorted, relative to ``root``.

    Args:
        root: The standard-library folder; defaults to ``sysconfig.get_paths()["stdlib"]``.

    Returns:
        Relative paths, skipping anything under :data:`STDLIB_SKIP_DIRS`.
    """
    root = Path(root if root is not None else sysconfig.get_paths()["stdlib"])
    files = []
    # os.walk lets us prune skipped folders; site-packages alone can hold far more files than the stdlib.
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if name not in STDLIB_SKIP_DIRS]
        relative = Path(folder).relative_to(root)
        files.extend(relative / name for name in names if name.endswith(".py"))
    return sorted(files, key=lambda path: path.parts)


def is_validation_file(relative_path: Path, *, val_fraction: float) -> bool:
    """Whether a file belongs to the validation split: crc32 of its POSIX path, scaled to [0, 1)."""
    return zlib.crc32(relative_path.as_posix().encode("utf-8")) / 2**32 < val_fraction


def stdlib_text_split(
    *, val_fraction: float = 0.1, max_chars: int | None = None, root: str | Path | None = None
) -> TextSplit:
    """Build the default corpus from the Python standard library's source code.

    Files are assigned to train or validation by :func:`is_validation_file` and read in sorted order.
    ``max_chars`` caps the total, split between train and validation in the ratio of ``val_fraction``;
    the last file read into each split is cut at the cap. Files that are not valid UTF-8 are skipped.

    Args:
        val_fraction: Expected fraction of files that go to validation, strictly between 0 and 1.
        max_chars: Optional cap on the characters read (train + validation).
        root: The standard-library folder; defaults to the running interpreter's.

    Returns:
        The train and validation text.

    Raises:
        DataError: If an argument is out of range or no source files are found under ``root``.
    """
    _check_val_fraction(val_fraction)
    _check_max_chars(max_chars)
    root = Path(root if root is not None else sysconfig.get_paths()["stdlib"])
    files = stdlib_corpus_files(root=root)
    if not files:
        raise DataError(f"found no *.py files under the standard library folder {str(root)!r}.")
    budgets = {"train": math.inf, "val": math.inf}
    if max_chars is not None:
        val_budget = max(1, round(max_chars * val_fraction))
        budgets = {"train": max(1, max_chars - val_budget), "val": val_budget}
    parts: dict[str, list[str]] = {"train": [], "val": []}
    used = {"train": 0, "val": 0}
    for relative in files:
        if all(used[name] >= budgets[name] for name in parts):
            break
        split = "val" if is_validation_file(relative, val_fraction=val_fraction) else "train"
        room = budgets[split] - used[split]
        if room <= 0:
            continue
        try:
            text = (root / relative).read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if text.strip():
            text = (text if text.endswith("\n") else text + "\n")[: min(room, len(text) + 1)]
            parts[split].append(text)
            used[split] += len(text)
    return TextSplit(train="".join(parts["train"]), val="".join(parts["val"]))


def load_text_split(
    *, path: str | Path | None, val_fraction: float, max_chars: int | None = None, glob: str = "*.txt"
) -> TextSplit:
    """Load a corpus and split it: the standard library when ``path`` is None, else a file or folder.

    A user corpus is cut to its first ``max_chars`` characters (if given) and split by position with
    :func:`split_text`; a folder's files are concatenated in sorted order first.

    Raises:
        DataError: As :func:`read_text_corpus` and :func:`stdlib_text_split`.
    """
    if path is None:
        return stdlib_text_split(val_fraction=val_fraction, max_chars=max_chars)
    _check_val_fraction(val_fraction)
    _check_max_chars(max_chars)
    text = read_text_corpus(path, glob=glob)
    return split_text(text[:max_chars] if max_chars is not None else text, val_fraction=val_fraction)


def _check_val_fraction(val_fraction: float) -> None:
    if not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction!r} must be strictly between 0 and 1, e.g. 0.1.")


def _check_max_chars(max_chars: int | None) -> None:
    if max_chars is not None and (not isinstance(max_chars, int) or max_chars < 2):
        raise DataError(f"max_chars={max_chars!r} must be an integer >= 2, or null to read everything.")
