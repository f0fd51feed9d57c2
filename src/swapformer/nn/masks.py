"""Building attention masks at the model's edge. One polarity everywhere: True = may attend.

Key-padding masks arrive as ``(N, S)`` booleans, True = real token (as Hugging Face's ``attention_mask``).
They are combined here once per forward pass with the causal pattern; each stack adds its layers' positional
score biases (:func:`with_score_bias`, once per member), giving the ``attn_mask`` each layer's kernel receives.
"""

from __future__ import annotations

import torch
from torch import Tensor

from swapformer.components.attention._masks import causal_mask
from swapformer.components.attention.documents import DocumentMask
from swapformer.components.positional.base import PositionalEncoding


def as_key_padding_mask(mask: Tensor | None, name: str, shape: tuple[int, int]) -> Tensor | None:
    """Check a ``(N, S)`` key-padding mask (True or 1 = real token) and return it as bool.

    Raises:
        ValueError: wrong shape.
    """
    if mask is None:
        return None
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(
            f"{name} has shape {tuple(mask.shape)} but the ids have shape {tuple(shape)}; pass one flag per token, "
            "True (or 1) for a real token and False (or 0) for padding"
        )
    return mask if mask.dtype == torch.bool else mask != 0


def build_attention_mask(
    *,
    key_padding_mask: Tensor | None,
    length: int,
    source_length: int,
    causal: bool,
    offset: int = 0,
    bias: Tensor | None = None,
    device: torch.device | None = None,
) -> tuple[Tensor | None, bool]:
    """Combine padding, causality and a score bias into ``(attn_mask, is_causal)`` for every layer.

    With causality alone (no padding, no bias, no offset) it returns ``(None, True)`` so fused kernels take
    their fastest path.

    Args:
        key_padding_mask: ``(N, S)`` True = real key, or None.
        length: L queries; source_length: S keys.
        causal: queries may not attend later keys.
        offset: absolute position of the first query (keys start at 0).
        bias: float ``(H|1, L, S)`` added to the scores (ALiBi, relative bias), or None.

    Returns:
        A mask broadcastable to ``(N, H, L, S)``, boolean unless a bias is given, and the ``is_causal`` flag.
    """
    if key_padding_mask is None and bias is None:
        if causal and offset == 0 and length == source_length:
            return None, True
        if not causal:
            return None, False
    mask = None
    if key_padding_mask is not None:
        mask = key_padding_mask[:, None, None, :]  # (N, 1, 1, S)
    if causal:
        pattern = causal_mask(length, source_length, offset=offset, device=device)  # (L, S)
        mask = pattern if mask is None else mask & pattern
    return (mask, False) if bias is None else (_biased(mask, bias), False)


def _biased(mask: Tensor | None, bias: Tensor) -> Tensor:
    """The float mask of a score ``bias`` where boolean ``mask`` allows (-inf elsewhere); the bias alone without one."""
    return bias if mask is None else torch.where(mask, bias, float("-inf"))


def with_score_bias(
    attn_mask: Tensor | None,
    is_causal: bool,
    positional: PositionalEncoding | None,
    length: int,
    past_length: int,
    device: torch.device,
) -> tuple[Tensor | None, bool]:
    """``(attn_mask, is_causal)`` of self-attention over ``length`` new tokens after ``past_length`` cached ones
    with ``positional``'s score bias added (ALiBi, T5's relative bias); unchanged when it adds none.

    ``attn_mask`` is the boolean mask of padding and causality (True = may attend) or None, with ``is_causal``
    as :func:`build_attention_mask` returns them without a bias.
    """
    source_length = past_length + length
    bias = None
    if positional is not None:
        bias = positional.bias(length, source_length, offset=past_length, device=device)
    if bias is None:
        return attn_mask, is_causal
    if is_causal:  # (build_attention_mask leaves it for a mask-free causal batch only)
        pattern = causal_mask(length, source_length, offset=past_length, device=device)
        attn_mask = pattern if attn_mask is None else attn_mask & pattern
    return _biased(attn_mask, bias), False


def self_attention_mask(
    ids: Tensor, padding: Tensor | None, name: str, *, causal: bool
) -> tuple[Tensor | None, bool]:
    """``(attn_mask, is_causal)`` for self-attention over ``ids`` ``(N, L)``: the checked key-padding mask
    ``padding`` (argument ``name``, True = real token) and causality. Each layer's stack adds its positional
    member's score bias (:func:`with_score_bias`)."""
    length = ids.size(1)
    return build_attention_mask(
        key_padding_mask=as_key_padding_mask(padding, name, tuple(ids.shape)),
        length=length,
        source_length=length,
        causal=causal,
        device=ids.device,
    )


