"""Parallel (source, target) corpora for sequence-to-sequence tasks."""

from __future__ import annotations

import zlib
from pathlib import Path

from swapformer.data.errors import DataError
from swapformer.data.files import existing_path, read_lines

__all__ = ["Pair", "read_parallel_files", "read_tsv", "split_pairs"]

Pair = tuple[str, str]


def read_parallel_files(*, src_path: str | Path, tgt_path: str | Path) -> list[Pair]:
    """Read line-aligned source and target files (UTF-8, optionally ``.gz``): line i of one translates line i of the other.

    Args:
        src_path: Source sentences, one per line.
        tgt_path: Target sentences, one per line.

    Returns:
        ``(source, target)`` pairs in file order.

    Raises:
        DataError: If a file is missing, the line counts differ, or the files are empty.
    """
    sources = read_lines(existing_path(src_path, argument="src_path"))
    targets = read_lines(existing_path(tgt_path, argument="tgt_path"))
    if len(sources) != len(targets):
        raise DataError(
            f"parallel files are misaligned: {str(src_path)!r} has {len(sources)} lines but "
            f"{str(tgt_path)!r} has {len(targets)} lines; they must have one line per example each."
        )
    if not sources:
        raise DataError(f"parallel files {str(src_path)!r} and {str(tgt_path)!r} are empty; add examples.")
    return list(zip(sources, targets))


def read_tsv(*, path: str | Path) -> list[Pair]:
    """Read a two-column ``source<TAB>target`` file (UTF-8, optionally ``.gz``); blank lines are skipped.

    Args:
        path: The TSV file.

    Returns:
        ``(source, target)`` pairs in file order.

    Raises:
        DataError: If the file is missing, a line does not have exactly two tab-separated columns
            (the message gives its line number), or there are no examples.
    """
    pairs: list[Pair] = []
    for number, line in enumerate(read_lines(existing_path(path, argument="tsv_path")), start=1):
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) != 2:
            raise DataError(
                f"{str(path)!r} line {number} has {len(columns)} tab-separated column(s), expected 2 "
                f"(source<TAB>target): {line[:80]!r}. Fix or remove that line."
            )
        pairs.append((columns[0], columns[1]))
    if not pairs:
        raise DataError(f"TSV file {str(path)!r} has no examples; add lines of the form source<TAB>target.")
    return pairs


def split_pairs(pairs: list[Pair], *, val_fraction: float) -> tuple[list[Pair], list[Pair]]:
    """Split pairs into train and validation by a hash of the source text.

    Identical sources always land on the same side, so validation never sees a training input again.

    Args:
        pairs: The examples.
        val_fraction: Expected fraction that goes to validation, strictly between 0 and 1.

    Returns:
        ``(train, val)``, each in the original order.

    Raises:
        DataError: If ``val_fraction`` is out of range or either side ends up empty.
    """
    if not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction!r} must be strictly between 0 and 1, e.g. 0.05.")
    train: list[Pair] = []
    val: list[Pair] = []
    for pair in pairs:
        in_val = zlib.crc32(pair[0].encode("utf-8")) / 2**32 < val_fraction
        (val if in_val else train).append(pair)
    if not train or not val:
        raise DataError(
            f"splitting {len(pairs)} examples with val_fraction={val_fraction} gave {len(train)} train and "
            f"{len(val)} validation examples; change val_fraction or pass explicit validation files."
        )
    return train, val
