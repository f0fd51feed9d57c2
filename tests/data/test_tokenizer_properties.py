"""Properties of every tokenizer and collate path, over generated text and batches (hypothesis):

- byte and bpe: ``decode(encode(s)) == s`` for any Unicode text (astral characters, NUL, newlines, the text of
  special tokens), ids always ordinary (>= 4);
- char: characters outside the fitted vocabulary become ``<unk>``, decoded as U+FFFD (or ``"<unk>"`` with
  ``skip_special=False``), as its docstring says; the rest round-trips;
- the Hugging Face ``tokenizer.json`` each exports, loaded as an :class:`HFTokenizer`, encodes and decodes alike;
- collation never mixes rows: each row of a seq2seq batch is its own example, right-padded, and each row of a
  language-model batch is the window at its own offset.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from swapformer.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    HFTokenizer,
    build_tokenizer,
)
from swapformer.data.lm_datasets import ConsecutiveWindows, OffsetWindows
from swapformer.data.resumable import ResumableDataLoader
from swapformer.data.seq2seq_datasets import PairCollator

CORPUS = [
    "def add(first, second):\n    return first + second\n",
    "The quick brown fox jumps over the lazy dog. Ünïcödé café 東京 💥\n",
] * 20
ALPHABET = sorted(set("".join(CORPUS)))

# Any Unicode scalar value (surrogates cannot be UTF-8 encoded, so Python text never round-trips them), with
# the characters tokenizers trip on made likely: NUL, newlines, astral emoji, combining marks, specials' text.
TRICKY = [
    "\x00",
    "\n",
    "\r\n",
    "\t",
    " ",
    "💥",
    "𝔘",
    "\U0010ffff",
    "e\u0301",
    "\ufeff",
    "<s>",
    "</s>",
    "<unk>",
]
TEXT = st.lists(
    st.one_of(st.text(st.characters(codec="utf-8"), max_size=8), st.sampled_from(TRICKY)), max_size=12
).map("".join)

SETTINGS = settings(max_examples=100, deadline=None)


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return build_tokenizer("bpe", CORPUS, vocab_size=400)


@pytest.fixture(scope="module")
def char() -> CharTokenizer:
    return build_tokenizer("char", CORPUS)


def _hf(tokenizer) -> HFTokenizer:
    return HFTokenizer(
        tokenizer_json=tokenizer.to_hf_json(), pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID
    )


@SETTINGS
@given(text=TEXT)
def test_byte_round_trips_any_text(text: str) -> None:
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(text)
    assert len(ids) == len(text.encode("utf-8"))
    assert all(4 <= token_id < tokenizer.vocab_size for token_id in ids)
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode([BOS_ID, *ids, EOS_ID, PAD_ID]) == text  # specials skipped, bytes still join


@SETTINGS
@given(text=TEXT)
def test_bpe_round_trips_any_text(bpe: BPETokenizer, text: str) -> None:
    ids = bpe.encode(text)
    assert all(4 <= token_id < bpe.vocab_size for token_id in ids)
    assert bpe.decode(ids) == text


@SETTINGS
@given(text=st.text(st.sampled_from(ALPHABET), max_size=200))
def test_bpe_compresses_nothing_away_in_its_training_alphabet(bpe: BPETokenizer, text: str) -> None:
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert len(ids) <= len(text.encode("utf-8"))  # a merge never costs more tokens than the bytes


@SETTINGS
@given(text=TEXT)
def test_char_maps_unseen_characters_to_unk(char: CharTokenizer, text: str) -> None:
    ids = char.encode(text)
    assert len(ids) == len(text)
    known = set(char.chars)
    assert ids == [char.encode(c)[0] if c in known else UNK_ID for c in text]
    assert all(token_id == UNK_ID or 4 <= token_id < char.vocab_size for token_id in ids)
    assert char.decode(ids) == "".join(c if c in known else "\ufffd" for c in text)
    assert char.decode(ids, skip_special=False) == "".join(c if c in known else "<unk>" for c in text)


@SETTINGS
@given(text=st.text(st.sampled_from(ALPHABET), max_size=100))
def test_char_round_trips_its_alphabet(char: CharTokenizer, text: str) -> None:
    assert char.decode(char.encode(text)) == text


@pytest.fixture(scope="module")
def exported(bpe: BPETokenizer, char: CharTokenizer) -> list[tuple[object, HFTokenizer]]:
    pairs = [(tokenizer, _hf(tokenizer)) for tokenizer in (ByteTokenizer(), bpe, char)]
    return pairs + [(theirs, _hf(theirs)) for _, theirs in pairs]  # an HFTokenizer's own export, loaded again


@settings(max_examples=100, deadline=None)
@given(text=TEXT)
def test_exported_tokenizer_json_agrees(exported, text: str) -> None:
    for ours, theirs in exported:
        ids = ours.encode(text)
        assert theirs.encode(text) == ids, type(ours).__name__
        assert theirs.decode(ids, skip_special=False) == ours.decode(ids, skip_special=False)
        assert theirs.vocab_size == ours.vocab_size


# ---- collation ---------------------------------------------------------------------------------------
IDS = st.lists(st.integers(0, 99), min_size=1, max_size=20)


@settings(max_examples=100, deadline=None)
@given(pairs=st.lists(st.tuples(IDS, IDS), min_size=1, max_size=8), pad_id=st.sampled_from([0, 7]))
def test_pair_collator_keeps_each_row_its_own(pairs: list[tuple[list[int], list[int]]], pad_id: int) -> None:
    items = [
        {"src_ids": torch.tensor(s), "tgt_ids": torch.tensor(t), "src_text": f"s{i}", "tgt_text": f"t{i}"}
        for i, (s, t) in enumerate(pairs)
    ]
    batch = PairCollator(pad_id=pad_id)(items)
    for side, position in (("src", 0), ("tgt", 1)):
        ids, mask = batch[f"{side}_ids"], batch[f"{side}_mask"]
        assert ids.dtype == torch.long and mask.dtype == torch.bool
        assert ids.shape == mask.shape == (len(pairs), max(len(p[position]) for p in pairs))
        for row, pair in enumerate(pairs):
            own = pair[position]
            assert ids[row][mask[row]].tolist() == own
            assert mask[row].tolist() == [True] * len(own) + [False] * (
                ids.size(1) - len(own)
            )  # right padding
            assert (ids[row][~mask[row]] == pad_id).all()
        assert batch[f"{side}_text"] == [f"{side[0]}{i}" for i in range(len(pairs))]


@settings(max_examples=50, deadline=None)
@given(
    length=st.integers(2, 200),
    seq_len=st.integers(1, 16),
    batch_size=st.integers(1, 6),
    data=st.data(),
)
def test_language_model_batches_are_the_windows_at_their_offsets(length, seq_len, batch_size, data) -> None:
    # The causal and masked LM data modules both batch these windows with the default collate.
    if length < seq_len + 1:
        length = seq_len + 1
    tokens = torch.randperm(1000)[:length].to(torch.int32)  # distinct ids: any mixing shows
    train = OffsetWindows(tokens=tokens, seq_len=seq_len)
    offsets = data.draw(st.lists(st.integers(0, len(train) - 1), min_size=1, max_size=12))
    seen = 0
    for batch in ResumableDataLoader(train, batch_size=batch_size, sampler=offsets):
        for row in range(batch["input_ids"].size(0)):
            start = offsets[seen]
            assert batch["input_ids"][row].tolist() == tokens[start : start + seq_len].tolist()
            assert batch["labels"][row].tolist() == tokens[start + 1 : start + seq_len + 1].tolist()
            assert batch["input_ids"].dtype == torch.long
            seen += 1
    assert seen == len(offsets)

    validation = ConsecutiveWindows(tokens=tokens, seq_len=seq_len)
    index = 0
    for batch in DataLoader(validation, batch_size=batch_size):
        for row in batch["input_ids"]:
            assert row.tolist() == tokens[index * seq_len : index * seq_len + seq_len].tolist()
            index += 1
    assert index == len(validation)