def left_padding_offset(padding: Tensor | None) -> int | Tensor:
    """Where each row of a ``(N, L)`` key-padding mask (True = real token) starts counting positions, so that its
    first real token sits at position 0: 0 when no row is left-padded (the fast path), else ``(N,)``, minus each
    row's left padding."""
    if padding is None:
        return 0
    leading = (padding.cumsum(-1) == 0).sum(-1)  # (N,)
    return 0 if not bool(leading.any()) else -leading


def causal_self_attention_inputs(
    ids: Tensor,
    padding: Tensor | None,
    name: str,
    *,
    past_length: int = 0,
) -> tuple[Tensor | None, bool, int | Tensor]:
    """``(attn_mask, is_causal, offset)`` for causal self-attention of ``ids`` ``(N, L)`` that follow
    ``past_length`` tokens already in a KV cache.

    ``padding`` (argument ``name``) is ``(N, past_length + L)``, True = real token, covering the cached tokens
    too, as Hugging Face's ``attention_mask`` does during generation. Rows may be left-padded (batched prompts of
    different lengths) or right-padded (training batches): ``offset`` places each row's first real token at
    position 0. It is an int when every row agrees (the common case, and the fast one), else ``(N,)``. Score
    biases are added per layer (:func:`with_score_bias`).
    """
    batch, length = ids.shape
    source_length = past_length + length
    if padding is None and length == 1:  # a decoding step: it may attend every cached key
        return None, False, past_length
    key_padding = as_key_padding_mask(padding, name, (batch, source_length))
    offset: int | Tensor = past_length
    if key_padding is not None:
        if bool(key_padding.all()):
            key_padding = None
        else:
            leading = (key_padding[:, past_length:].cumsum(-1) == 0).sum(-1)  # left padding of the new tokens
            start = (
                key_padding[:, :past_length].sum(-1) - leading
            )  # (N,) position of each row's first new token
            if not bool((start == past_length).all()):
                offset = start
    mask, is_causal = build_attention_mask(
        key_padding_mask=key_padding,
        length=length,
        source_length=source_length,
        causal=length > 1,  # one new token may attend every cached one
        offset=past_length,
        device=ids.device,
    )
    return mask, is_causal, offset


def document_runs(document_ids: Tensor, padding: Tensor | None = None) -> Tensor:
    """``(N, L)`` index of the run each token belongs to: a run is a stretch of equal ``document_ids`` (and, with a
    key-padding mask, of equal padding flags, so left padding is a run of its own). Ids that come back after
    another document (``0 0 1 1 0``) start a new run: a document is contiguous."""
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    if padding is not None:
        starts[:, 1:] |= padding[:, 1:] != padding[:, :-1]
    return starts.cumsum(-1)


def document_positions(runs: Tensor) -> Tensor:
    """``(N, L)`` position of each token within its run of :func:`document_runs`: 0 at every document's first
    token (Llama 3 restarts positions per document). The one place positions come from document ids; every
    positional member reads them through its ``offset`` (:func:`~swapformer.components.positional.base.positions`).
    """
    index = torch.arange(runs.size(1), device=runs.device).expand_as(runs)
    starts = torch.ones_like(runs, dtype=torch.bool)
    starts[:, 1:] = runs[:, 1:] != runs[:, :-1]
    first = torch.where(starts, index, 0).cummax(-1).values  # index of each token's document start
    return index - first


def document_attention_inputs(
    ids: Tensor, padding: Tensor | None, document_ids: Tensor, name: str, *, causal: bool, spans: bool = False
) -> tuple[Tensor | DocumentMask, bool, Tensor]:
    """``(attn_mask, is_causal, positions)`` for self-attention over packed rows ``ids`` ``(N, L)``: a token
    attends only to tokens of its own document (a dense block-diagonal mask, ``(N, 1, L, L)``; with ``spans``,
    the documents as spans, :class:`~swapformer.components.attention.documents.DocumentMask`, for kernels that
    declare ``document_spans``), causally when ``causal``, never to padding (``padding``, argument ``name``,
    True = real token); ``positions`` ``(N, L)`` restart at each document's first token. Score biases are added
    per layer (:func:`with_score_bias`, on the dense mask): a relative bias within a document is that of the
    document alone.

    ::

        document_ids  0 0 0 1 1        mask (causal)   x . . . .
        positions     0 1 2 0 1                        x x . . .
                                                       x x x . .
                                                       . . . x .
                                                       . . . x x
    """
    length = ids.size(1)
    key_padding = as_key_padding_mask(padding, name, tuple(ids.shape))
    runs = document_runs(document_ids, key_padding)
    if spans:
        real = torch.ones_like(ids, dtype=torch.bool) if key_padding is None else key_padding
        return DocumentMask.of_runs(runs, real, causal=causal), False, document_positions(runs)
    mask = runs[:, None, :, None] == runs[:, None, None, :]  # (N, 1, L, L) same document
    if causal:
        mask = mask & causal_mask(length, length, device=ids.device)
    if key_padding is not None:
        mask = mask & key_padding[:, None, None, :]
    return mask, False, document_positions(runs)
