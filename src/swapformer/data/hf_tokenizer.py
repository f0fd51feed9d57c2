"""Any Hugging Face ``tokenizer.json`` as a swapformer :class:`Tokenizer`, with the model's own ids.

GPT-2, Llama, T5 or BERT tokenizers keep their vocabularies and special ids (GPT-2: bos = eos = 50256 and
no padding); only the swapformer contract is added on top: ``encode`` never adds specials and does not
split the text of a special token (``"<|endoftext|>"`` inside a document) out as that special, and the
tokenizer serialises to plain values for a weights-only checkpoint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from swapformer.data.errors import DataError
from swapformer.data.tokenizer_base import Tokenizer

__all__ = ["HFTokenizer"]

_ROLES = ("pad", "bos", "eos", "unk")


class HFTokenizer(Tokenizer):
    """A Hugging Face ``tokenizers`` tokenizer behind the swapformer interface.

    Its ids are the wrapped tokenizer's ids. ``encode(text)`` equals the ``tokenizers`` library's
    ``encode(text, add_special_tokens=False).ids`` with ``encode_special_tokens = True`` (what
    ``transformers`` calls ``split_special_tokens=True``), and the JSON's padding and truncation switched
    off. That setting keeps special-token strings in raw text from being split out as specials, as for every
    swapformer tokenizer; a model whose own vocabulary holds the special as a piece (SentencePiece
    conversions such as T5's Unigram list ``"</s>"``) may still segment the text into that id, exactly as
    the library does. ``decode`` is the library's ``decode``, so ``skip_special=True`` drops every special
    token, ``<unk>`` included, where swapformer's own tokenizers show U+FFFD for ``<unk>``.

    Args:
        tokenizer_json: A ``tokenizer.json`` as a string.
        pad_id, bos_id, eos_id, unk_id: The special ids, None where the tokenizer has no such token. Use
            :meth:`from_pretrained` to read them from a Hugging Face directory.

    Raises:
        DataError: If the JSON does not load or a special id is outside ``range(vocab_size)``.
    """

    kind = "hf"

    def __init__(
        self,
        *,
        tokenizer_json: str,
        pad_id: int | None = None,
        bos_id: int | None = None,
        eos_id: int | None = None,
        unk_id: int | None = None,
    ) -> None:
        from tokenizers import Tokenizer as HFBackend

        self.tokenizer_json = tokenizer_json
        try:
            self._hf = HFBackend.from_str(tokenizer_json)
        except Exception as error:
            raise DataError(
                f"cannot load the tokenizer JSON: {error}; pass the text of a tokenizer.json."
            ) from None
        self._hf.no_padding()
        self._hf.no_truncation()
        # Not stored in tokenizer.json, so it is set here on every load.
        self._hf.encode_special_tokens = True
        vocab = self._hf.get_vocab(with_added_tokens=True)
        self._vocab_size = max(vocab.values(), default=-1) + 1
        self._set_special_ids(pad_id=pad_id, bos_id=bos_id, eos_id=eos_id, unk_id=unk_id)

    def _set_special_ids(self, **ids: int | None) -> None:
        for role in _ROLES:
            token_id = ids[f"{role}_id"]
            if token_id is not None and not (
                isinstance(token_id, int)
                and not isinstance(token_id, bool)
                and 0 <= token_id < self._vocab_size
            ):
                raise DataError(
                    f"{role}_id={token_id!r} is not an id of this tokenizer; it must be None or in "
                    f"[0, {self._vocab_size})."
                )
            setattr(self, f"{role}_id", token_id)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str]) -> HFTokenizer:
        """Load a Hugging Face tokenizer directory (or a ``tokenizer.json`` file directly).

        The special tokens come from the first file that names each of them: ``tokenizer_config.json``,
        ``special_tokens_map.json`` (token strings), then ``config.json`` (``pad_token_id``,
        ``bos_token_id``, ``eos_token_id``; the first of a list), then the model's own ``unk_token``.

        Raises:
            DataError: If there is no ``tokenizer.json`` or a named special token is not in its vocabulary.
        """
        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise DataError(
                f"no tokenizer.json at {file}; give a Hugging Face tokenizer directory (save_pretrained writes one)."
            )
        tokenizer = cls(tokenizer_json=file.read_text(encoding="utf-8"))
        model = json.loads(tokenizer.tokenizer_json).get("model", {})
        tokenizer._set_special_ids(**_special_ids(tokenizer._hf, model, file.parent))
        return tokenizer

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def special_tokens(self) -> dict[int, str]:
        tokens = {
            token_id: token.content
            for token_id, token in self._hf.get_added_tokens_decoder().items()
            if token.special
        }
        for role in _ROLES:
            token_id = getattr(self, f"{role}_id")
            if token_id is not None and token_id not in tokens:
                tokens[token_id] = self._hf.id_to_token(token_id)
        return tokens

    def encode(self, text: str) -> list[int]:
        return self._hf.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        """Convert ids back to text with the wrapped tokenizer's decoder (whole sequences, so decoders
        that look at neighbouring tokens, like SentencePiece's leading space, behave as in Hugging Face).

        Raises:
            DataError: If an id is outside ``range(vocab_size)``.
        """
        return self._hf.decode(self._checked_ids(ids), skip_special_tokens=skip_special)

    def to_hf_json(self) -> str:
        return self.tokenizer_json

    def __repr__(self) -> str:
        named = ", ".join(f"{role}_id={getattr(self, f'{role}_id')}" for role in _ROLES)
        return f"HFTokenizer(vocab_size={self.vocab_size}, {named})"

    def _state(self) -> dict[str, Any]:
        return {
            "tokenizer_json": self.tokenizer_json,
            **{f"{role}_id": getattr(self, f"{role}_id") for role in _ROLES},
        }

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> HFTokenizer:
        return cls(
            tokenizer_json=state["tokenizer_json"], **{f"{role}_id": state[f"{role}_id"] for role in _ROLES}
        )


def _special_ids(backend: Any, model: dict[str, Any], directory: Path) -> dict[str, int | None]:
    ids: dict[str, int | None] = dict.fromkeys((f"{role}_id" for role in _ROLES), None)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        config = _read_json(directory / name)
        for role in _ROLES:
            token = config.get(f"{role}_token")
            if isinstance(token, dict):  # {"content": "<s>", "lstrip": false, ...}
                token = token.get("content")
            if ids[f"{role}_id"] is not None or not isinstance(token, str):
                continue
            token_id = backend.token_to_id(token)
            if token_id is None:
                raise DataError(
                    f"{name} names {role}_token={token!r}, which is not in tokenizer.json's vocabulary; "
                    f"fix {directory / name} or remove the entry."
                )
            ids[f"{role}_id"] = token_id
    model_config = _read_json(directory / "config.json")
    for role in ("pad", "bos", "eos"):
        token_id = model_config.get(f"{role}_token_id")
        if isinstance(token_id, list):  # Llama 3 lists several end-of-sequence ids; the first is the main one
            token_id = token_id[0] if token_id else None
        if ids[f"{role}_id"] is None and isinstance(token_id, int):
            ids[f"{role}_id"] = token_id
    if ids["unk_id"] is None:
        unk = model.get("unk_token")  # BPE, WordPiece, WordLevel name it; Unigram gives "unk_id"
        ids["unk_id"] = backend.token_to_id(unk) if isinstance(unk, str) else model.get("unk_id")
    return ids


def _read_json(file: Path) -> dict[str, Any]:
    if not file.is_file():
        return {}
    try:
        loaded = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{file} is not valid JSON ({error}); fix or remove it.") from None
    return loaded if isinstance(loaded, dict) else {}
