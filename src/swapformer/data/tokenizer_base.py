"""The tokenizer interface and the four special tokens swapformer's own tokenizers share at fixed ids.

The tokenizers swapformer fits (char, byte, bpe) reserve ids 0..3, so models, collators and checkpoints
never have to ask which id is padding::

    0 <pad>   1 <s> (bos)   2 </s> (eos)   3 <unk>   4.. ordinary tokens

A tokenizer imported from Hugging Face (:class:`~swapformer.data.hf_tokenizer.HFTokenizer`) keeps its own
ids instead; code that needs a special id reads it from the instance (``tokenizer.pad_id``, which is None
when the tokenizer has no padding token).

``encode`` never adds specials, and the text of a special token inside raw text (``"<s>"``) is encoded as
ordinary text; callers add bos/eos where the task needs them. ``to_dict`` holds only plain Python values so
a tokenizer can live inside a checkpoint loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from swapformer.data.errors import DataError
from swapformer.registry import Registry

if TYPE_CHECKING:
    from tokenizers import Tokenizer as HFBackend

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "NUM_SPECIAL_TOKENS",
    "PAD_ID",
    "SPECIAL_TOKENS",
    "UNK_ID",
    "Tokenizer",
    "check_vocab",
]

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
NUM_SPECIAL_TOKENS = len(SPECIAL_TOKENS)
# Shown in place of <unk> when specials are skipped, so a lossy round-trip stays visible.
_REPLACEMENT_CHAR = "\ufffd"

TOKENIZER_CLASSES = Registry("tokenizer class", "the class that rebuilds a saved tokenizer", error=DataError)
"""Each :class:`Tokenizer` subclass that declares its own ``kind``, registered under it when the class is made;
:meth:`Tokenizer.from_dict` rebuilds a saved tokenizer with the class of its kind."""


class Tokenizer:
    """Base class: maps text to integer ids and back.

    Subclasses set ``kind``, implement ``encode``, ``vocab_size``, ``_decode_ordinary`` (ordinary ids
    only), ``to_hf_json``, ``_state`` and ``_from_state``; the base class handles special tokens,
    (de)serialisation and :meth:`save_pretrained`.

    The special ids default to 0..3 (``PAD_ID`` ...); a subclass with other specials sets ``pad_id``,
    ``bos_id``, ``eos_id``, ``unk_id`` on the instance (None where it has none) and overrides
    ``special_tokens``.
    """

    kind: ClassVar[str] = ""
    pad_id: int | None = PAD_ID
    bos_id: int | None = BOS_ID
    eos_id: int | None = EOS_ID
    unk_id: int | None = UNK_ID

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in vars(cls) and cls.kind:  # a subclass that keeps its parent's kind is not another kind
            TOKENIZER_CLASSES.add(cls.kind, cls)

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included; every id is in ``range(vocab_size)``."""
        raise NotImplementedError

    @property
    def special_tokens(self) -> dict[int, str]:
        """The special ids and their token strings, e.g. ``{0: "<pad>", 1: "<s>", 2: "</s>", 3: "<unk>"}``."""
        return dict(enumerate(SPECIAL_TOKENS))

    def encode(self, text: str) -> list[int]:
        """Convert ``text`` to ids, without adding bos/eos; special-token strings in ``text`` are text."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        """Convert ids back to text.

        Args:
            ids: Token ids (a list, or a 1-D tensor).
            skip_special: Drop ``<pad>``, ``<s>`` and ``</s>`` and show ``<unk>`` as U+FFFD. When False,
                every special is written out as its token string, e.g. ``"<s>"``. A dropped special does
                not split the ids around it (the byte halves of one character either side still join), as
                in Hugging Face's ``decode(ids, skip_special_tokens=True)``.

        Returns:
            The decoded text.

        Raises:
            DataError: If an id is outside ``range(vocab_size)``.
        """
        specials = self.special_tokens
        pieces: list[str] = []
        run: list[int] = []
        for token_id in self._checked_ids(ids):
            if token_id not in specials:
                run.append(token_id)
                continue
            if skip_special and token_id != self.unk_id:
                continue
            if run:
                pieces.append(self._decode_ordinary(run))
                run = []
            pieces.append(_REPLACEMENT_CHAR if skip_special else specials[token_id])
        if run:
            pieces.append(self._decode_ordinary(run))
        return "".join(pieces)

    def to_hf_json(self) -> str:
        """This tokenizer as a Hugging Face ``tokenizer.json`` string with the same ids, specials at 0..3.

        Loaded with ``tokenizers.Tokenizer.from_str`` (or ``from_file``) it agrees with this tokenizer:

        - ``encode(text, add_special_tokens=False).ids == self.encode(text)`` for every text once
          ``encode_special_tokens = True`` is set on the loaded tokenizer. Without it (the library's default;
          the JSON cannot store the setting) a text holding ``"<pad>"``, ``"<s>"``, ``"</s>"`` or
          ``"<unk>"`` literally gets that special's id there, where swapformer encodes the string as text.
          The specials are still registered as special added tokens, the Hugging Face convention that
          ``skip_special_tokens`` and ``transformers`` rely on; :meth:`save_pretrained` writes
          ``split_special_tokens: true``, with which ``transformers`` sets ``encode_special_tokens`` itself.
        - ``decode(ids, skip_special_tokens=False) == self.decode(ids, skip_special=False)``;
          with ``skip_special_tokens=True`` it drops ``<unk>`` where swapformer shows U+FFFD.
        """
        raise NotImplementedError

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write a Hugging Face tokenizer directory: ``tokenizer.json``, ``tokenizer_config.json`` and
        ``special_tokens_map.json``.

        ``transformers.AutoTokenizer.from_pretrained(directory)`` loads it as a ``PreTrainedTokenizerFast``
        with the pad/bos/eos/unk tokens set and ``split_special_tokens=True``, so its
        ``encode(text, add_special_tokens=False)`` equals :meth:`encode` for every text, and its
        ``decode`` equals :meth:`decode` except that ``skip_special_tokens=True`` drops ``<unk>`` where
        swapformer shows U+FFFD.

        Args:
            directory: Created if missing; existing files of those names are replaced.

        Returns:
            The directory.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        specials = self.special_tokens
        roles = {
            f"{role}_token": specials[token_id]
            for role, token_id in (
                ("bos", self.bos_id),
                ("eos", self.eos_id),
                ("unk", self.unk_id),
                ("pad", self.pad_id),
            )
            if token_id is not None
        }
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            # swapformer encodes "<s>" inside raw text as text; transformers would otherwise split it out.
            "split_special_tokens": True,
            "clean_up_tokenization_spaces": False,
            **roles,
        }
        (directory / "tokenizer.json").write_text(self.to_hf_json(), encoding="utf-8")
        (directory / "tokenizer_config.json").write_text(
            json.dumps(config, indent=2) + "\n", encoding="utf-8"
        )
        (directory / "special_tokens_map.json").write_text(
            json.dumps(roles, indent=2) + "\n", encoding="utf-8"
        )
        return directory

    def to_dict(self) -> dict[str, Any]:
        """Serialise to plain Python values (str/int/list/dict) with a ``"kind"`` key."""
        return {"kind": self.kind, **self._state()}

    @staticmethod
    def from_dict(state: dict[str, Any]) -> Tokenizer:
        """Rebuild a tokenizer saved with :meth:`to_dict`, dispatching on ``state["kind"]``.

        Raises:
            DataError: If ``kind`` is missing or unknown.
        """
        kind = state.get("kind") if isinstance(state, dict) else None
        if kind not in TOKENIZER_CLASSES:
            raise DataError(
                f"cannot rebuild a tokenizer from kind={kind!r}; expected a dict from Tokenizer.to_dict() "
                f"with 'kind' in {list(TOKENIZER_CLASSES)}."
            )
        return TOKENIZER_CLASSES[kind]._from_state(state)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.to_dict().items())))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"

    def _checked_ids(self, ids: Iterable[int]) -> list[int]:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        vocab_size = self.vocab_size
        for token_id in ids:
            if not 0 <= int(token_id) < vocab_size:
                raise DataError(
                    f"cannot decode id {int(token_id)}: this {self.kind} tokenizer has vocab_size={vocab_size}; "
                    f"ids must be in [0, {vocab_size})."
                )
        return [int(token_id) for token_id in ids]

    def _decode_ordinary(self, ids: list[int]) -> str:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> Tokenizer:
        raise NotImplementedError


def check_vocab(tokenizer: Tokenizer, vocab_size: int) -> None:
    """Check that every id of ``tokenizer`` has a row in a model's vocabulary of ``vocab_size``.

    A tokenizer smaller than the model's vocabulary is fine (Hugging Face models often pad the embedding
    to a multiple of 64 or 128); a larger one would index past the embedding.

    Raises:
        DataError: If ``tokenizer.vocab_size > vocab_size``; one line naming both sizes and the fix.
    """
    if tokenizer.vocab_size > vocab_size:
        raise DataError(
            f"the {tokenizer.kind} tokenizer has {tokenizer.vocab_size} ids but the model's vocabulary has "
            f"{vocab_size}; use the tokenizer the model was trained with, or a model with vocab_size >= "
            f"{tokenizer.vocab_size}."
        )


def _with_specials(backend: HFBackend) -> str:
    """``backend`` (whose model vocabulary already holds ids 0..3 as the special strings) with the four
    specials registered as special added tokens, serialised."""
    from tokenizers import AddedToken

    backend.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS]
    )
    placed = [backend.token_to_id(token) for token in SPECIAL_TOKENS]
    if placed != list(range(NUM_SPECIAL_TOKENS)):
        raise DataError(f"exported special tokens {list(SPECIAL_TOKENS)} landed at ids {placed}, not 0..3.")
    return backend.to_str()
