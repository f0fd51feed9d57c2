"""Tokenised (source, target) examples and the collator that pads them into batches.

Sequences carry specials as the encoder-decoder models expect::

    source  a b c </s>
    target  <s> x y </s>      the decoder reads target[:-1] and predicts target[1:]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from swapformer.data.errors import DataError
from swapformer.data.tokenizers import Tokenizer

__all__ = ["EncodedPair", "PairCollator", "PairDataset", "encode_pairs"]


@dataclass(frozen=True)
class EncodedPair:
    """One example: token ids with specials, and the raw strings for BLEU / exact match."""

    src_ids: list[int]
    tgt_ids: list[int]
    src_text: str
    tgt_text: str


def encode_pairs(
    pairs: Sequence[tuple[str, str]],
    *,
    tokenizer: Tokenizer,
    max_src_len: int,
    max_tgt_len: int,
    truncate: bool,
    split: str,
) -> list[EncodedPair]:
    """Tokenise pairs as ``source + [eos]`` and ``[bos] + target + [eos]``, enforcing length limits.

    Args:
        pairs: ``(source, target)`` strings.
        tokenizer: The joint tokenizer.
        max_src_len: Longest allowed source, ``</s>`` included.
        max_tgt_len: Longest allowed target, ``<s>`` and ``</s>`` included.
        truncate: Cut over-long sequences (keeping the final ``</s>``) instead of failing.
        split: Name of the split, used in the error message.

    Returns:
        The encoded examples, in order.

    Raises:
        DataError: If ``truncate`` is False and any sequence is too long; the message gives how many
            examples, the longest length and the fix.
    """
    eos, bos = tokenizer.eos_id, tokenizer.bos_id
    encoded = [
        EncodedPair(source_ids(tokenizer, source), [bos, *tokenizer.encode(target), eos], source, target)
        for source, target in pairs
    ]
    if truncate:
        return [
            replace(pair, src_ids=_cut(pair.src_ids, max_src_len), tgt_ids=_cut(pair.tgt_ids, max_tgt_len))
            for pair in encoded
        ]
    problems = []
    for side, noun, limit in (("src", "source", max_src_len), ("tgt", "target", max_tgt_len)):
        option = f"max_{side}_len"
        lengths = [len(getattr(pair, f"{side}_ids")) for pair in encoded]
        too_long = sum(length > limit for length in lengths)
        if too_long:
            problems.append(
                f"{too_long} of {len(encoded)} {split} examples have a {noun} longer than {option}={limit} "
                f"tokens (longest: {max(lengths)}, specials included); raise {option} to at least "
                f"{max(lengths)} or set truncate: true"
            )
    if problems:
        raise DataError("; ".join(problems) + ".")
    return encoded


def _cut(ids: list[int], limit: int) -> list[int]:
    return ids if len(ids) <= limit else [*ids[: limit - 1], ids[-1]]


class PairDataset(Dataset):
    """A list of :class:`EncodedPair` served as dicts of 1-D long tensors plus the raw strings."""

    def __init__(self, examples: Sequence[EncodedPair]) -> None:
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        example = self.examples[index]
        return {
            "src_ids": torch.tensor(example.src_ids, dtype=torch.long),
            "tgt_ids": torch.tensor(example.tgt_ids, dtype=torch.long),
            "src_text": example.src_text,
            "tgt_text": example.tgt_text,
        }


class PairCollator:
    """Pads a list of :class:`PairDataset` items to the longest source and target in the batch.

    Args:
        pad_id: Id written into padded positions.

    Shape:
        - ``src_ids``: ``(N, S)`` long; ``src_mask``: ``(N, S)`` bool, True for real tokens.
        - ``tgt_ids``: ``(N, L)`` long; ``tgt_mask``: ``(N, L)`` bool, True for real tokens.
        - ``src_text``, ``tgt_text``: lists of ``N`` strings.
    """

    def __init__(self, *, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {}
        for side in ("src", "tgt"):
            ids = [item[f"{side}_ids"] for item in items]
            batch[f"{side}_ids"], batch[f"{side}_mask"] = pad_right(ids, pad_id=self.pad_id)
            batch[f"{side}_text"] = [item[f"{side}_text"] for item in items]
        return batch


def source_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    """A source as every seq2seq input is encoded: its ids, then ``</s>``."""
    return [*tokenizer.encode(text), tokenizer.eos_id]


def pad_right(sequences: Sequence[Sequence[int] | Tensor], *, pad_id: int) -> tuple[Tensor, Tensor]:
    """Id sequences padded on the right to the longest: ``(ids, mask)``, ``(N, S)`` each, mask True = real."""
    tensors = [torch.as_tensor(s, dtype=torch.long) for s in sequences]
    lengths = torch.tensor([len(t) for t in tensors])
    ids = pad_sequence(tensors, batch_first=True, padding_value=pad_id)  # (N, S)
    return ids, torch.arange(ids.size(1)) < lengths[:, None]


def encode_sources(tokenizer: Tokenizer, texts: Sequence[str], *, pad_id: int) -> tuple[Tensor, Tensor]:
    """Source texts as a model reads them (:func:`source_ids`, right-padded): ``(src_ids, src_mask)``."""
    return pad_right([source_ids(tokenizer, text) for text in texts], pad_id=pad_id)
