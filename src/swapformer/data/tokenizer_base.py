"""The tokenizer interface and the four special tokens every tokenizer shares at fixed ids.

Every tokenizer reserves ids 0..3, so models, collators and checkpoints never have to ask which id is
padding::

    0 <pad>   1 <s> (bos)   2 </s> (eos)   3 <unk>   4.. ordinary tokens

``encode`` never adds specials; callers add bos/eos where the task needs them. ``to_dict`` holds only
plain Python values so a tokenizer can live inside a checkpoint loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from swapformer.data.errors import DataError

__all__ = ["BOS_ID", "EOS_ID", "NUM_SPECIAL_TOKENS", "PAD_ID", "SPECIAL_TOKENS", "UNK_ID", "Tokenizer"]

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
NUM_SPECIAL_TOKENS = len(SPECIAL_TOKENS)
# Shown in place of <unk> when specials are skipped, so a lossy round-trip stays visible.
_REPLACEMENT_CHAR = "\ufffd"


class Tokenizer:
    """Base class: maps text to integer ids and back.

    Subclasses set ``kind``, implement ``encode``, ``vocab_size``, ``_decode_ordinary`` (ids >= 4 only),
    ``_state`` and ``_from_state``; the base class handles special tokens and (de)serialisation.
    """

    kind: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[Tokenizer]]] = {}
    pad_id: ClassVar[int] = PAD_ID
    bos_id: ClassVar[int] = BOS_ID
    eos_id: ClassVar[int] = EOS_ID
    unk_id: ClassVar[int] = UNK_ID

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            Tokenizer._registry[cls.kind] = cls

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included; every id is in ``range(vocab_size)``."""
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Convert ``text`` to ids, without adding bos/eos."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        """Convert ids back to text.

        Args:
            ids: Token ids (a list, or a 1-D tensor).
            skip_special: Drop ``<pad>``, ``<s>`` and ``</s>`` and show ``<unk>`` as U+FFFD. When False,
                every special is written out as its token string, e.g. ``"<s>"``.

        Returns:
            The decoded text.

        Raises:
            DataError: If an id is outside ``range(vocab_size)``.
        """
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        pieces: list[str] = []
        run: list[int] = []
        for token_id in ids:
            token_id = int(token_id)
            if not 0 <= token_id < self.vocab_size:
                raise DataError(
                    f"cannot decode id {token_id}: this {self.kind} tokenizer has vocab_size={self.vocab_size}; "
                    f"ids must be in [0, {self.vocab_size})."
                )
            if token_id >= NUM_SPECIAL_TOKENS:
                run.append(token_id)
                continue
            if run:
                pieces.append(self._decode_ordinary(run))
                run = []
            if not skip_special:
                pieces.append(SPECIAL_TOKENS[token_id])
            elif token_id == UNK_ID:
                pieces.append(_REPLACEMENT_CHAR)
        if run:
            pieces.append(self._decode_ordinary(run))
        return "".join(pieces)

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
        if kind not in Tokenizer._registry:
            raise DataError(
                f"cannot rebuild a tokenizer from kind={kind!r}; expected a dict from Tokenizer.to_dict() "
                f"with 'kind' in {sorted(Tokenizer._registry)}."
            )
        return Tokenizer._registry[kind]._from_state(state)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.to_dict().items())))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"

    def _decode_ordinary(self, ids: list[int]) -> str:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> Tokenizer:
        raise NotImplementedError
