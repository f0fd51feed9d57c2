"""Soft-capping: ``cap * tanh(x / cap)``, a smooth bound on attention scores or logits (Gemma 2).

Close to the identity for ``|x|`` well below ``cap`` and never beyond ``±cap``: it keeps a few large scores or
logits from saturating the softmax, without the hard clip's zero gradient.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from swapformer.errors import ConfigError


def soft_cap(x: Tensor, cap: float | None) -> Tensor:
    """``cap * tanh(x / cap)``, in Gemma 2's order of operations; ``x`` itself when ``cap`` is None. Where a
    gradient is needed on the CPU in float32, :class:`SoftCap` computes it."""
    if cap is None:
        return x
    if _trains_on_cpu(x):
        return SoftCap.apply(x, cap)
    return torch.tanh(x / cap) * cap


class SoftCap(torch.autograd.Function):
    """:func:`soft_cap` for training on the CPU: ``t = tanh(x / cap)`` by the series of :class:`SoftCappedAttention`
    where it holds (the logits of a model in training are far below Gemma 2's cap of 30), and ``cap t``; the
    backward is ``g (1 - t^2)`` from the ``t`` kept, two passes (autograd's: a division, ``tanh``'s backward and a
    product).

    Shape:
        x ``(...)`` -> ``(...)``.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, cap: float) -> Tensor:
        bounded = _tanh(x / cap)
        ctx.save_for_backward(bounded)
        return bounded * cap

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (bounded,) = ctx.saved_tensors
        return torch.addcmul(_constant(1.0), bounded, bounded, value=-1).mul_(grad), None


def soft_capped_scores(query: Tensor, key: Tensor, scale: float, cap: float) -> Tensor:
    """Attention scores ``cap * tanh(q k^T * scale / cap)``, what :func:`soft_cap` gives for the scaled scores,
    with ``scale / cap`` applied to the queries ``(..., L, E)`` rather than to the scores ``(..., L, S)``: one
    pass over the scores fewer each way (forward and backward), when E is smaller than S.

    Shape:
        query ``(..., L, E)``, key ``(..., S, E)`` -> ``(..., L, S)``.
    """
    return torch.tanh((query * (scale / cap)) @ key.transpose(-2, -1)) * cap


def soft_capped_attention(
    query: Tensor, key: Tensor, value: Tensor, *, scale: float, cap: float, is_causal: bool, dropout_p: float
) -> Tensor:
    """``softmax(cap * tanh(q k^T * scale / cap) + causal) v`` for a call with no ``attn_mask`` (training on
    unpadded batches): what the ``math`` kernel computes, in fewer passes over the ``(L, S)`` scores. Where a
    gradient is needed on the CPU in float32 without dropout, :class:`SoftCappedAttention` computes it. Otherwise
    the capped scores are finite, so no row is ever empty and the causal mask is one ``-inf`` triangle added
    while the cap multiplies (one operator, where the general path multiplies, then fills the blocked scores
    through a boolean mask). The same numbers: ``0 + cap t`` is ``cap t``.

    Shape:
        query ``(..., L, E)``, key and value ``(..., S, E)`` with the heads already repeated -> ``(..., L, E)``.
    """
    if dropout_p == 0.0 and _trains_on_cpu(query, key, value):
        return SoftCappedAttention.apply(query, key, value, scale, cap, is_causal)
    bounded = torch.tanh((query * (scale / cap)) @ key.transpose(-2, -1))  # (..., L, S), in [-1, 1]
    if is_causal:  # top-left aligned, as in torch's SDPA
        scores = torch.add(_causal_bias(query.size(-2), key.size(-2), bounded), bounded, alpha=cap)
    else:
        scores = bounded * cap
    weights = torch.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        weights = torch.nn.functional.dropout(weights, p=dropout_p)
    return weights @ value


