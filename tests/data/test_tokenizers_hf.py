"""Hugging Face interop: swapformer tokenizers exported as tokenizer.json, and tokenizer.json imported.

Every expectation is computed by the live ``tokenizers`` / ``transformers`` objects, never written down.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFBackend

from swapformer.data import (
    SPECIAL_TOKENS,
    UNK_ID,
    BPETokenizer,
    ByteTokenizer,
    DataError,
    HFTokenizer,
    Tokenizer,
    build_tokenizer,
    check_vocab,
)

transformers = pytest.importorskip("transformers", reason="transformers is the reference here (dev extra)")

CORPUS = [
    "def add(first, second):\n    return first + second\n",
    "The quick brown fox jumps over the lazy dog. Ünïcödé café 東京 💥\n",
    "for index in range(10):\n\tprint(index, 'done')  # <s> and </s> are tags, <|endoftext|> a separator\n",
] * 20
KINDS = ("char", "byte", "bpe")
# Texts that hold the strings of special tokens, which swapformer encodes as ordinary text.
SPECIAL_TEXTS = ["<s>", "a </s> b", "<unk><pad>", "x<s>y\n", "<|endoftext|> next"]
HYPOTHESIS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def ours() -> dict[str, Tokenizer]:
    return {
        kind: build_tokenizer(kind, CORPUS, **({"vocab_size": 400} if kind == "bpe" else {}))
        for kind in KINDS
    }


@pytest.fixture(scope="module")
def exported(ours: dict[str, Tokenizer], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {
        kind: tokenizer.save_pretrained(tmp_path_factory.mktemp(kind)) for kind, tokenizer in ours.items()
    }


def backend(directory: Path, *, encode_special_tokens: bool = True) -> HFBackend:
    loaded = HFBackend.from_file(str(directory / "tokenizer.json"))
    loaded.encode_special_tokens = encode_special_tokens
    return loaded


def in_range_ids(vocab_size: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, vocab_size - 1), max_size=40)


# --- export: swapformer -> tokenizer.json ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_export_puts_specials_at_0_to_3(
    ours: dict[str, Tokenizer], exported: dict[str, Path], kind: str
) -> None:
    loaded = backend(exported[kind])
    assert [loaded.token_to_id(token) for token in SPECIAL_TOKENS] == [0, 1, 2, 3]
    specials = {token_id: token.content for token_id, token in loaded.get_added_tokens_decoder().items()}
    assert specials == ours[kind].special_tokens == dict(enumerate(SPECIAL_TOKENS))
    assert all(token.special for token in loaded.get_added_tokens_decoder().values())
    assert loaded.get_vocab_size() == ours[kind].vocab_size
    assert loaded.to_str() == ours[kind].to_hf_json()


@pytest.mark.parametrize("kind", KINDS)
def test_export_encodes_the_corpus_with_our_ids(
    ours: dict[str, Tokenizer], exported: dict[str, Path], kind: str
) -> None:
    for text in CORPUS[:3]:
        assert backend(exported[kind]).encode(text, add_special_tokens=False).ids == ours[kind].encode(text)
        ids = ours[kind].encode(text)
        assert backend(exported[kind]).decode(ids) == ours[kind].decode(ids) == text


@HYPOTHESIS
@given(text=st.text(max_size=120))
def test_export_encode_equals_ours_on_any_text(
    ours: dict[str, Tokenizer], exported: dict[str, Path], text: str
) -> None:
    for kind in KINDS:
        ids = ours[kind].encode(text)
        assert backend(exported[kind]).encode(text, add_special_tokens=False).ids == ids
        if not any(token in text for token in SPECIAL_TOKENS):
            # Without special strings in the text, the library's default setting agrees too.
            default = backend(exported[kind], encode_special_tokens=False)
            assert default.encode(text, add_special_tokens=False).ids == ids
        if kind != "char" or UNK_ID not in ids:  # the char tokenizer loses characters it never saw
            assert backend(exported[kind]).decode(ids) == ours[kind].decode(ids) == text


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("text", SPECIAL_TEXTS)
def test_special_strings_in_raw_text_need_encode_special_tokens(
    ours: dict[str, Tokenizer], exported: dict[str, Path], kind: str, text: str
) -> None:
    # The one documented difference: tokenizer.json cannot store encode_special_tokens, and the library's
    # default splits registered specials out of raw text.
    ids = ours[kind].encode(text)
    assert min(ids) >= len(SPECIAL_TOKENS)
    assert backend(exported[kind]).encode(text, add_special_tokens=False).ids == ids
    default = backend(exported[kind], encode_special_tokens=False).encode(text, add_special_tokens=False).ids
    has_special = any(token in text for token in SPECIAL_TOKENS)
    assert (default != ids) == has_special
    assert (min(default) < len(SPECIAL_TOKENS)) == has_special


@HYPOTHESIS
@given(data=st.data())
def test_export_decode_equals_ours_on_any_ids(
    ours: dict[str, Tokenizer], exported: dict[str, Path], data: st.DataObject
) -> None:
    for kind in KINDS:
        ids = data.draw(in_range_ids(ours[kind].vocab_size), label=kind)
        loaded = backend(exported[kind])
        assert loaded.decode(ids, skip_special_tokens=False) == ours[kind].decode(ids, skip_special=False)
        # Skipping specials, Hugging Face also drops <unk> where swapformer shows U+FFFD.
        without_unk = [token_id for token_id in ids if token_id != UNK_ID]
        assert loaded.decode(ids, skip_special_tokens=True) == ours[kind].decode(without_unk)
        if UNK_ID not in ids:
            assert loaded.decode(ids, skip_special_tokens=True) == ours[kind].decode(ids)


def test_dropped_special_does_not_split_a_character() -> None:
    # Byte halves of "é" either side of <pad>: skipping the pad rejoins them, in both libraries.
    tokenizer = ByteTokenizer()
    first, second = tokenizer.encode("é")
    ids = [first, 0, second]
    loaded = HFBackend.from_str(tokenizer.to_hf_json())
    assert tokenizer.decode(ids) == loaded.decode(ids, skip_special_tokens=True) == "é"
    assert tokenizer.decode(ids, skip_special=False) == loaded.decode(ids, skip_special_tokens=False)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("loader", ["PreTrainedTokenizerFast", "AutoTokenizer"])
def test_transformers_loads_the_export(
    ours: dict[str, Tokenizer], exported: dict[str, Path], kind: str, loader: str
) -> None:
    tokenizer = ours[kind]
    fast = getattr(transformers, loader).from_pretrained(exported[kind])
    assert (fast.pad_token_id, fast.bos_token_id, fast.eos_token_id, fast.unk_token_id) == (
        tokenizer.pad_id,
        tokenizer.bos_id,
        tokenizer.eos_id,
        tokenizer.unk_id,
    )
    assert (fast.pad_token, fast.bos_token, fast.eos_token, fast.unk_token) == SPECIAL_TOKENS
    assert len(fast) == tokenizer.vocab_size
    for text in [*CORPUS[:3], *SPECIAL_TEXTS]:
        ids = tokenizer.encode(text)
        # split_special_tokens=True from tokenizer_config.json: "<s>" in raw text stays text here too.
        assert fast.encode(text, add_special_tokens=False) == ids
        assert fast(text)["input_ids"] == ids  # the export has no post-processor: nothing is added
        framed = [tokenizer.bos_id, *ids, tokenizer.eos_id, tokenizer.pad_id]
        assert fast.decode(framed, skip_special_tokens=False) == tokenizer.decode(framed, skip_special=False)
        if UNK_ID not in ids:
            assert fast.decode(framed, skip_special_tokens=True) == tokenizer.decode(framed)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80))
def test_transformers_encode_equals_ours_on_any_text(
    ours: dict[str, Tokenizer], exported: dict[str, Path], text: str
) -> None:
    for kind in ("byte", "bpe"):
        fast = transformers.PreTrainedTokenizerFast.from_pretrained(exported[kind])
        ids = ours[kind].encode(text)
        assert fast.encode(text, add_special_tokens=False) == ids
        assert fast.decode(ids, skip_special_tokens=True) == ours[kind].decode(ids) == text


def test_bpe_export_refuses_a_vocabulary_holding_special_strings(ours: dict[str, Tokenizer]) -> None:
    state = json.loads(ours["bpe"].to_dict()["tokenizer_json"])
    state["model"]["vocab"]["<s>"] = len(state["model"]["vocab"])
    tokenizer = BPETokenizer(tokenizer_json=json.dumps(state))
    with pytest.raises(DataError, match=r"vocabulary holds \['<s>'\] as ordinary tokens"):
        tokenizer.to_hf_json()


# --- import: tokenizer.json -> HFTokenizer --------------------------------------------------------------


def gpt2_style(directory: Path) -> HFBackend:
    """Byte-level BPE with one special appended at the last id, which config.json names as bos and eos."""
    reference = HFBackend(models.BPE())
    reference.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    reference.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    reference.train_from_iterator(CORPUS, trainer=trainer)
    reference.add_special_tokens(["<|endoftext|>"])
    reference.save(str(directory / "tokenizer.json"))
    end = reference.token_to_id("<|endoftext|>")
    (directory / "config.json").write_text(json.dumps({"bos_token_id": end, "eos_token_id": [end]}))
    return reference


def wordpiece_style(directory: Path) -> HFBackend:
    """BERT-like WordPiece whose specials come after the vocabulary; tokenizer_config names them."""
    reference = HFBackend(models.WordPiece(unk_token="[UNK]"))
    reference.normalizer = normalizers.BertNormalizer(lowercase=True)
    reference.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    reference.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[UNK]"], show_progress=False)
    reference.train_from_iterator(CORPUS, trainer=trainer)
    reference.add_special_tokens([AddedToken(token, special=True) for token in ("[PAD]", "[CLS]", "[SEP]")])
    reference.save(str(directory / "tokenizer.json"))
    config = {"pad_token": {"content": "[PAD]", "lstrip": False}, "bos_token": "[CLS]", "unk_token": "[UNK]"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    (directory / "special_tokens_map.json").write_text(
        json.dumps({"eos_token": "[SEP]", "bos_token": "[PAD]"})
    )
    return reference


def t5_style(directory: Path) -> HFBackend:
    """SentencePiece-like Unigram with T5's layout: pad 0, eos 1, unk 2, no bos; unk only in the model."""
    reference = HFBackend(models.Unigram())
    reference.pre_tokenizer = pre_tokenizers.Metaspace()
    reference.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=150, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    reference.train_from_iterator(CORPUS, trainer=trainer)
    reference.save(str(directory / "tokenizer.json"))
    (directory / "special_tokens_map.json").write_text(
        json.dumps({"eos_token": "</s>", "pad_token": "<pad>"})
    )
    return reference


