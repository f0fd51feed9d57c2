"""Byte-level BPE (GPT-2 style) trained offline with the Hugging Face ``tokenizers`` library."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from swapformer.data.errors import DataError
from swapformer.data.tokenizer_base import NUM_SPECIAL_TOKENS, SPECIAL_TOKENS, Tokenizer, _with_specials

__all__ = ["BPETokenizer"]

# Safe places to cut a long text before batch encoding: after "<non-space>\n" and before a non-space,
# the ByteLevel pre-tokenizer splits there anyway, so chunked and whole-text encodings are identical.
_SAFE_CUT = re.compile(r"(?<=\S\n)(?=\S)")
_CHUNK_CHARS = 1 << 16


def _safe_chunks(text: str) -> list[str]:
    chunks, start = [], 0
    for match in _SAFE_CUT.finditer(text):
        if match.start() - start >= _CHUNK_CHARS:
            chunks.append(text[start : match.start()])
            start = match.start()
    chunks.append(text[start:])
    return chunks


class BPETokenizer(Tokenizer):
    """Byte-level BPE (GPT-2 style) backed by the Hugging Face ``tokenizers`` library.

    The Hugging Face tokenizer knows no special tokens: registered specials would be matched inside raw
    text, so a corpus containing the string ``"<s>"`` (an HTML tag) would produce a bos id. Instead its
    ids are shifted by 4 here, leaving 0..3 to our specials::

        our id = Hugging Face id + 4

    Args:
        tokenizer_json: The trained tokenizer as produced by ``tokenizers.Tokenizer.to_str()``, without
            special tokens. Use :meth:`train` to create one.

    Raises:
        DataError: If the JSON registers added/special tokens.
    """

    kind = "bpe"

    def __init__(self, *, tokenizer_json: str) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self.tokenizer_json = tokenizer_json
        self._hf = HFTokenizer.from_str(tokenizer_json)
        added = sorted(token.content for token in self._hf.get_added_tokens_decoder().values())
        if added:
            raise DataError(
                f"the BPE tokenizer JSON registers added tokens {added}; they would be matched inside raw "
                f"text. Train it with BPETokenizer.train, which keeps specials outside the JSON."
            )

    @classmethod
    def train(
        cls, texts: str | Iterable[str], *, vocab_size: int = 4096, min_frequency: int = 2
    ) -> BPETokenizer:
        """Train byte-level BPE merges on ``texts``, offline and deterministically.

        Args:
            texts: Training documents; a single long string is cut into chunks at line breaks.
            vocab_size: Target vocabulary size including the 4 specials and the 256 byte tokens; the result
                can be smaller when the text runs out of merges.
            min_frequency: A pair must occur this many times to be merged.

        Returns:
            The trained tokenizer.

        Raises:
            DataError: If ``vocab_size`` < 260 or ``min_frequency`` < 1.
        """
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        minimum = NUM_SPECIAL_TOKENS + 256
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < minimum:
            raise DataError(
                f"bpe vocab_size={vocab_size!r} is too small: it must be >= {minimum} "
                f"(4 specials + 256 bytes); set tokenizer_options.vocab_size to e.g. 4096."
            )
        if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 1:
            raise DataError(f"bpe min_frequency={min_frequency!r} must be an integer >= 1.")
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size - NUM_SPECIAL_TOKENS,
            min_frequency=min_frequency,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(_safe_chunks(texts) if isinstance(texts, str) else texts, trainer=trainer)
        return cls(tokenizer_json=hf.to_str())

    @property
    def vocab_size(self) -> int:
        return self._hf.get_vocab_size() + NUM_SPECIAL_TOKENS

    def encode(self, text: str) -> list[int]:
        if len(text) <= _CHUNK_CHARS:
            encodings = [self._hf.encode(text)]
        else:
            # One huge string encodes several times slower than many chunks in a batch.
            encodings = self._hf.encode_batch(_safe_chunks(text))
        return [token_id + NUM_SPECIAL_TOKENS for encoding in encodings for token_id in encoding.ids]

    def _decode_ordinary(self, ids: list[int]) -> str:
        return self._hf.decode([token_id - NUM_SPECIAL_TOKENS for token_id in ids])

    def to_hf_json(self) -> str:
        """The same merges with the vocabulary shifted back to our ids and the specials at 0..3; see
        :meth:`Tokenizer.to_hf_json`.

        Raises:
            DataError: If the vocabulary holds a special's string as an ordinary token (one id cannot have two
                meanings in ``tokenizer.json``). ``train``'s regex pre-tokenizer never produces one: it cuts
                ``"<s>"`` into ``"<"``, ``"s"``, ``">"``.
        """
        from tokenizers import Tokenizer as HFBackend

        state = json.loads(self.tokenizer_json)
        vocab = state["model"].get("vocab")
        if not isinstance(vocab, dict):
            raise DataError(
                f"cannot export a {state['model'].get('type')} model: only models with a token-to-id vocabulary "
                f"(BPE, WordPiece, WordLevel) can be shifted to swapformer's ids."
            )
        clashes = sorted(set(SPECIAL_TOKENS) & set(vocab))
        if clashes:
            raise DataError(
                f"cannot export this BPE tokenizer: its vocabulary holds {clashes} as ordinary tokens, the strings "
                f"of swapformer's special tokens; retrain it with BPETokenizer.train."
            )
        shifted = {token: token_id + NUM_SPECIAL_TOKENS for token, token_id in vocab.items()}
        state["model"]["vocab"] = {token: token_id for token_id, token in enumerate(SPECIAL_TOKENS)} | shifted
        return _with_specials(HFBackend.from_str(json.dumps(state)))

    def _state(self) -> dict[str, Any]:
        return {"tokenizer_json": self.tokenizer_json}

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> BPETokenizer:
        return cls(tokenizer_json=state["tokenizer_json"])