class SoftCappedAttention(torch.autograd.Function):
    """:func:`soft_capped_attention` for training on the CPU: the same numbers, one block of queries at a time,
    with a hand-written backward.

    Where the capped step over autograd spent its time (torch.profiler, one thread): the ``(L, S)`` products,
    then ``tanh`` (torch's CPU ``tanh`` costs about as much as five passes of arithmetic over the scores), then
    the softmax and the elementwise passes of the backward. So:

    * causal blocks of queries attend only to the keys up to their last query: the scores above the diagonal
      blocks are never made, multiplied or differentiated (3/8 of them at four blocks);
    * ``tanh(x)`` of a block whose ``|x|`` stays within :data:`SERIES_RANGE` is its Taylor series, to the
      last term float32 can see (Horner's rule, at most seven passes), and ``torch.tanh`` beyond it;
    * the backward takes the softmax's ``sum_j alpha_ij dalpha_ij`` as ``sum_e o_ie do_ie`` (E wide, not S)
      and makes each block's score gradient in place in one buffer; only ``alpha`` and ``t`` are kept per block.

    Per block of queries, with ``x = q k^T scale / cap``, ``t = tanh(x)``, ``alpha`` the weights, ``o`` the
    output and ``g`` its upstream gradient::

        forward    alpha = softmax(cap t + causal)                  o = alpha v
        backward   dz = alpha (g v^T - rowsum(g o)) (1 - t^2) scale
                   dq = dz k        dk += dz^T q        dv += alpha^T g

    Shape:
        query ``(N, H, L, E)``, key and value ``(N, H, S, E)`` -> ``(N, H, L, E)``.
    """

    @staticmethod
    def forward(
        ctx: Any, query: Tensor, key: Tensor, value: Tensor, scale: float, cap: float, causal: bool
    ) -> Tensor:
        # contiguous, whatever the layout of q, k, v: each block multiplies a run of their rows
        key, value = key.contiguous(), value.contiguous()
        scaled = torch.mul(query, scale / cap, out=query.new_empty(query.shape))  # q scale / cap
        length, source_length = query.size(-2), key.size(-2)
        bias = _causal_bias(length, source_length, query) if causal else None
        outputs, saved = [], []
        for start, stop, keys in _blocks(length, source_length, causal):
            bounded = _tanh(torch.matmul(scaled[..., start:stop, :], key[..., :keys, :].transpose(-2, -1)))
            scores = bounded * cap if bias is None else torch.add(bias[start:stop, :keys], bounded, alpha=cap)
            weights = torch.softmax(scores, dim=-1)  # (N, H, b, keys)
            outputs.append(torch.matmul(weights, value[..., :keys, :]))
            saved += [weights, bounded]
        output = torch.cat(outputs, dim=-2) if len(outputs) > 1 else outputs[0]
        ctx.save_for_backward(scaled, key, value, output, *saved)
        ctx.scale, ctx.cap, ctx.causal = scale, cap, causal
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        scaled, key, value, output, *saved = ctx.saved_tensors
        grad = grad.contiguous()
        rowsum = (grad * output).sum(-1, keepdim=True)  # sum_j alpha_ij dalpha_ij   (N, H, L, 1)
        blocks = list(_blocks(scaled.size(-2), key.size(-2), ctx.causal))
        query_grads: list[Tensor] = []
        key_grad = value_grad = None
        # the last block first: it attends to the most keys, so its key and value gradients start the sums
        for index in reversed(range(len(blocks))):
            start, stop, keys = blocks[index]
            weights, bounded = saved[2 * index], saved[2 * index + 1]
            block_grad = grad[..., start:stop, :]
            value_part = torch.matmul(weights.transpose(-2, -1), block_grad)  # (N, H, keys, E)
            scores_grad = torch.matmul(block_grad, value[..., :keys, :].transpose(-2, -1))
            scores_grad.sub_(rowsum[..., start:stop, :]).mul_(weights)
            scores_grad.mul_(torch.addcmul(_constant(1.0), bounded, bounded, value=-1))  # d(cap t)/dx / cap
            query_grads.append(torch.matmul(scores_grad, key[..., :keys, :]))
            key_part = torch.matmul(scores_grad.transpose(-2, -1), scaled[..., start:stop, :])
            if key_grad is None or value_grad is None:
                key_grad, value_grad = _padded(key_part, key), _padded(value_part, value)
            else:
                key_grad[..., :keys, :].add_(key_part)
                value_grad[..., :keys, :].add_(value_part)
        query_grads.reverse()
        query_grad = torch.cat(query_grads, dim=-2) if len(query_grads) > 1 else query_grads[0]
        # dx = cap dz: dq = dx k scale / cap, dk = dx^T (q scale / cap)
        return query_grad.mul_(ctx.scale), key_grad.mul_(ctx.cap), value_grad, None, None, None