STYLES = {"gpt2": gpt2_style, "wordpiece": wordpiece_style, "t5": t5_style}


@pytest.fixture(scope="module", params=sorted(STYLES))
def imported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, HFBackend, Path]:
    directory = tmp_path_factory.mktemp(request.param)
    return request.param, STYLES[request.param](directory), directory


def expected_ids(style: str, reference: HFBackend) -> dict[str, int | None]:
    token = reference.token_to_id
    return {
        "gpt2": {
            "pad_id": None,
            "bos_id": token("<|endoftext|>"),
            "eos_id": token("<|endoftext|>"),
            "unk_id": None,
        },
        "wordpiece": {
            "pad_id": token("[PAD]"),
            "bos_id": token("[CLS]"),
            "eos_id": token("[SEP]"),
            "unk_id": token("[UNK]"),
        },
        "t5": {"pad_id": token("<pad>"), "bos_id": None, "eos_id": token("</s>"), "unk_id": token("<unk>")},
    }[style]


def test_from_pretrained_reads_the_special_ids(imported: tuple[str, HFBackend, Path]) -> None:
    style, reference, directory = imported
    tokenizer = HFTokenizer.from_pretrained(directory)
    named = {f"{role}_id": getattr(tokenizer, f"{role}_id") for role in ("pad", "bos", "eos", "unk")}
    assert named == expected_ids(style, reference)
    assert tokenizer.vocab_size == reference.get_vocab_size(with_added_tokens=True)
    specials = {token_id: token.content for token_id, token in reference.get_added_tokens_decoder().items()}
    assert tokenizer.special_tokens == specials
    if style != "t5":  # the point of these two: specials outside 0..3
        assert all(token_id >= 4 for token_id in specials if token_id != named["unk_id"])
    assert (
        HFTokenizer.from_pretrained(directory / "tokenizer.json").to_dict()["tokenizer_json"]
        == tokenizer.tokenizer_json
    )


