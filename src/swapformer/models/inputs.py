"""Checks of what users pass into a model's ``forward`` and ``generate``: one line at the top of each, one
``ValueError`` of one line naming the argument, what it holds and the fix.

Without them a bad id dies deep inside ``nn.Embedding`` (``IndexError: index out of range in self``, or a
device-side assert that kills a CUDA context), 1-D ids as ``not enough values to unpack``, and a float additive
mask (0 / -inf) is silently read upside down.

Cost, and when each check runs:

* shapes and dtypes: metadata only, always (also under ``torch.compile``, where they become guards).
* id ranges and 0/1 mask values: a reduction (``aminmax``) and a host sync. On CPU that is noise (measured:
  a d_model 128, 4-layer training step on a 12 x 64 batch moves by less than its run-to-run spread), so it runs
  on every call. On an accelerator a sync per step stalls the queue, so the range is checked on a model's first
  :data:`CHECKED_CALLS` calls only: a tokenizer that disagrees with the model shows on the first batch.
  ``generate`` checks its prompt every call (one sync per generation, not per token). Skipped while
  ``torch.compile`` traces (data-dependent control flow would break the graph).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from swapformer.compat import document_mask_problem, document_spans

CHECKED_CALLS = 8
"""Calls per model whose id ranges are checked on an accelerator (every call on CPU)."""

_ID_DTYPES = (torch.int64, torch.int32)  # what nn.Embedding indexes with
_TOKENIZER_IDS = {"eos_token_id": "eos_id", "pad_token_id": "pad_id", "decoder_start_token_id": "bos_id"}
_calls: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()


def check_causal(
    model: nn.Module, input_ids: Any, attention_mask: Any, *, past_length: int = 0, always: bool = False
) -> None:
    """The inputs of a decoder-only model (``DecoderOnly.forward`` / ``generate``); ``attention_mask`` covers
    ``past_length`` cached tokens too. ``always``: check the ids' range on every call (``generate``)."""
    values = _check_values(model, always)
    _ids(input_ids, "input_ids", _vocab(model.embedding), values)
    ids = f"the {past_length} cached and the new ids" if past_length else "the ids"
    _mask(attention_mask, "attention_mask", ids, _mask_shape(input_ids, past_length), values)


def check_seq2seq(
    model: nn.Module, src_ids: Any, tgt_ids: Any, src_mask: Any, tgt_mask: Any = None, *, always: bool = False
) -> None:
    """The inputs of an encoder-decoder (``forward``; ``generate`` passes ``tgt_ids=None``)."""
    values = _check_values(model, always)
    _ids(src_ids, "src_ids" if tgt_ids is not None else "input_ids", _vocab(model.src_embedding), values)
    _mask(src_mask, "src_mask", "the source ids", _mask_shape(src_ids), values)
    if tgt_ids is not None:
        _ids(tgt_ids, "tgt_ids", _vocab(model.tgt_embedding), values)
        _mask(tgt_mask, "tgt_mask", "the target ids", _mask_shape(tgt_ids), values)


