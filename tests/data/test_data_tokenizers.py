"""Tokenizers: round-trips, special ids, serialisation inside weights-only checkpoints, errors."""

from __future__ import annotations

import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer

from swapformer.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    DataError,
    Tokenizer,
    build_tokenizer,
)
from swapformer.data.tokenizer_base import TOKENIZER_CLASSES
from swapformer.data.tokenizers import TOKENIZER_KINDS
from swapformer.errors import ConfigError

CORPUS = [
    "def add(first, second):\n    return first + second\n",
    "The quick brown fox jumps over the lazy dog. Ünïcödé café 東京 💥\n",
    "for index in range(10):\n\tprint(index, 'done')\n",
] * 20


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return build_tokenizer("bpe", CORPUS, vocab_size=400)


def all_tokenizers(bpe_tokenizer: BPETokenizer) -> list[Tokenizer]:
    return [build_tokenizer("char", CORPUS), build_tokenizer("byte", CORPUS), bpe_tokenizer]


def test_special_ids_are_fixed(bpe: BPETokenizer) -> None:
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    for tokenizer in all_tokenizers(bpe):
        assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id) == (0, 1, 2, 3)
        assert tokenizer.decode([BOS_ID, PAD_ID, EOS_ID, UNK_ID], skip_special=False) == "<s><pad></s><unk>"


def test_char_vocab_is_sorted_after_specials() -> None:
    tokenizer = CharTokenizer.fit(["cab", "bca"])
    assert tokenizer.chars == ["a", "b", "c"]
    assert tokenizer.vocab_size == 7
    assert tokenizer.encode("abcz") == [4, 5, 6, UNK_ID]
    assert tokenizer.decode([4, UNK_ID, 6]) == "a\ufffdc"
    assert CharTokenizer.fit("bca") == tokenizer  # a single string is one text


def test_char_fit_on_empty_text_fails() -> None:
    with pytest.raises(DataError, match="empty text"):
        CharTokenizer.fit(["", ""])


def test_byte_ids_are_offset_bytes() -> None:
    tokenizer = ByteTokenizer()
    assert tokenizer.vocab_size == 260
    assert tokenizer.encode("A\u00e9") == [4 + 65, 4 + 0xC3, 4 + 0xA9]
    assert tokenizer.decode([4 + 0xC3]) == "\ufffd"  # half a UTF-8 character decodes with replacement


@pytest.mark.parametrize("index", [0, 1, 2])
def test_round_trip_on_corpus(bpe: BPETokenizer, index: int) -> None:
    tokenizer = all_tokenizers(bpe)[index]
    for text in CORPUS[:3]:
        ids = tokenizer.encode(text)
        assert all(4 <= token_id < tokenizer.vocab_size for token_id in ids)
        assert tokenizer.decode(ids) == text
        assert tokenizer.decode([BOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID]) == text


@settings(max_examples=50, deadline=None)
@given(text=st.text(max_size=200))
def test_byte_and_bpe_round_trip_any_text(bpe: BPETokenizer, text: str) -> None:
    assert ByteTokenizer().decode(ByteTokenizer().encode(text)) == text
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_is_deterministic_and_compresses() -> None:
    first = BPETokenizer.train(CORPUS, vocab_size=350)
    second = BPETokenizer.train(CORPUS, vocab_size=350)
    assert first.to_dict() == second.to_dict()
    assert 260 < first.vocab_size <= 350
    text = CORPUS[0]
    assert len(first.encode(text)) < len(text.encode("utf-8"))


def test_bpe_long_text_encoding_matches_reference(bpe: BPETokenizer) -> None:
    # Long texts are encoded in chunks; the result must equal the library's whole-text encoding.
    text = "".join(CORPUS) * 30
    assert len(text) > 1 << 16
    reference = HFTokenizer.from_str(bpe.to_dict()["tokenizer_json"])
    assert bpe.encode(text) == [token_id + 4 for token_id in reference.encode(text).ids]


@pytest.mark.parametrize("text", ["<s>", "a </s> b", "<unk><pad>"])
def test_special_token_strings_in_text_are_ordinary_text(bpe: BPETokenizer, text: str) -> None:
    for tokenizer in (bpe, ByteTokenizer(), CharTokenizer.fit([*CORPUS, "<>/"])):
        ids = tokenizer.encode(text)
        assert min(ids) >= 4
        assert tokenizer.decode(ids) == text