@HYPOTHESIS
@given(text=st.text(max_size=120))
def test_imported_encode_equals_reference(imported: tuple[str, HFBackend, Path], text: str) -> None:
    style, reference, directory = imported
    tokenizer = HFTokenizer.from_pretrained(directory)
    reference.encode_special_tokens = True
    assert tokenizer.encode(text) == reference.encode(text, add_special_tokens=False).ids
    if style == "gpt2":  # byte-level: nothing is lost
        assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.parametrize("text", SPECIAL_TEXTS)
def test_imported_encode_keeps_special_strings_as_text(
    imported: tuple[str, HFBackend, Path], text: str
) -> None:
    style, reference, directory = imported
    tokenizer = HFTokenizer.from_pretrained(directory)
    ids = tokenizer.encode(text)
    reference.encode_special_tokens = True
    assert ids == reference.encode(text, add_special_tokens=False).ids
    if style == "t5":
        # A Unigram vocabulary holds "</s>" as a piece of its own, and segmentation may still choose it:
        # encode_special_tokens only stops the added-token split. Equal to the reference is all we promise.
        return
    assert not set(ids) & (set(tokenizer.special_tokens) - {tokenizer.unk_id})
    reference.encode_special_tokens = False
    if any(token in text for token in tokenizer.special_tokens.values()):
        assert ids != reference.encode(text, add_special_tokens=False).ids  # the library's default splits it


