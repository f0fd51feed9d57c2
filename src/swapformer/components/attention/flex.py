"""`flex`: torch's FlexAttention, the mask given as a block mask so that blocks no query may see are skipped.

``flex_attention(q, k, v, score_mod=, block_mask=)`` (``torch.nn.attention.flex_attention``) computes softmax
attention where ``block_mask`` (from ``create_block_mask(mask_mod, ...)``) says which key blocks each query block
visits and ``score_mod`` rewrites each score (soft-capping, a score bias). The kernel turns what it is given into
the two::

    is_causal          q >= kv                                     ┐
    window             |S - L + q - kv| < window (sliding_window)  │ mask_mod: all of them, AND-ed
    documents (spans)  run[q] == run[kv] and real[kv]              │ -> create_block_mask, once per forward
    a boolean mask     attn_mask[b, h, q, kv]                      ┘
    softcap            cap * tanh(score / cap)                     ┐ score_mod
    a float mask       score + attn_mask[b, h, q, kv]              ┘

A block mask costs a pass over every (query block, key block) pair, so it is built once per forward pass, not per
layer: documents' on the :class:`~.documents.DocumentMask` the model builds once and hands every layer, a boolean
mask's for the tensor every layer receives (:class:`_LastMask`), the pure patterns (causal, window) per shape.

Where torch runs it: compiled (``torch.compile``) it is one fused kernel on CUDA and on CPU; eager it is torch's
reference path, the full score matrix (exact, slow). torch 2.13 has no backward on CPU ("FlexAttention does not
support backward on CPU"), so the kernel declares ``cpu_backward=False``: training on CPU is refused at fit time
(:func:`swapformer.compat.training_problem`), inference (evaluate, generate, scoring) runs. It has no dropout on
the attention weights either (``attention_dropout=False``).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from functools import lru_cache
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

from swapformer.components.attention._masks import guard_empty_rows, merge_causal
from swapformer.components.attention.documents import DocumentMask
from swapformer.components.attention.scaled_dot_product import scaled_dot_product
from swapformer.components.attention.sinks import unsplit_heads
from swapformer.components.attention.sliding_window import band_mask, within_band
from swapformer.components.softcap import check_cap
from swapformer.errors import ConfigError
from swapformer.registry import Capabilities

MaskMod = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


@lru_cache(maxsize=1)
def _compiled_flex() -> Callable[..., Tensor]:
    """``torch.compile(flex_attention)``, made on first use (importing the compiler costs seconds)."""
    return torch.compile(flex_attention, dynamic=False)


def _and(parts: list[MaskMod]) -> MaskMod:
    def mask_mod(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        allowed = parts[0](b, h, q, kv)
        for part in parts[1:]:
            allowed = allowed & part(b, h, q, kv)
        return allowed

    return mask_mod


def _pattern(length: int, source_length: int, causal: bool, window: int | None) -> list[MaskMod]:
    """The mask_mods of causality (top-left aligned, as ``is_causal``) and of a band of ``window`` keys (the newest
    L of S queries, :func:`~.sliding_window.band_mask`)."""
    parts: list[MaskMod] = []
    if causal:
        parts.append(lambda b, h, q, kv: q >= kv)
    if window is not None and source_length > window:  # S <= window: the band cuts nothing
        shift = source_length - length
        parts.append(lambda b, h, q, kv: (q + shift - kv).abs() < window)
    return parts


@lru_cache(maxsize=16)
def _pattern_block_mask(
    length: int, source_length: int, causal: bool, window: int | None, device: torch.device
) -> BlockMask:
    """The block mask of a pure pattern: it depends on the shape alone, so one per shape serves every step."""
    return create_block_mask(
        _and(_pattern(length, source_length, causal, window)),
        None,
        None,
        length,
        source_length,
        device=device,
    )


def _tensor_mask(mask: Tensor) -> MaskMod:
    """``mask[b, h, q, kv]`` of a boolean ``(N|1, H|1, L, S)`` mask, a size-1 dim read at 0 (torch's eager path
    calls the mask_mod for every head and row of the batch, whatever the block mask's sizes)."""
    if mask.size(0) == 1 and mask.size(1) == 1:
        return lambda b, h, q, kv: mask[0, 0, q, kv]
    if mask.size(1) == 1:
        return lambda b, h, q, kv: mask[b, 0, q, kv]
    if mask.size(0) == 1:
        return lambda b, h, q, kv: mask[0, h, q, kv]
    return lambda b, h, q, kv: mask[b, h, q, kv]


def _documents_mask(documents: DocumentMask) -> MaskMod:
    runs, real = documents.runs, documents.real  # (N, L) each
    return lambda b, h, q, kv: (runs[b, q] == runs[b, kv]) & real[b, kv]


class _LastMask:
    """The block mask of the last boolean ``attn_mask`` tensor seen, for as long as that tensor lives: every layer
    of a forward pass receives the same tensor (padding and causality, built once at the model's edge), so the
    first layer builds the block mask and the others reuse it; a new batch brings a new tensor."""

    def __init__(self) -> None:
        self.tensor: weakref.ref[Tensor] | None = None
        self.key: tuple[object, ...] = ()
        self.block_mask: BlockMask | None = None

    def get(self, mask: Tensor, key: tuple[object, ...], build: Callable[[], BlockMask]) -> BlockMask:
        if self.tensor is None or self.tensor() is not mask or self.key != key or self.block_mask is None:
            self.block_mask = build()
            self.tensor, self.key = weakref.ref(mask), key
        return self.block_mask


_LAST_MASK = _LastMask()


class FlexAttention(nn.Module):
    """Softmax attention by torch's ``flex_attention``: the masks as a block mask, soft-capping as a ``score_mod``.

    Same call and results as ``math`` (to 1e-5). Given packed rows' documents as spans (a
    :class:`~.documents.DocumentMask`) it builds the block-diagonal block mask from them, so no block of scores
    across two documents is computed (by the compiled kernel; eager it is the reference path, which computes the
    full score matrix). Asked for the attention weights it computes them with the ``math`` kernel.

    Args:
        window: attend only the keys within ``window`` positions of the query, as ``sliding_window`` does (in the
            block mask, so the blocks outside the band are skipped); None = every key.
        softcap: soft-cap the scores, ``cap * tanh(score / cap)`` (Gemma 2), as a ``score_mod``; None = none.
        compiled: call ``torch.compile(flex_attention)`` (the fused kernel; it compiles once per shape); False
            calls torch's eager reference path; None (the default) compiles on CUDA only. Inside a compiled model
            the plain call is traced either way.

    Raises:
        ConfigError: a window below 1, a cap that is not a number > 0, or ``compiled`` that is not a bool or None.
        ValueError: ``dropout_p > 0`` (flex_attention has no dropout on the attention weights).

    Shape:
        query ``(N, H, L, E)``; key, value ``(N, Hkv, S, E)`` with ``H % Hkv == 0``; output ``(N, H, L, E)``.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        exact_softmax=True,
        soft_cap=True,
        document_spans=True,
        cpu_backward=False,
        attention_dropout=False,
        torch_export=False,  # torch.export traces with gradients on: the CPU refuses the backward it would need
        self_attention_only=True,  # a window over a source has no meaning: cross-attention takes plain flex
        cross_attention="flex",
        notes="no backward on CPU (torch's): trains on GPU, inference anywhere; no attention dropout; "
        "cross-attention uses plain flex",
    )

    def tensor_parallel_plan(self, *, size: int) -> dict[str, str]:
        """Acts on each head alone: under tensor parallelism it runs unsplit on the rank's local heads."""
        return unsplit_heads(self)

    def __init__(
        self, *, window: int | None = None, softcap: float | None = None, compiled: bool | None = None
    ) -> None:
        super().__init__()
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise ConfigError(
                f"flex needs a window of at least 1 position, got window={window!r}; write e.g. "
                "{name: flex, window: 128}, or leave window out to attend every key"
            )
        if compiled is not None and not isinstance(compiled, bool):
            raise ConfigError(
                f"flex: compiled={compiled!r} must be true, false or left out (compile on CUDA only)"
            )
        self.window = window
        self.softcap = check_cap(softcap, "flex: softcap", 50.0)
        self.compiled = compiled

    @property
    def cache_window(self) -> int | None:
        """With a window, the newest keys a causal query sees, itself included: all a KV cache needs to keep."""
        return self.window

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        *,
        attn_mask: Tensor | DocumentMask | None = None,
        is_causal: bool = False,
        dropout_p: float = 0.0,
        scale: float | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """See :class:`~swapformer.components.attention.scaled_dot_product.MathAttention`."""
        if dropout_p > 0.0:
            raise ValueError(
                f"attention 'flex' got dropout_p={dropout_p:g}, but flex_attention has no dropout on the attention "
                "weights; build the model with dropout: 0.0, or use attention sdpa"
            )
        length, source_length = query.size(-2), key.size(-2)
        if need_weights:  # the weights are the math kernel's, with the dense mask and the band
            return self._math(query, key, value, attn_mask, is_causal, scale)
        block_mask, bias, valid = self._masks(attn_mask, is_causal, length, source_length, query.device)
        output = self._flex(query, key, value, block_mask=block_mask, bias=bias, scale=scale)
        if valid is not None:
            output = output * valid
        return output, None

    def _masks(
        self,
        attn_mask: Tensor | DocumentMask | None,
        is_causal: bool,
        length: int,
        source_length: int,
        device: torch.device,
    ) -> tuple[BlockMask | None, Tensor | None, Tensor | None]:
        """``(block_mask, bias, valid)``: the block mask (None = every key), a float score bias ``(N|1, H|1, L, S)``
        added by the score_mod, and ``(N|1, H|1, L, 1)`` False on the rows a float mask leaves empty."""
        window = self.window
        if isinstance(attn_mask, DocumentMask):  # packed rows: causality is in the spans
            key = ("flex", window, device)
            if key not in attn_mask.memo:
                parts = [
                    _documents_mask(attn_mask),
                    *_pattern(length, source_length, attn_mask.causal, window),
                ]
                batch = attn_mask.runs.size(0)
                attn_mask.memo[key] = create_block_mask(
                    _and(parts), batch, None, length, source_length, device=device
                )
            return attn_mask.memo[key], None, None
        if attn_mask is None:
            if not is_causal and (window is None or source_length <= window):
                return None, None, None
            return _pattern_block_mask(length, source_length, is_causal, window, device), None, None
        given = attn_mask  # the tensor every layer receives: the memo's key, with the call's shape
        key = (is_causal, length, source_length, window, device)
        if is_causal:  # one mask for both
            attn_mask = merge_causal(attn_mask, length, source_length)
        while attn_mask.dim() < 4:
            attn_mask = attn_mask[None]
        if attn_mask.dtype != torch.bool:  # a score bias (ALiBi, T5): -inf where it blocks
            bias, valid = guard_empty_rows(attn_mask)
            parts = _pattern(length, source_length, False, window)
            block_mask = _pattern_block_mask(length, source_length, False, window, device) if parts else None
            return block_mask, bias, valid
        mask = attn_mask.expand(-1, -1, length, source_length)
        batch, heads = mask.shape[:2]

        def build() -> BlockMask:
            parts = [_tensor_mask(mask), *_pattern(length, source_length, False, window)]
            return create_block_mask(_and(parts), batch, heads, length, source_length, device=device)

        return _LAST_MASK.get(given, key, build), None, None

    def _flex(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        *,
        block_mask: BlockMask | None,
        bias: Tensor | None,
        scale: float | None,
    ) -> Tensor:
        cap = self.softcap

        def score_mod(score: Tensor, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
            if cap is not None:  # e = cap tanh(e / cap), before the mask, as math
                score = torch.tanh(score / cap) * cap
            if bias is not None:
                score = score + bias[b, h, q, kv]
            return score

        modded = cap is not None or bias is not None
        if bias is not None:
            bias = bias.expand(-1, -1, query.size(-2), key.size(-2))
            if bias.size(0) == 1:
                bias = bias.expand(query.size(0), -1, -1, -1)
            if bias.size(1) == 1:
                bias = bias.expand(-1, query.size(1), -1, -1)
        compiled = query.is_cuda if self.compiled is None else self.compiled
        call = flex_attention if torch.compiler.is_compiling() or not compiled else _compiled_flex()
        with (
            warnings.catch_warnings()
        ):  # the eager path is chosen (compiled: false, or CPU): no advice to compile
            warnings.filterwarnings("ignore", "flex_attention called without torch.compile", UserWarning)
            return call(
                query,
                key,
                value,
                score_mod=score_mod if modded else None,
                block_mask=block_mask,
                scale=scale,
                enable_gqa=key.size(1) != query.size(1),
            )

    def _math(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        attn_mask: Tensor | DocumentMask | None,
        is_causal: bool,
        scale: float | None,
    ) -> tuple[Tensor, Tensor]:
        if isinstance(attn_mask, DocumentMask):
            attn_mask = attn_mask.dense()
        length, source_length = query.size(-2), key.size(-2)
        if self.window is not None and source_length > self.window:
            attn_mask = within_band(
                attn_mask, band_mask(length, source_length, window=self.window, device=query.device)
            )
        return scaled_dot_product(
            query, key, value, attn_mask=attn_mask, is_causal=is_causal, scale=scale, softcap=self.softcap
        )

    def extra_repr(self) -> str:
        options = [f"window={self.window}"] if self.window is not None else []
        options += [] if self.softcap is None else [f"softcap={self.softcap:g}"]
        return ", ".join(options + ([] if self.compiled is None else [f"compiled={self.compiled}"]))
