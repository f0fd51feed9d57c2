"""Parallel and TSV corpora and the hash split of training pairs."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from swapformer.data import DataError, read_parallel_files, read_tsv, split_pairs


def write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_parallel_files(tmp_path: Path) -> None:
    src = write(tmp_path / "train.de.gz", "Hallo Welt\nGuten Morgen\n")
    tgt = write(tmp_path / "train.en", "Hello world\nGood morning")
    assert read_parallel_files(src_path=src, tgt_path=tgt) == [
        ("Hallo Welt", "Hello world"),
        ("Guten Morgen", "Good morning"),
    ]


def test_misaligned_parallel_files(tmp_path: Path) -> None:
    src = write(tmp_path / "src.txt", "a\nb\nc\n")
    tgt = write(tmp_path / "tgt.txt", "x\ny\n")
    with pytest.raises(DataError, match=r"misaligned: '.*src.txt' has 3 lines but '.*tgt.txt' has 2 lines"):
        read_parallel_files(src_path=src, tgt_path=tgt)


def test_empty_parallel_files(tmp_path: Path) -> None:
    src = write(tmp_path / "src.txt", "")
    tgt = write(tmp_path / "tgt.txt", "")
    with pytest.raises(DataError, match=r"parallel files '.*src.txt' and '.*tgt.txt' are empty"):
        read_parallel_files(src_path=src, tgt_path=tgt)


def test_missing_parallel_file(tmp_path: Path) -> None:
    tgt = write(tmp_path / "tgt.txt", "x\n")
    with pytest.raises(DataError, match=r"src_path='.*missing.txt' does not exist"):
        read_parallel_files(src_path=tmp_path / "missing.txt", tgt_path=tgt)


def test_tsv(tmp_path: Path) -> None:
    path = write(tmp_path / "pairs.tsv.gz", "one\teins\n\ntwo\tzwei\n")
    assert read_tsv(path=path) == [("one", "eins"), ("two", "zwei")]


def test_tsv_bad_line_number(tmp_path: Path) -> None:
    path = write(tmp_path / "pairs.tsv", "one\teins\ntwo\tzwei\tdos\n")
    with pytest.raises(DataError, match=r"pairs.tsv' line 2 has 3 tab-separated column\(s\), expected 2"):
        read_tsv(path=path)


def test_tsv_empty(tmp_path: Path) -> None:
    path = write(tmp_path / "pairs.tsv", "\n\n")
    with pytest.raises(DataError, match=r"pairs.tsv' has no examples"):
        read_tsv(path=path)


def test_split_pairs_is_deterministic_and_disjoint_by_source() -> None:
    pairs = [(f"source {index % 150}", f"target {index}") for index in range(300)]
    train, val = split_pairs(pairs, val_fraction=0.2)
    assert split_pairs(pairs, val_fraction=0.2) == (train, val)
    assert len(train) + len(val) == 300
    assert {source for source, _ in train}.isdisjoint({source for source, _ in val})
    assert 20 <= len(val) <= 100
    assert train == [pair for pair in pairs if pair in train]  # original order kept


def test_split_pairs_too_small() -> None:
    with pytest.raises(DataError, match=r"splitting 1 examples with val_fraction=0.05 gave"):
        split_pairs([("only", "one")], val_fraction=0.05)