@HYPOTHESIS
@given(data=st.data())
def test_imported_decode_equals_reference(imported: tuple[str, HFBackend, Path], data: st.DataObject) -> None:
    _, reference, directory = imported
    tokenizer = HFTokenizer.from_pretrained(directory)
    ids = data.draw(in_range_ids(tokenizer.vocab_size))
    for skip in (True, False):
        assert tokenizer.decode(ids, skip_special=skip) == reference.decode(ids, skip_special_tokens=skip)
    assert tokenizer.decode(torch.tensor(ids, dtype=torch.long)) == reference.decode(ids)


def test_imported_round_trips_through_a_weights_only_checkpoint(
    imported: tuple[str, HFBackend, Path],
) -> None:
    tokenizer = HFTokenizer.from_pretrained(imported[2])
    buffer = io.BytesIO()
    torch.save({"tokenizer": tokenizer.to_dict()}, buffer)
    buffer.seek(0)
    rebuilt = Tokenizer.from_dict(torch.load(buffer, weights_only=True)["tokenizer"])
    assert type(rebuilt) is HFTokenizer
    assert rebuilt == tokenizer
    assert (rebuilt.pad_id, rebuilt.bos_id, rebuilt.eos_id, rebuilt.unk_id) == (
        tokenizer.pad_id,
        tokenizer.bos_id,
        tokenizer.eos_id,
        tokenizer.unk_id,
    )
    assert rebuilt.encode(CORPUS[1]) == tokenizer.encode(CORPUS[1])


def test_imported_save_pretrained_loads_in_transformers(
    imported: tuple[str, HFBackend, Path], tmp_path: Path
) -> None:
    tokenizer = HFTokenizer.from_pretrained(imported[2])
    again = HFTokenizer.from_pretrained(tokenizer.save_pretrained(tmp_path))
    assert again == tokenizer
    fast = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for role in ("pad", "bos", "eos", "unk"):
        assert getattr(fast, f"{role}_token_id") == getattr(tokenizer, f"{role}_id")
    for text in [CORPUS[2], *SPECIAL_TEXTS]:
        assert fast.encode(text, add_special_tokens=False) == tokenizer.encode(text)


