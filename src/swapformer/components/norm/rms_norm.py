"""`rmsnorm`: root-mean-square norm (Zhang & Sennrich, 2019), torch's ``nn.RMSNorm`` with a faster CPU inference
form that its decoding function shares, and a faster CPU training form (:class:`RMSNormFunction`)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from swapformer.components.functions import Function, Of


class RMSNorm(nn.RMSNorm):
    """``x / sqrt(mean(x^2) + eps) * gamma``: torch's ``nn.RMSNorm`` (same parameters, same state dict).

    A decoding step (one position per row, ``(..., 1, D)``) on the CPU where nothing needs a gradient runs as the
    layer norm of ``(x, -x)``: the pair has mean zero and x's mean square, so its layer norm is x's RMS norm, one
    broadcast multiply and torch's fused ``layer_norm`` (two kernels) where torch's CPU ``rms_norm`` is a
    composite of eight operators (about 10 against 5.6 us a call at D = 128, which a small model's step pays
    twice per layer: Llama-shape decoding 2.7x -> 3.2x Hugging Face's). It rounds otherwise, within a few float32
    ulps of ``rms_norm``, as a GEMM of one row may round otherwise than one of many; the forward pass and the
    decoding function (:meth:`function`) take the same form for the same input, so a decoding plan gives the
    modules' numbers. Where a gradient is needed on the CPU in float32, :class:`RMSNormFunction` runs instead
    (its own backward: half the time of ``rms_norm``'s composite). Longer inputs, other devices, another dtype
    than the weight's and ``eps=None`` keep ``rms_norm``.

    Shape:
        x ``(..., D)`` -> ``(..., D)``.
    """

    tensor_parallel_plan: ClassVar[dict[str, str]] = {}
    """Under tensor parallelism every rank runs it whole, on the full (replicated) activations."""

    def forward(self, x: Tensor) -> Tensor:
        one = x.dim() > 1 and x.size(-2) == 1
        if (
            one
            and self._paired_applies(x)
            and not (torch.is_grad_enabled() and (x.requires_grad or self._trains()))
        ):
            return self._paired(x, self._pair_weight())
        if _trains_on_cpu(x, self.weight) and len(self.normalized_shape) == 1:
            return RMSNormFunction.apply(
                x, self.weight, torch.finfo(x.dtype).eps if self.eps is None else self.eps
            )
        return super().forward(x)

    def rms_parameters(self, x: Tensor) -> tuple[Tensor | None, float] | None:
        """``(gain, eps)`` where ``forward(x)`` is ``RMSNormFunction(x, gain, eps)``, for a caller that fuses the
        norm with what follows it (attention's q/k norm with RoPE: :mod:`swapformer.nn.qk_norm_rotation`); None
        where ``forward`` takes another path."""
        if type(self).forward is not RMSNorm.forward or len(self.normalized_shape) != 1:
            return None
        if x.size(-1) != self.normalized_shape[0] or not _trains_on_cpu(x, self.weight):
            return None
        return self.weight, torch.finfo(x.dtype).eps if self.eps is None else self.eps

    def function(self, of: Of) -> Function | None:
        """The eval-mode forward as a function, what it looks up resolved once: the pair's weight, the signs
        (:mod:`swapformer.components.functions`)."""
        if type(self).forward is not RMSNorm.forward:
            return None
        fused = super().forward
        probe = torch.empty(0, dtype=torch.get_default_dtype() if self.weight is None else self.weight.dtype)
        if not self._paired_applies(probe):
            return fused
        weight, signs, shape, eps, dtype = (
            self._pair_weight(),
            _signs(probe.dtype),
            (2, *self.normalized_shape),
            self.eps,
            probe.dtype,
        )

        def rms_norm(x: Tensor) -> Tensor:
            if x.dtype != dtype or x.device.type != "cpu" or x.dim() < 2 or x.size(-2) != 1:
                return fused(x)
            return torch.layer_norm(x.unsqueeze(-2) * signs, shape, weight, None, eps).select(-2, 0)

        return rms_norm

    def _trains(self) -> bool:
        return self.weight is not None and self.weight.requires_grad

    def _paired_applies(self, x: Tensor) -> bool:
        return (
            type(x) is Tensor  # a subclass (DTensor's: a tensor-parallel q/k norm) keeps torch's operators
            and x.device.type == "cpu"
            and self.eps is not None
            and len(self.normalized_shape) == 1
            and (self.weight is None or (x.dtype == self.weight.dtype and self.weight.device.type == "cpu"))
        )

    def _pair_weight(self) -> Tensor | None:
        """The weight for x and for -x, ``(2, D)`` (the second half of the output is dropped)."""
        return None if self.weight is None else self.weight.detach().expand(2, -1).contiguous()

    def _paired(self, x: Tensor, weight: Tensor | None) -> Tensor:
        (width,) = self.normalized_shape
        signs = _signs(x.dtype)  # (2, 1): x and -x, exactly
        return torch.layer_norm(x.unsqueeze(-2) * signs, (2, width), weight, None, self.eps).select(-2, 0)


class UnitOffsetRMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * (1 + w)``, computed in float32 (Gemma's norms): the weight is stored as its
    offset from 1, so it starts at zero and weight decay pulls the gain towards 1, not 0.

    Shape:
        x ``(..., D)`` -> ``(..., D)``, in x's dtype.
    """

    tensor_parallel_plan: ClassVar[dict[str, str]] = {}
    """Under tensor parallelism every rank runs it whole, on the full (replicated) activations."""

    no_weight_decay = ("weight",)

    def __init__(self, d_model: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: Tensor) -> Tensor:
        if _trains_on_cpu(x, self.weight):  # float32 already: the same numbers through a cheaper backward
            return RMSNormFunction.apply(x, 1.0 + self.weight, self.eps)
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * (1.0 + self.weight.float())).type_as(x)

    def rms_parameters(self, x: Tensor) -> tuple[Tensor | None, float] | None:
        """``(1 + w, eps)`` where ``forward(x)`` is ``RMSNormFunction(x, 1 + w, eps)`` (see
        :meth:`RMSNorm.rms_parameters`); None where it takes another path."""
        if type(self).forward is not UnitOffsetRMSNorm.forward or x.size(-1) != self.weight.numel():
            return None
        return (1.0 + self.weight, self.eps) if _trains_on_cpu(x, self.weight) else None

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}, unit_offset=True"


class RMSNormFunction(torch.autograd.Function):
    """``x * rsqrt(mean(x^2) + eps) * w`` over the last dim, with a hand-written backward: under a third of the
    CPU time of ``rms_norm``, whose CPU form is a composite of about eight operators each way (on q and k of
    every layer, a q/k norm paid +10% on a training step of the main job's shape).

    With ``r = rsqrt(mean(x^2) + eps)`` (one per row) and the upstream gradient ``g``::

        dx = r (g w) - x r^3 sum_e(g w x) / D        dw = sum_rows(g x r)

    Each direction makes one tensor of ``x``'s size, its result, and works in it (on the CPU a new tensor of
    q's size costs more than a pass of arithmetic over it, whose memory is then touched for the first time):
    ``x^2``, then ``x r``, in the output; ``g x``, then ``dx``, in the input's gradient. Both sums over ``g x``
    are matrix-vector products over its rows, ``(g x) w`` per row and ``(g x)^T r`` for ``dw``, which read it
    once. The rows are taken in ``x``'s memory order: q and k ``(N, H, L, E)`` are a transposed view of their
    projection ``(N, L, H, E)``, which no reshape to ``(R, E)`` views without a copy. Only ``x``, ``w`` and ``r``
    are kept for the backward pass.

    Shape:
        x ``(..., D)``, w ``(D,)`` -> ``(..., D)``, laid out as ``x`` (contiguous where its rows had no order).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor | None, eps: float) -> Tensor:
        order = _memory_order(x)
        rows = _rows(x, order)  # (R, D), in x's memory order: a view
        out = _empty(x, order)  # laid out as ``rows``: its rows are a view too, and it is no view itself
        out_rows = _rows(out, order)
        torch.mul(rows, rows, out=out_rows)
        # rms_norm's operators in its order (its x^2 is x * x on the CPU), so the same numbers (Gemma's too)
        rstd = out_rows.mean(-1, keepdim=True).add_(eps).rsqrt_()  # (R, 1)
        torch.mul(rows, rstd, out=out_rows)
        if weight is not None:
            out_rows.mul_(weight)
        ctx.save_for_backward(rows, weight, rstd)
        ctx.order = order
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        rows, weight, rstd = ctx.saved_tensors
        order = ctx.order
        dx = _empty(grad, order)
        dx_rows = _rows(dx, order)  # (R, D), rows as ``rows``
        upstream = grad if order is None else grad.permute(order)  # g, row by row as ``rows``
        shape = upstream.shape
        gx = torch.mul(upstream, rows.view(shape), out=dx_rows.view(shape)).view_as(rows)
        weight_grad = None
        if weight is not None and ctx.needs_input_grad[1]:
            weight_grad = torch.mv(gx.t(), rstd.view(-1))  # sum_rows(g x r)
        if not ctx.needs_input_grad[0]:
            return None, weight_grad, None
        dot = gx.sum(-1, keepdim=True) if weight is None else torch.mv(gx, weight).unsqueeze(-1)
        coefficient = dot.mul_(rstd.pow(3)).div_(-rows.size(-1))  # -r^3 sum_e(g w x) / D, one per row
        scaled = dx_rows.view(shape)  # g x is spent: dx takes its place
        if weight is None:
            scaled.copy_(upstream)
        else:
            torch.mul(upstream, weight, out=scaled)
        dx_rows.mul_(rstd).addcmul_(rows, coefficient)
        return dx, weight_grad, None


def _memory_order(x: Tensor) -> list[int] | None:
    """The order of ``x``'s dims that lists them as its memory holds them, the last one last, when that makes it
    contiguous (q and k ``(N, H, L, E)`` viewed from ``(N, L, H, E)``: ``[0, 2, 1, 3]``); None when ``x`` is
    contiguous already or no order is (its rows are then copied)."""
    if x.is_contiguous():
        return None
    # outermost first; the sort is stable, so dims of equal stride (size 1) keep their order
    leading = sorted(range(x.dim() - 1), key=lambda dim: -x.stride(dim))
    order = [*leading, x.dim() - 1]
    return order if x.permute(order).is_contiguous() else None


def _empty(like: Tensor, order: list[int] | None) -> Tensor:
    """A new tensor of ``like``'s shape whose memory holds its dims in ``order`` (contiguous when None)."""
    strides, step = [0] * like.dim(), 1
    for dim in reversed(range(like.dim()) if order is None else order):
        strides[dim], step = step, step * like.size(dim)
    return torch.empty_strided(like.shape, strides, dtype=like.dtype, device=like.device)


def _rows(x: Tensor, order: list[int] | None) -> Tensor:
    """``x`` ``(..., D)`` as rows ``(R, D)`` in ``order`` (:func:`_memory_order`): a view, unless ``x`` has no
    such order."""
    return (x if order is None else x.permute(order)).reshape(-1, x.size(-1))


def _trains_on_cpu(x: Tensor, weight: Tensor | None) -> bool:
    """Whether :class:`RMSNormFunction` takes the call: a gradient is needed, on the CPU, in float32 throughout
    (autocast off), and ``x`` is a plain tensor (a subclass, DTensor's, keeps torch's own operators)."""
    if not torch.is_grad_enabled() or not (x.requires_grad or (weight is not None and weight.requires_grad)):
        return False
    return (
        type(x) is Tensor
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and (weight is None or (type(weight.data) is Tensor and weight.dtype == torch.float32))
        and not torch.is_autocast_enabled("cpu")
    )


_SIGNS: dict[torch.dtype, Tensor] = {}


def _signs(dtype: torch.dtype) -> Tensor:
    """``[[1], [-1]]`` in ``dtype``, made once (a normal tensor, even when first asked under inference mode)."""
    if dtype not in _SIGNS:
        with torch.inference_mode(False):
            _SIGNS[dtype] = torch.tensor([[1.0], [-1.0]], dtype=dtype)
    return _SIGNS[dtype]