def check_masked(model: nn.Module, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> None:
    """The inputs of an encoder-only masked LM (``EncoderOnly.forward``)."""
    values = _check_values(model, False)
    _ids(input_ids, "input_ids", _vocab(model.embedding), values)
    _mask(attention_mask, "attention_mask", "the ids", _mask_shape(input_ids), values)
    if token_type_ids is not None:
        _token_types(token_type_ids, model.embedding.token_type, _mask_shape(input_ids), values)


def check_document_ids(
    model: nn.Module, document_ids: Any, input_ids: Tensor, *, cached: bool = False
) -> None:
    """Refuse ``document_ids`` (packed rows: which document each token belongs to) that are not an integer tensor
    of the ids' shape, that come with a KV cache (decoding continues one document: drop them), or that the
    model's kernels cannot honour (:func:`swapformer.compat.document_mask_problem`).

    Raises:
        ValueError: one line naming what was passed and the fix.
    """
    if document_ids is None:
        return
    if cached:
        raise ValueError(
            "document_ids with a KV cache: decoding continues one document; drop document_ids (they are for "
            "training and scoring packed rows)"
        )
    shape = tuple(input_ids.shape)
    if not isinstance(document_ids, Tensor):
        raise ValueError(
            f"document_ids is a {type(document_ids).__name__}; pass an integer tensor of the ids' shape {shape}"
        )
    if document_ids.dtype not in _ID_DTYPES or tuple(document_ids.shape) != shape:
        raise ValueError(
            f"document_ids has shape {tuple(document_ids.shape)} and dtype {_dtype(document_ids)}; pass an "
            f"integer tensor of the ids' shape {shape}, one document number per token (the batch's document_ids)"
        )
    config = getattr(model, "config", None)
    problem = None if config is None else document_mask_problem(config)
    if problem is not None:
        raise ValueError(problem)


def hands_spans(model: nn.Module) -> bool:
    """Whether ``model`` gives its kernels packed rows' documents as spans rather than a dense mask
    (:func:`swapformer.compat.document_spans` of its config; a model without a config keeps the dense mask)."""
    config = getattr(model, "config", None)
    return config is not None and document_spans(config)


def _token_types(types: Any, table: nn.Embedding | None, shape: tuple[int, ...] | None, values: bool) -> None:
    """Refuse token types for a model without a token-type table, or of another shape than the ids, or
    outside the table."""
    if table is None:
        raise ValueError(
            "token_type_ids given, but the model has no token-type table (token_types: 0); drop them, or build "
            "the model with token_types: 2 (sentence A and B)"
        )
    if not isinstance(types, Tensor):
        raise ValueError(
            f"token_type_ids is a {type(types).__name__}; pass a tensor of the ids' shape {shape}"
        )
    if types.dtype not in _ID_DTYPES or tuple(types.shape) != shape:
        raise ValueError(
            f"token_type_ids has shape {tuple(types.shape)} and dtype {_dtype(types)}; pass an integer tensor "
            f"of the ids' shape {shape}, one type per token"
        )
    if not values or types.numel() == 0 or types.is_meta:
        return
    low, high = (int(v) for v in torch.aminmax(types))
    if low < 0 or high >= table.num_embeddings:
        raise ValueError(
            f"token_type_ids holds types from {low} to {high} but the model has token_types="
            f"{table.num_embeddings} (0..{table.num_embeddings - 1}); pass types inside the table"
        )


def _ids(ids: Any, name: str, vocab_size: int, values: bool) -> None:
    """Refuse token ids that are not a non-empty ``(N, L)`` integer tensor of values in ``[0, vocab_size)``
    (the range only when ``values``)."""
    if not isinstance(ids, Tensor):
        raise ValueError(
            f"{name} is a {type(ids).__name__}; pass a tensor of token ids, e.g. torch.tensor([[...]])"
        )
    if ids.dtype not in _ID_DTYPES:
        fix = "token ids must be integers" if ids.dtype.is_floating_point else "ids must be int64 or int32"
        raise ValueError(f"{name} has dtype {_dtype(ids)}; {fix}: pass {name}.long()")
    if ids.dim() != 2:
        fix = (
            f"add the batch dimension with {name}.unsqueeze(0)" if ids.dim() == 1 else "one row per sequence"
        )
        raise ValueError(f"{name} has shape {tuple(ids.shape)}; expected (N, L): {fix}")
    if ids.size(1) == 0:
        raise ValueError(
            f"{name} has shape {tuple(ids.shape)}: pass a non-empty (N, L) batch, every row at least one token; "
            "to start from nothing, give a one-token prompt such as the BOS id"
        )
    if not values or ids.numel() == 0 or ids.is_meta:  # meta: FLOP counting, no values to check
        return
    low, high = (int(v) for v in torch.aminmax(ids))
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"{name} holds ids from {low} to {high} but the model's vocabulary has {vocab_size} ids "
            f"(0..{vocab_size - 1}): the tokenizer and the model disagree; build the model with the "
            "tokenizer's vocab_size, or encode with the tokenizer the model was trained with"
        )


