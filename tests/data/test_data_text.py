"""Text corpora: files, folders, gzip, positional and file-level splits, the stdlib default."""

from __future__ import annotations

import gzip
import sysconfig
from pathlib import Path

import pytest

from swapformer.data import DataError, load_text_split, read_text_corpus, split_text, stdlib_text_split
from swapformer.data.text import STDLIB_SKIP_DIRS, is_validation_file, stdlib_corpus_files


def test_single_file_any_extension(tmp_path: Path) -> None:
    path = tmp_path / "input.md"
    path.write_text("First Citizen:\nBefore we proceed")
    assert read_text_corpus(path) == "First Citizen:\nBefore we proceed\n"


def test_gzip_file(tmp_path: Path) -> None:
    path = tmp_path / "input.txt.gz"
    path.write_bytes(gzip.compress("caf\u00e9\r\nbar\n".encode()))
    assert read_text_corpus(path) == "caf\u00e9\nbar\n"


def test_folder_is_recursive_sorted_and_globbed(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.txt").write_text("two\n")
    (tmp_path / "a.txt").write_text("one")
    (tmp_path / "c.txt").write_text("three\n")
    (tmp_path / "skip.md").write_text("markdown\n")
    (tmp_path / "b" / "four.txt.gz").write_bytes(gzip.compress(b"four\n"))
    assert read_text_corpus(tmp_path) == "one\ntwo\nthree\n"  # a.txt, b/two.txt, c.txt
    assert read_text_corpus(tmp_path, glob="*.gz") == "four\n"


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"path='.*nowhere.txt' does not exist"):
        read_text_corpus(tmp_path / "nowhere.txt")


def test_empty_corpus(tmp_path: Path) -> None:
    (tmp_path / "blank.txt").write_text("\n\n")
    with pytest.raises(DataError, match=r"the corpus at '.*blank.txt' is empty"):
        read_text_corpus(tmp_path / "blank.txt")


def test_folder_without_matches(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("text")
    with pytest.raises(DataError, match=r"no files match glob='\*.txt' under"):
        read_text_corpus(tmp_path)


def test_invalid_utf8(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt' is not valid UTF-8 \(byte 3\)"):
        read_text_corpus(tmp_path / "latin1.txt")


def test_positional_split() -> None:
    text = "".join(chr(ord("a") + index % 26) for index in range(1000))
    split = split_text(text, val_fraction=0.1)
    assert split.train == text[:900]
    assert split.val == text[900:]


@pytest.mark.parametrize("val_fraction", [0.0, 1.0, -0.5, 2])
def test_bad_val_fraction(val_fraction: float) -> None:
    with pytest.raises(DataError, match=rf"val_fraction={val_fraction!r} must be strictly between 0 and 1"):
        split_text("abc", val_fraction=val_fraction)


def test_user_file_max_chars(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_text("x" * 50 + "y" * 50)
    split = load_text_split(path=path, val_fraction=0.2, max_chars=60)
    assert (split.train, split.val) == ("x" * 48, "x" * 2 + "y" * 10)


def fake_stdlib(root: Path) -> dict[str, str]:
    """A miniature stdlib folder; returns the files that should be part of the corpus."""
    kept = {}
    for index in range(60):
        relative = f"pkg{index % 3}/mod_{index:02d}.py" if index % 2 else f"mod_{index:02d}.py"
        kept[relative] = f"# module {index}\nVALUE = {index}\n"
    for relative, text in kept.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    for skipped in ("test/test_x.py", "site-packages/torch/x.py", "idlelib/x.py", "pkg0/tests/x.py"):
        (root / skipped).parent.mkdir(parents=True, exist_ok=True)
        (root / skipped).write_text("SKIPPED = True\n")
    (root / "binary.py").write_bytes(b"\xff\xfe not utf-8")
    (root / "README.txt").write_text("not python\n")
    return kept


def test_stdlib_split_is_file_level_and_disjoint(tmp_path: Path) -> None:
    kept = fake_stdlib(tmp_path)
    split = stdlib_text_split(val_fraction=0.3, root=tmp_path)
    val_files = sorted(path for path in kept if is_validation_file(Path(path), val_fraction=0.3))
    train_files = sorted(path for path in kept if path not in val_files)
    assert 0 < len(val_files) < len(kept)
    ordered = [path.as_posix() for path in stdlib_corpus_files(root=tmp_path)]
    assert split.val == "".join(kept[path] for path in ordered if path in val_files)
    assert split.train == "".join(kept[path] for path in ordered if path in train_files)
    assert "SKIPPED" not in split.train + split.val
    assert stdlib_text_split(val_fraction=0.3, root=tmp_path) == split


def test_stdlib_max_chars_is_proportional(tmp_path: Path) -> None:
    fake_stdlib(tmp_path)
    split = stdlib_text_split(val_fraction=0.25, max_chars=200, root=tmp_path)
    assert (len(split.train), len(split.val)) == (150, 50)
    full = stdlib_text_split(val_fraction=0.25, root=tmp_path)
    assert full.train.startswith(split.train)
    assert full.val.startswith(split.val)


def test_real_stdlib_corpus_is_deterministic() -> None:
    files = stdlib_corpus_files()
    assert Path("os.py") in files
    assert not any(STDLIB_SKIP_DIRS.intersection(path.parts) for path in files)
    first = stdlib_text_split(val_fraction=0.1, max_chars=20_000)
    second = stdlib_text_split(val_fraction=0.1, max_chars=20_000)
    assert first == second
    assert (len(first.train), len(first.val)) == (18_000, 2_000)
    # The first training file in sorted order is read first.
    first_train = next(path for path in files if not is_validation_file(path, val_fraction=0.1))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    assert first.train.startswith((stdlib / first_train).read_text()[:1000])