SERIES_RANGE = 0.35
"""The ``|x|`` up to which :class:`SoftCappedAttention` takes ``tanh(x)`` from its series (scores up to 17.5
under Gemma 2's cap of 50): there the terms to ``x^11`` leave out less than float32's rounding."""

SERIES = (1.0, -1.0 / 3.0, 2.0 / 15.0, -17.0 / 315.0, 62.0 / 2835.0, -1382.0 / 155925.0, 21844.0 / 6081075.0)
"""The coefficients of ``tanh(x) = x (1 - x^2/3 + 2 x^4/15 - 17 x^6/315 + ...)``, to ``x^13``."""

ROUNDING = 2.0**-24
"""float32's relative rounding: a term of the series smaller than this, relative to ``x``, changes nothing."""


def _tanh(x: Tensor) -> Tensor:
    """``tanh(x)``, by its series where every ``|x|`` is within :data:`SERIES_RANGE`, with the terms up to the
    first that falls below float32's rounding at the largest ``|x|`` (two at the scores of a model just
    initialized, six at the range's end); ``torch.tanh`` beyond. ``x`` is consumed."""
    low, high = torch.aminmax(x)
    reach = max(-low.item(), high.item())
    if reach > SERIES_RANGE:
        return x.tanh_()
    terms = next(n for n in range(1, len(SERIES)) if abs(SERIES[n]) * reach ** (2 * n) < ROUNDING)
    if terms == 1:
        return x
    square = x * x
    series = torch.addcmul(_constant(SERIES[terms - 2]), square, _constant(SERIES[terms - 1]))
    for coefficient in reversed(SERIES[: terms - 2]):
        torch.addcmul(_constant(coefficient), series, square, out=series)
    return series.mul_(x)


_CONSTANTS: dict[float, Tensor] = {}


def _constant(value: float) -> Tensor:
    """A float32 scalar tensor on the CPU, made once (a normal tensor, even when first asked in inference mode)."""
    if value not in _CONSTANTS:
        with torch.inference_mode(False):
            _CONSTANTS[value] = torch.tensor(value)
    return _CONSTANTS[value]


def _blocks(length: int, source_length: int, causal: bool) -> Iterator[tuple[int, int, int]]:
    """``(start, stop, keys)`` of each block of queries: four blocks (at least 32 queries each; 256 past 1024
    queries); a causal block attends to the keys up to its last query (top-left aligned, as torch's SDPA)."""
    size = 256 if length > 1024 else max(32, -(-length // 4))
    for start in range(0, length, size):
        stop = min(start + size, length)
        yield start, stop, (min(stop, source_length) if causal else source_length)


def _causal_bias(length: int, source_length: int, like: Tensor) -> Tensor:
    """``(L, S)``: 0 where a query may attend (top-left aligned), ``-inf`` above the diagonal."""
    keep = torch.ones(length, source_length, dtype=torch.bool, device=like.device).tril()
    blocked = torch.zeros(length, source_length, dtype=like.dtype, device=like.device)
    return blocked.masked_fill_(~keep, float("-inf"))


def _padded(part: Tensor, like: Tensor) -> Tensor:
    """``part`` ``(..., keys, E)`` as the gradient of ``like`` ``(..., S, E)``: zeros for the keys past ``keys``."""
    if part.size(-2) == like.size(-2):
        return part
    whole = torch.zeros_like(like)
    whole[..., : part.size(-2), :] = part
    return whole


def _trains_on_cpu(*tensors: Tensor) -> bool:
    """Whether :class:`SoftCappedAttention` or :class:`SoftCap` takes the call: a gradient is needed, on the CPU,
    in float32 (the series and constants are float32's), autocast off, not compiled, and plain tensors (a
    subclass keeps torch's operators)."""
    if (
        not torch.is_grad_enabled()
        or not any(t.requires_grad for t in tensors)
        or torch.compiler.is_compiling()
    ):
        return False  # compiled: torch's operators, which it traces (the series asks for the scores' reach)
    return not torch.is_autocast_enabled("cpu") and all(
        type(t) is Tensor and t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors
    )


def check_cap(cap: object, where: str, example: float) -> float | None:
    """``cap`` as a float, or None; a ConfigError naming ``where`` unless it is None or a finite number > 0."""
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, int | float) or not math.isfinite(cap) or cap <= 0:
        raise ConfigError(
            f"{where}={cap!r} must be a number > 0 (Gemma 2 uses {example}), or null for no soft-capping"
        )
    return float(cap)