@pytest.mark.parametrize("kind", KINDS)
def test_swapformer_export_imports_with_the_same_ids(
    ours: dict[str, Tokenizer], exported: dict[str, Path], kind: str
) -> None:
    tokenizer = HFTokenizer.from_pretrained(exported[kind])
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id) == (0, 1, 2, 3)
    assert tokenizer.vocab_size == ours[kind].vocab_size
    for text in [*CORPUS[:3], *SPECIAL_TEXTS]:
        ids = ours[kind].encode(text)
        assert tokenizer.encode(text) == ids
        assert tokenizer.decode([1, *ids, 2], skip_special=False) == ours[kind].decode(
            [1, *ids, 2], skip_special=False
        )


def test_imported_ignores_the_json_padding_and_truncation(tmp_path: Path) -> None:
    reference = gpt2_style(tmp_path)
    reference.enable_truncation(max_length=3)
    reference.enable_padding(length=50, pad_id=0)
    tokenizer = HFTokenizer(tokenizer_json=reference.to_str())
    reference.no_truncation()
    reference.no_padding()
    assert tokenizer.encode(CORPUS[0]) == reference.encode(CORPUS[0], add_special_tokens=False).ids
    assert len(tokenizer.encode(CORPUS[0])) > 3


# --- errors --------------------------------------------------------------------------------------------


def test_check_vocab_allows_a_padded_model_and_names_both_sizes(ours: dict[str, Tokenizer]) -> None:
    tokenizer = ours["byte"]
    check_vocab(tokenizer, tokenizer.vocab_size)
    check_vocab(tokenizer, tokenizer.vocab_size + 100)  # HF models often pad their embedding
    message = (
        rf"^the byte tokenizer has {tokenizer.vocab_size} ids but the model's vocabulary has 200; use the "
        rf"tokenizer the model was trained with, or a model with vocab_size >= {tokenizer.vocab_size}\.$"
    )
    with pytest.raises(DataError, match=message):
        check_vocab(tokenizer, 200)


def test_from_pretrained_without_tokenizer_json(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no tokenizer.json at .*; give a Hugging Face tokenizer directory"):
        HFTokenizer.from_pretrained(tmp_path)


def test_from_pretrained_with_an_unknown_special_token(tmp_path: Path) -> None:
    gpt2_style(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<pad>"}))
    with pytest.raises(DataError, match=r"tokenizer_config.json names pad_token='<pad>', which is not in"):
        HFTokenizer.from_pretrained(tmp_path)


def test_special_id_outside_the_vocabulary(tmp_path: Path) -> None:
    reference = gpt2_style(tmp_path)
    size = reference.get_vocab_size()
    with pytest.raises(DataError, match=rf"eos_id={size} is not an id of this tokenizer; .*\[0, {size}\)"):
        HFTokenizer(tokenizer_json=reference.to_str(), eos_id=size)


def test_imported_decode_out_of_range(tmp_path: Path) -> None:
    tokenizer = HFTokenizer(tokenizer_json=gpt2_style(tmp_path).to_str())
    with pytest.raises(DataError, match=rf"cannot decode id {tokenizer.vocab_size}: this hf tokenizer"):
        tokenizer.decode([0, tokenizer.vocab_size])


def test_unloadable_json() -> None:
    with pytest.raises(
        DataError, match=r"cannot load the tokenizer JSON: .*pass the text of a tokenizer.json"
    ):
        HFTokenizer(tokenizer_json='{"model": 1}')


def test_bpe_train_never_learns_a_special_string() -> None:
    tokenizer = BPETokenizer.train(["<s>x</s> <pad><unk> " * 50], vocab_size=300, min_frequency=1)
    loaded = HFBackend.from_str(tokenizer.to_hf_json())
    assert [loaded.token_to_id(token) for token in SPECIAL_TOKENS] == [0, 1, 2, 3]
