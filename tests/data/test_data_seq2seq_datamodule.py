"""Seq2SeqDataModule: sources of data, batches and masks, length checks, deterministic shuffling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from swapformer.data import BOS_ID, EOS_ID, PAD_ID, DataError, EpochShuffleSampler, Seq2SeqDataModule


def small_dates(**overrides: object) -> Seq2SeqDataModule:
    options = {"num_train": 300, "num_val": 40, "batch_size": 16, "seed": 1}
    return Seq2SeqDataModule(**{**options, **overrides})


def write_parallel(folder: Path, prefix: str, pairs: list[tuple[str, str]]) -> tuple[str, str]:
    src, tgt = folder / f"{prefix}.src", folder / f"{prefix}.tgt"
    src.write_text("".join(f"{source}\n" for source, _ in pairs))
    tgt.write_text("".join(f"{target}\n" for _, target in pairs))
    return str(src), str(tgt)


def test_vocab_size_before_setup_is_reused() -> None:
    data = small_dates()
    vocab_size = data.vocab_size
    tokenizer = data.tokenizer
    train = data.pairs()["train"]
    assert vocab_size == 4 + len(set("".join(s + t for s, t in train)))
    data.setup("fit")
    assert data.tokenizer is tokenizer and data.vocab_size == vocab_size
    assert (data.pad_id, data.bos_id, data.eos_id) == (PAD_ID, BOS_ID, EOS_ID)


def test_batches_masks_and_specials() -> None:
    data = small_dates()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    n = len(batch["src_text"])
    assert n == 16 and len(batch["tgt_text"]) == 16
    for side in ("src", "tgt"):
        ids, mask = batch[f"{side}_ids"], batch[f"{side}_mask"]
        assert ids.dtype == torch.long and mask.dtype == torch.bool
        assert ids.shape == mask.shape and ids.shape[0] == n
        assert torch.equal(mask, ids != PAD_ID)  # padding id never occurs inside real tokens
        lengths = mask.sum(dim=1)
        assert int(lengths.max()) == ids.shape[1]  # padded to the batch maximum
        assert torch.equal(ids[torch.arange(n), lengths - 1], torch.full((n,), EOS_ID))
    assert torch.equal(batch["tgt_ids"][:, 0], torch.full((n,), BOS_ID))
    for row in range(n):
        assert data.tokenizer.decode(batch["src_ids"][row]) == batch["src_text"][row]
        assert data.tokenizer.decode(batch["tgt_ids"][row]) == batch["tgt_text"][row]
        assert batch["tgt_text"][row][4] == "-" and len(batch["tgt_text"][row]) == 10


def test_val_targets_are_disjoint_and_test_falls_back_to_val() -> None:
    data = small_dates()
    data.setup()
    train_targets = {target for _, target in data.pairs()["train"]}
    val_targets = [text for batch in data.val_dataloader() for text in batch["tgt_text"]]
    assert len(val_targets) == 40
    assert train_targets.isdisjoint(val_targets)
    test_targets = [text for batch in data.test_dataloader() for text in batch["tgt_text"]]
    assert test_targets == val_targets


def test_shuffle_is_deterministic_per_epoch() -> None:
    data = small_dates()
    data.setup("fit")
    sampler = data.train_dataloader().sampler
    assert isinstance(sampler, EpochShuffleSampler)
    sampler.set_epoch(2)
    order = list(sampler)
    assert sorted(order) == list(range(300))
    assert list(sampler) == order
    sampler.set_epoch(3)
    assert list(sampler) != order
    other = EpochShuffleSampler(num_items=300, seed=1)
    other.set_epoch(2)
    assert list(other) == order


def test_parallel_files_with_hash_split_and_test_files(tmp_path: Path) -> None:
    pairs = [(f"w{index}", f"v{index}") for index in range(200)]
    src, tgt = write_parallel(tmp_path, "train", pairs)
    test_src, test_tgt = write_parallel(tmp_path, "test", [("hello", "world")])
    data = Seq2SeqDataModule(
        task=None,
        src_path=src,
        tgt_path=tgt,
        test_src_path=test_src,
        test_tgt_path=test_tgt,
        val_fraction=0.2,
    )
    loaded = data.pairs()
    assert sorted(loaded["train"] + loaded["val"]) == sorted(pairs)
    assert 10 <= len(loaded["val"]) <= 70
    assert 3 not in data.tokenizer.encode("w19v0")
    assert data.tokenizer.encode("hello") == [3] * 5  # only in the test text, which is never fitted on
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    assert batch["src_text"] == ["hello"] and batch["tgt_text"] == ["world"]


def test_tsv_with_val_tsv(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("ab\tba\nabc\tcba\n")
    (tmp_path / "val.tsv").write_text("ca\tac\n")
    data = Seq2SeqDataModule(
        task=None, tsv_path=str(tmp_path / "train.tsv"), val_tsv_path=str(tmp_path / "val.tsv"), batch_size=2
    )
    data.setup("fit")
    assert data.pairs()["train"] == [("ab", "ba"), ("abc", "cba")]
    batch = next(iter(data.val_dataloader()))
    assert batch["src_ids"].tolist() == [[6, 4, EOS_ID]]
    assert batch["tgt_ids"].tolist() == [[BOS_ID, 4, 6, EOS_ID]]


def test_length_check_and_truncation(tmp_path: Path) -> None:
    pairs = [("abcdefgh", "xy"), ("ab", "xyzxyzxyz"), ("abc", "x")]
    src, tgt = write_parallel(tmp_path, "train", pairs)
    _, _ = write_parallel(tmp_path, "val", pairs)
    options = {"task": None, "src_path": src, "tgt_path": tgt, "max_src_len": 5, "max_tgt_len": 6}
    options |= {"val_src_path": str(tmp_path / "val.src"), "val_tgt_path": str(tmp_path / "val.tgt")}
    strict = Seq2SeqDataModule(**options)
    with pytest.raises(
        DataError,
        match=(
            r"1 of 3 train examples have a source longer than max_src_len=5 tokens \(longest: 9, specials "
            r"included\); raise max_src_len to at least 9 or set truncate: true; 1 of 3 train examples have a "
            r"target longer than max_tgt_len=6 tokens \(longest: 11"
        ),
    ):
        strict.setup("fit")
    lenient = Seq2SeqDataModule(**options, truncate=True)
    lenient.setup("fit")
    examples = lenient.dataset("train").examples
    assert [len(example.src_ids) for example in examples] == [5, 3, 4]
    assert [len(example.tgt_ids) for example in examples] == [4, 6, 3]
    assert all(example.src_ids[-1] == EOS_ID and example.tgt_ids[-1] == EOS_ID for example in examples)
    assert lenient.tokenizer.decode(examples[1].tgt_ids) == "xyzx"
    assert examples[1].tgt_text == "xyzxyzxyz"  # raw text kept for exact match


def test_bpe_tokenizer_on_task() -> None:
    data = small_dates(tokenizer="bpe", tokenizer_options={"vocab_size": 320}, task="reverse")
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert 260 < data.vocab_size <= 320
    for row, target in enumerate(batch["tgt_text"]):
        assert data.tokenizer.decode(batch["tgt_ids"][row]) == target
        assert target == batch["src_text"][row][::-1]


def test_task_options() -> None:
    data = small_dates(task="sort", task_options={"min_len": 2, "max_len": 3, "alphabet": "digits"})
    assert all(2 <= len(source) <= 3 and source.isdigit() for source, _ in data.pairs()["train"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task": "add"}, r"task='add' is not known; choose one of \['copy', 'reverse', 'sort', 'dates'\]"),
        (
            {"tsv_path": "x.tsv"},
            r"task='dates' and file paths \['tsv_path'\] were both given; .* set task: null",
        ),
        (
            {"task": None},
            r"exactly one training source, src_path \+ tgt_path or tsv_path \(neither was given\)",
        ),
        ({"task": None, "src_path": "a.src"}, r"src_path and tgt_path must be given together"),
        ({"task": None, "tsv_path": "/missing.tsv"}, r"tsv_path='/missing.tsv' does not exist"),
        ({"max_tgt_len": 2}, r"max_tgt_len=2 is invalid: it must be an integer >= 3; it counts <s> and </s>"),
        ({"max_src_len": 0}, r"max_src_len=0 is invalid"),
        ({"num_train": 0}, r"num_train=0 is invalid"),
        ({"val_fraction": 0}, r"val_fraction=0 is invalid: it must be strictly between 0 and 1"),
        ({"batch_size": 0}, r"batch_size=0 is invalid"),
        ({"tokenizer": "words"}, r"tokenizer='words' is neither a kind"),
        ({"task_options": {"max_len": 0}}, r"task 'dates' takes no options, got \['max_len'\]"),
        ({"task": "copy", "task_options": {"seed": 3}}, r"task_options may not set \['seed'\]"),
    ],
)
def test_argument_errors(overrides: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        small_dates(**overrides)


def test_both_parallel_and_tsv(tmp_path: Path) -> None:
    src, tgt = write_parallel(tmp_path, "train", [("a", "b")])
    with pytest.raises(DataError, match=r"exactly one training source.*\(both was given\)"):
        Seq2SeqDataModule(task=None, src_path=src, tgt_path=tgt, tsv_path=src)
