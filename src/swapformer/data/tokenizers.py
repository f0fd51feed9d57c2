"""Character and byte tokenizers, and :func:`build_tokenizer`, which fits the tokenizer :data:`TOKENIZER_KINDS`
names.

See :mod:`swapformer.data.tokenizer_base` for the shared special tokens and interface,
:mod:`swapformer.data.bpe` for byte-level BPE and :mod:`swapformer.data.hf_tokenizer` for Hugging Face
tokenizers (loaded, not fitted, so not in ``TOKENIZER_KINDS``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from swapformer.data.bpe import BPETokenizer
from swapformer.data.errors import DataError
from swapformer.data.hf_tokenizer import HFTokenizer
from swapformer.data.tokenizer_base import (
    BOS_ID,
    EOS_ID,
    NUM_SPECIAL_TOKENS,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    Tokenizer,
    _with_specials,
    check_vocab,
)
from swapformer.errors import did_you_mean
from swapformer.registry import Registry

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "NUM_SPECIAL_TOKENS",
    "PAD_ID",
    "SPECIAL_TOKENS",
    "TOKENIZER_KINDS",
    "UNK_ID",
    "BPETokenizer",
    "ByteTokenizer",
    "CharTokenizer",
    "HFTokenizer",
    "Tokenizer",
    "build_tokenizer",
    "check_vocab",
]

TOKENIZER_KINDS = Registry(
    "tokenizer", "a tokenizer fitted on the training text", order="registration", error=DataError
)
"""The tokenizers a data module fits, by name: functions ``(texts, **options) -> Tokenizer``."""


class CharTokenizer(Tokenizer):
    """One id per Unicode character seen while fitting; unseen characters map to ``<unk>``.

    Args:
        chars: The vocabulary in id order (ids 4, 5, ...). Use :meth:`fit` to build it from text.

    Raises:
        DataError: If ``chars`` is empty or holds duplicates or multi-character strings.
    """

    kind = "char"

    def __init__(self, *, chars: Iterable[str]) -> None:
        self.chars = list(chars)
        if not self.chars:
            raise DataError("CharTokenizer needs at least one character; fit it on non-empty text.")
        if any(len(char) != 1 for char in self.chars) or len(set(self.chars)) != len(self.chars):
            raise DataError("CharTokenizer chars must be distinct single characters; use CharTokenizer.fit.")
        self._ids = {char: index + NUM_SPECIAL_TOKENS for index, char in enumerate(self.chars)}

    @classmethod
    def fit(cls, texts: str | Iterable[str]) -> CharTokenizer:
        """Build the vocabulary from training text: the sorted set of characters it contains.

        Raises:
            DataError: If the texts contain no characters.
        """
        texts = [texts] if isinstance(texts, str) else texts
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        if not seen:
            raise DataError("cannot fit a char tokenizer on empty text; give it at least one character.")
        return cls(chars=sorted(seen))

    @property
    def vocab_size(self) -> int:
        return NUM_SPECIAL_TOKENS + len(self.chars)

    def encode(self, text: str) -> list[int]:
        ids = self._ids
        return [ids.get(char, UNK_ID) for char in text]

    def _decode_ordinary(self, ids: list[int]) -> str:
        return "".join(self.chars[token_id - NUM_SPECIAL_TOKENS] for token_id in ids)

    def to_hf_json(self) -> str:
        """A ``WordLevel`` model over single characters (a regex pre-tokenizer isolates each code point,
        ``<unk>`` for the rest) with a ``Fuse`` decoder; see :meth:`Tokenizer.to_hf_json`."""
        from tokenizers import Regex, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as HFBackend

        vocab = {token: token_id for token_id, token in enumerate(SPECIAL_TOKENS)} | {
            char: token_id for char, token_id in self._ids.items()
        }
        backend = HFBackend(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS[UNK_ID]))
        # Oniguruma's (?m) is "dot matches newline": every code point, "\n" included, is its own word.
        backend.pre_tokenizer = pre_tokenizers.Split(Regex("(?m)."), behavior="isolated")
        backend.decoder = decoders.Fuse()
        return _with_specials(backend)

    def _state(self) -> dict[str, Any]:
        return {"chars": list(self.chars)}

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> CharTokenizer:
        return cls(chars=state["chars"])


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes: id = 4 + byte value, so the vocabulary is fixed at 260 and nothing is unknown."""

    kind = "byte"

    @classmethod
    def fit(cls, texts: str | Iterable[str]) -> ByteTokenizer:
        """The byte tokenizer: its vocabulary is fixed, so ``texts`` is not read."""
        return cls()

    @property
    def vocab_size(self) -> int:
        return NUM_SPECIAL_TOKENS + 256

    def encode(self, text: str) -> list[int]:
        return [byte + NUM_SPECIAL_TOKENS for byte in text.encode("utf-8")]

    def _decode_ordinary(self, ids: list[int]) -> str:
        # A model may emit a byte sequence that is not valid UTF-8; show U+FFFD rather than failing.
        return bytes(token_id - NUM_SPECIAL_TOKENS for token_id in ids).decode("utf-8", errors="replace")

    def to_hf_json(self) -> str:
        """A byte-level BPE without merges: GPT-2's byte-to-character table maps byte ``b`` to one vocabulary
        character at id ``4 + b``; see :meth:`Tokenizer.to_hf_json`."""
        from tokenizers import Tokenizer as HFBackend
        from tokenizers import decoders, models, pre_tokenizers

        vocab = {token: token_id for token_id, token in enumerate(SPECIAL_TOKENS)} | {
            char: byte + NUM_SPECIAL_TOKENS for byte, char in enumerate(_byte_characters())
        }
        backend = HFBackend(models.BPE(vocab, []))
        # No regex split: the whole text is one word, so no byte is ever merged with another.
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        backend.decoder = decoders.ByteLevel()
        return _with_specials(backend)

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> ByteTokenizer:
        return cls()


