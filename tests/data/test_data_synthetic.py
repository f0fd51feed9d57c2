"""Synthetic tasks; dates are checked with an independent strptime-based parser."""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest

from swapformer.data import DataError, generate_task
from swapformer.data import synthetic as synthetic_module
from swapformer.data.dates import ordinal

# Independent of swapformer.data.dates: Python's own parser, after removing ordinals and filler words.
STRPTIME_FORMATS = (
    "%B %d %Y",
    "%d %B %Y",
    "%b %d %Y",
    "%d %b %Y",
    "%d-%b-%Y",
    "%A %B %d %Y",
    "%A %d %B %Y",
    "%a %d %b %Y",
    "%a %b %d %Y",
    "%Y/%m/%d",
    "%Y.%m.%d",
    "%Y%m%d",
    "%d.%m.%Y",  # day.month.year, as documented
)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def parse_human_date(text: str) -> tuple[set[date], str]:
    """All dates ``text`` parses to under STRPTIME_FORMATS, and the format(s) that matched."""
    normal = re.sub(r"\b(\d{1,2})(st|nd|rd|th)\b", r"\1", text.lower())
    normal = re.sub(r"\b(the|of)\b", " ", normal).replace(",", " ")
    normal = " ".join(normal.split())
    found, formats = set(), []
    for pattern in STRPTIME_FORMATS:
        try:
            found.add(datetime.strptime(normal, pattern).date())
            formats.append(pattern)
        except ValueError:
            continue
    return found, "|".join(formats)


def test_dates_parse_back_to_their_target() -> None:
    pairs = generate_task("dates", num_examples=3000, seed=7)
    matched_formats = set()
    for source, target in pairs:
        expected = datetime.strptime(target, "%Y-%m-%d").date()
        assert date(1900, 1, 1) <= expected <= date(2099, 12, 31)
        found, formats = parse_human_date(source)
        assert found == {expected}, (source, target, found)  # parses, and unambiguously
        matched_formats.add(formats)
        named = [day for day in WEEKDAYS if day in source.lower() or day[:3] == source.lower()[:3]]
        if named:
            assert named == [WEEKDAYS[expected.weekday()]], (source, target)
    assert len(matched_formats) >= 12
    sources = [source for source, _ in pairs]
    assert any(source.isupper() for source in sources)
    assert any(source.islower() and any(char.isalpha() for char in source) for source in sources)
    assert any(source[0].isupper() and not source.isupper() for source in sources)


def test_ordinals() -> None:
    days = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 30, 31]
    assert [ordinal(day) for day in days] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "30th", "31st"
    ]  # fmt: skip


@pytest.mark.parametrize("task", ["dates", "copy", "reverse", "sort"])
def test_train_and_val_targets_are_disjoint(task: str) -> None:
    train = generate_task(task, num_examples=2000, seed=0, split="train")
    val = generate_task(task, num_examples=300, seed=0, split="val")
    assert len(train) == 2000 and len(val) == 300
    assert {target for _, target in train}.isdisjoint({target for _, target in val})


def test_tiny_task_space_split() -> None:
    # Ten possible digits; the hash puts exactly one of them ("6") in the validation pool.
    options = {"alphabet": "digits", "min_len": 1, "max_len": 1}
    train = generate_task("copy", num_examples=200, seed=0, split="train", **options)
    val = generate_task("copy", num_examples=5, seed=0, split="val", **options)
    assert {target for _, target in train} == set("012345789")
    assert val == [("6", "6")] * 5


def test_sequence_tasks_are_correct() -> None:
    for name, transform in (
        ("copy", str),
        ("reverse", lambda s: s[::-1]),
        ("sort", lambda s: "".join(sorted(s))),
    ):
        pairs = generate_task(name, num_examples=200, seed=3, min_len=2, max_len=5)
        for source, target in pairs:
            assert 2 <= len(source) <= 5
            assert source.isalpha() and source.islower()
            assert target == transform(source)
        assert {len(source) for source, _ in pairs} == {2, 3, 4, 5}
    digits = generate_task("reverse", num_examples=50, seed=3, alphabet="digits")
    assert all(source.isdigit() for source, _ in digits)


def test_determinism_by_seed() -> None:
    for name in ("dates", "sort"):
        assert generate_task(name, num_examples=100, seed=5) == generate_task(name, num_examples=100, seed=5)
        assert generate_task(name, num_examples=100, seed=5) != generate_task(name, num_examples=100, seed=6)


def test_unknown_task() -> None:
    with pytest.raises(DataError, match=r"unknown synthetic task 'add'; choose one of \['copy', 'reverse'"):
        generate_task("add", num_examples=1, seed=0)


def test_bad_options() -> None:
    with pytest.raises(DataError, match=r"task 'copy' does not accept option\(s\) \['length'\]"):
        generate_task("copy", num_examples=1, seed=0, length=3)
    with pytest.raises(
        DataError, match=r"min_len=5 and max_len=2 must be integers with 1 <= min_len <= max_len"
    ):
        generate_task("sort", num_examples=1, seed=0, min_len=5, max_len=2)
    with pytest.raises(DataError, match=r"alphabet='greek' is not one of \['letters', 'digits'\]"):
        generate_task("copy", num_examples=1, seed=0, alphabet="greek")
    with pytest.raises(DataError, match=r"task 'dates' takes no options, got \['min_len'\]"):
        generate_task("dates", num_examples=1, seed=0, min_len=1)
    with pytest.raises(DataError, match=r"num_examples=0 must be a positive integer"):
        generate_task("dates", num_examples=0, seed=0)
    with pytest.raises(DataError, match=r"split='test' is not one of \['train', 'val', 'all'\]"):
        generate_task("dates", num_examples=1, seed=0, split="test")


def test_empty_validation_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthetic_module, "in_validation_pool", lambda target: False)
    with pytest.raises(DataError, match=r"found only 0 of 2 'val' examples .* too few distinct targets"):
        generate_task("copy", num_examples=2, seed=0, split="val")