def _mask(mask: Any, name: str, ids: str, shape: tuple[int, ...] | None, values: bool) -> None:
    """Refuse a padding mask that is not a bool or 0/1 integer tensor of ``shape`` (True / 1 = real token); a
    float mask is refused outright, since an additive one (0 / -inf) would be read upside down."""
    if mask is None or shape is None:
        return
    if not isinstance(mask, Tensor):
        raise ValueError(f"{name} is a {type(mask).__name__}; pass a bool tensor of shape {shape}")
    if tuple(mask.shape) != shape:
        raise ValueError(
            f"{name} has shape {tuple(mask.shape)} but {ids} have shape {shape}; pass one flag per token, "
            "True (or 1) for a real token and False (or 0) for padding"
        )
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise ValueError(
            f"{name} has dtype {_dtype(mask)}; expected bool or 0/1 integers, True (1) = real token: pass "
            f"{name}.bool() for 0/1 values, or ({name} == 0) for an additive mask of 0 and -inf"
        )
    if not values or mask.dtype == torch.bool or mask.numel() == 0 or mask.is_meta:
        return
    low, high = (int(v) for v in torch.aminmax(mask))
    if low < 0 or high > 1:
        raise ValueError(
            f"{name} holds values from {low} to {high}; expected 0 (padding) and 1 (real token): pass "
            f"({name} != 0) if any nonzero value means a real token"
        )


def check_generate_ids(kwargs: Mapping[str, Any], *, vocab_size: int) -> None:
    """Refuse ``generate``'s special token ids (``eos_token_id``, an int or a list; ``pad_token_id``;
    ``decoder_start_token_id``) outside the vocabulary: they are fed back to the model, or never produced.

    Raises:
        ValueError: an id that is not an int in ``[0, vocab_size)``.
    """
    for key in ("eos_token_id", "pad_token_id", "decoder_start_token_id"):
        value = kwargs.get(key)
        if value is None:
            continue  # the model config's id, checked when the config was made
        tokens = [value]
        if key == "eos_token_id" and isinstance(value, list | tuple | set):
            tokens = list(value)
        elif key == "eos_token_id" and isinstance(value, Tensor) and value.dim() == 1:
            tokens = value.tolist()
        for token in tokens:
            if isinstance(token, Tensor) and token.numel() == 1 and not token.is_floating_point():
                token = int(token)
            if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocab_size:
                raise ValueError(
                    f"{key}={value!r} is not a token id of the model's vocabulary (0..{vocab_size - 1}); "
                    f"pass the tokenizer's id (e.g. tokenizer.{_TOKENIZER_IDS[key]})"
                    + (", a list of ids, or [] for none" if key == "eos_token_id" else "")
                )


PROCESSOR_IDS = ("forced_bos_token_id", "forced_eos_token_id", "suppress_tokens", "begin_suppress_tokens")


def check_processor_ids(settings: Mapping[str, Any], *, vocab_size: int) -> None:
    """Refuse the ids of ``generate``'s forced, suppressed and bad tokens (passed, or the model's generation
    defaults) outside the vocabulary, before any decoding step.

    Raises:
        ValueError: the setting and the id that is not in ``[0, vocab_size)``.
    """
    for key in (*PROCESSOR_IDS, "bad_words_ids"):
        value = settings.get(key)
        tokens = value if isinstance(value, list | tuple) else [] if value is None else [value]
        if key == "bad_words_ids":
            tokens = [
                token for words in tokens for token in (words if isinstance(words, list | tuple) else [words])
            ]
        wrong = [
            t for t in tokens if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab_size
        ]
        if wrong:
            raise ValueError(
                f"{key}={value!r} holds {wrong[0]!r}, which is not a token id of the model's vocabulary "
                f"(0..{vocab_size - 1}); give ids of the model's tokenizer"
            )


def _check_values(model: nn.Module, always: bool) -> bool:
    """Whether to run the data-dependent checks on this call (see the module docstring)."""
    if torch.compiler.is_compiling():
        return False
    if always or _device(model) == "cpu":
        return True
    seen = _calls.get(model, 0)
    if seen >= CHECKED_CALLS:
        return False
    _calls[model] = seen + 1
    return True


def _device(model: nn.Module) -> str:
    parameter = next(model.parameters(), None)
    return "cpu" if parameter is None else parameter.device.type


def _vocab(embedding: nn.Module) -> int:
    return embedding.token.num_embeddings


def _mask_shape(ids: Any, past_length: int = 0) -> tuple[int, int] | None:
    """``(N, past_length + L)`` of well-formed ids (checked first), None otherwise."""
    if not isinstance(ids, Tensor) or ids.dim() != 2:
        return None
    return (ids.size(0), past_length + ids.size(1))


def _dtype(tensor: Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")