def _byte_characters() -> list[str]:
    """GPT-2's ``bytes_to_unicode``: the printable character standing for each byte 0..255 in byte-level
    vocabularies (printable Latin-1 bytes stand for themselves, the rest are shifted past U+0100)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    characters, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            characters[byte] = chr(byte)
        else:
            characters[byte] = chr(256 + shifted)
            shifted += 1
    return [characters[byte] for byte in range(256)]


TOKENIZER_KINDS.add("char", CharTokenizer.fit, description="one id per character of the training text")
TOKENIZER_KINDS.add("byte", ByteTokenizer.fit, description="UTF-8 bytes: 256 ids, nothing is unknown")
TOKENIZER_KINDS.add("bpe", BPETokenizer.train, description="byte-level BPE merges trained on the text")


def build_tokenizer(kind: str, texts: str | Iterable[str], **options: Any) -> Tokenizer:
    """Build a tokenizer of the named kind, fitted on ``texts`` where the kind needs fitting.

    Args:
        kind: One of :data:`TOKENIZER_KINDS`: ``"char"``, ``"byte"``, ``"bpe"`` and those plug-ins add.
        texts: Training text (ignored by ``"byte"``).
        **options: Kind-specific options, e.g. ``vocab_size`` and ``min_frequency`` for ``"bpe"``.

    Returns:
        The fitted tokenizer.

    Raises:
        DataError: If ``kind`` is unknown or an option is not accepted by that kind.
    """
    if kind not in TOKENIZER_KINDS:
        raise DataError(
            f"unknown tokenizer {kind!r}{did_you_mean(str(kind), TOKENIZER_KINDS)}; "
            f"choose one of {list(TOKENIZER_KINDS)}."
        )
    member = TOKENIZER_KINDS.get(kind)
    accepted = [name for name in member.options if name != "texts"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DataError(
            f"tokenizer {kind!r} does not accept option(s) {unknown}; accepted options: {accepted or 'none'}."
        )
    return member.factory(texts, **options)