def test_bpe_rejects_json_with_added_tokens(bpe: BPETokenizer) -> None:
    reference = HFTokenizer.from_str(bpe.to_dict()["tokenizer_json"])
    reference.add_special_tokens(["<s>"])
    with pytest.raises(DataError, match=r"registers added tokens \['<s>'\]; they would be matched"):
        BPETokenizer(tokenizer_json=reference.to_str())


def test_bpe_vocab_size_too_small() -> None:
    with pytest.raises(DataError, match=r"vocab_size=100 is too small: it must be >= 260"):
        BPETokenizer.train(CORPUS, vocab_size=100)


def test_to_dict_round_trip_through_weights_only_load(bpe: BPETokenizer) -> None:
    for tokenizer in all_tokenizers(bpe):
        state = tokenizer.to_dict()
        buffer = io.BytesIO()
        torch.save({"tokenizer": state}, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=True)["tokenizer"]
        rebuilt = Tokenizer.from_dict(loaded)
        assert type(rebuilt) is type(tokenizer)
        assert rebuilt == tokenizer
        assert rebuilt.vocab_size == tokenizer.vocab_size
        assert rebuilt.encode(CORPUS[1]) == tokenizer.encode(CORPUS[1])


def test_from_dict_unknown_kind() -> None:
    with pytest.raises(DataError, match=r"kind='word'.*'bpe', 'byte', 'char'"):
        Tokenizer.from_dict({"kind": "word"})


def test_decode_out_of_range_id() -> None:
    tokenizer = CharTokenizer.fit("ab")
    with pytest.raises(DataError, match=r"cannot decode id 6: .*vocab_size=6"):
        tokenizer.decode([4, 6])


def test_decode_accepts_tensor() -> None:
    tokenizer = CharTokenizer.fit("ab")
    assert tokenizer.decode(torch.tensor([BOS_ID, 5, 4, EOS_ID])) == "ba"


def test_build_tokenizer_unknown_kind() -> None:
    with pytest.raises(DataError, match=r"unknown tokenizer 'word'; choose one of \['char', 'byte', 'bpe'\]"):
        build_tokenizer("word", CORPUS)


def test_build_tokenizer_unknown_option() -> None:
    with pytest.raises(DataError, match=r"'char' does not accept option\(s\) \['vocab_size'\]"):
        build_tokenizer("char", CORPUS, vocab_size=10)


def test_a_tokenizer_added_to_the_registries_is_fitted_and_rebuilt_by_name(monkeypatch) -> None:
    monkeypatch.setattr(TOKENIZER_CLASSES, "_members", dict(TOKENIZER_CLASSES._members))  # undone after
    monkeypatch.setattr(TOKENIZER_KINDS, "_members", dict(TOKENIZER_KINDS._members))

    class LowerCaseTokenizer(CharTokenizer):  # what a plug-in does: a class with its own kind ...
        kind = "lowercase"

        def encode(self, text: str) -> list[int]:
            return super().encode(text.lower())

    TOKENIZER_KINDS.add("lowercase", LowerCaseTokenizer.fit)  # ... and the function that fits it
    tokenizer = build_tokenizer("lowercase", "abc")
    assert type(tokenizer) is LowerCaseTokenizer and tokenizer.encode("AB") == tokenizer.encode("ab")
    assert type(Tokenizer.from_dict(tokenizer.to_dict())) is LowerCaseTokenizer
    with pytest.raises(DataError, match=r"unknown tokenizer 'lowercas' \(did you mean 'lowercase'\?\)"):
        build_tokenizer("lowercas", CORPUS)

    class Chars(CharTokenizer):  # keeps its parent's kind: not a new kind, and "char" stays CharTokenizer's
        pass

    assert (
        TOKENIZER_CLASSES["char"] is CharTokenizer
        and type(Tokenizer.from_dict({"kind": "char", "chars": ["a"]})) is CharTokenizer
    )
    with pytest.raises(ConfigError, match=r"tokenizer class member 'char' is already registered"):

        class OtherChars(CharTokenizer):
            kind = "char"
