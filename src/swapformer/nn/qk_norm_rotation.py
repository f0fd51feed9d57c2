"""q/k norm (RMS) and RoPE in one autograd node, for attention's CPU training step (Qwen3, Gemma 3, OLMo 2).

Each of q and k runs as one pass of its own (per head over E, or over the whole projection, H E wide)::

    y = x * rsqrt(mean(x^2) + eps) * w              RMSNormFunction (components/norm/rms_norm.py)
    out = y * cos + rotate_half(y) * sin           RoPE's rotate (components/positional/rope.py)

The rotation is linear and ``r = rsqrt(mean(x^2) + eps)`` is one number per row, so ``out = R(x w) r``: the gain
folds into the rotation's tables (``cos w``, and ``sin`` times the other half's gain), which turn ``x`` itself,
and ``r`` multiplies last. Each direction then makes one tensor of ``x``'s size per tensor where the two members
make two (the norm's output, the rotation's), and q and k share one scratch tensor in the backward pass:
on the CPU a new tensor costs more than a pass of arithmetic over it. Only ``x``, the gain, ``r`` and the
tables are kept, as the two members keep.

The members' own ``forward`` and ``rotate`` remain the definition: attention takes this path only where they
would have run :class:`~swapformer.components.norm.rms_norm.RMSNormFunction` and RoPE's rotation (a gradient
needed, on the CPU, in float32, nothing hooking the norms), and the tests hold it to them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from swapformer.components.functions import plain
from swapformer.components.positional.base import PositionalEncoding


def normed_rotation(
    q: Tensor,
    k: Tensor,
    *,
    q_norm: nn.Module,
    k_norm: nn.Module,
    positional: PositionalEncoding,
    offset: int | Tensor,
    per_head: bool,
) -> tuple[Tensor, Tensor] | None:
    """``positional.rotate(q_norm(q), k_norm(k))`` as one :class:`NormedRotation`, or None where the members would
    compute something else (then the caller runs them).

    Args:
        q, k: heads views ``(N, H, L, E)`` and ``(N, Hkv, L, E)`` of their projections ``(N, L, H E)``.
        q_norm, k_norm: the norms, per head over E (``per_head``) or over the whole projection.
        positional: the layer's positional member; only RoPE's rotation has tables.
        offset: the position of the first of the L tokens.
    """
    if not isinstance(offset, int) or not plain(q_norm, k_norm):
        return None
    if not (q.transpose(1, 2).is_contiguous() and k.transpose(1, 2).is_contiguous()):
        return None
    # norms without the method (torch's own nn.RMSNorm, a plug-in's) keep their path
    q_rms, k_rms = (getattr(norm, "rms_parameters", None) for norm in (q_norm, k_norm))
    if q_rms is None or k_rms is None:
        return None
    q_args, k_args = q_rms(_normed_view(q, per_head)), k_rms(_normed_view(k, per_head))
    if q_args is None or k_args is None:
        return None
    tables = positional.rotation_tables(q, k, offset=offset)
    if tables is None:
        return None
    return NormedRotation.apply(q, k, *q_args, *k_args, tables, per_head)


def _normed_view(heads: Tensor, per_head: bool) -> Tensor:
    """What the norm's ``forward`` would receive: the heads, or the whole projection ``(N, L, H E)`` (a view)."""
    if per_head:
        return heads
    batch, count, length, dim = heads.shape
    return heads.transpose(1, 2).reshape(batch, length, count * dim)


class NormedRotation(torch.autograd.Function):
    """RoPE of the RMS norms of q and of k, ``R(x w) r`` each, with a hand-written backward.

    With ``u = R^T g`` (the inverse rotation of the upstream gradient: RoPE's own backward), the norm's
    backward as :class:`~swapformer.components.norm.rms_norm.RMSNormFunction` takes it::

        dx = r (u w) - x r^3 sum_row(u w x) / D        dw = sum_rows(u x r)

    Shape:
        q ``(N, H, L, E)``, k ``(N, Hkv, L, E)``, each a heads view of ``(N, L, H E)``; gains ``(E,)`` per head
        or ``(H E,)`` / ``(Hkv E,)`` over the projection (or None); tables: cos ``(..., L, E)`` and sin
        ``(..., L, E / 2)`` broadcastable to q's and k's heads, as RoPE's ``rotation_tables`` gives them.
        Outputs as q and k, laid out as their projections.
    """

    @staticmethod
    def forward(
        ctx: Any,
        q: Tensor,
        k: Tensor,
        q_gain: Tensor | None,
        q_eps: float,
        k_gain: Tensor | None,
        k_eps: float,
        tables: tuple[Tensor, Tensor, Tensor, Tensor],
        per_head: bool,
    ) -> tuple[Tensor, Tensor]:
        q_cos, q_sin, k_cos, k_sin = (_in_memory_order(t) for t in tables)
        outs, saved = [], []
        for x, gain, eps, cos, sin in ((q, q_gain, q_eps, q_cos, q_sin), (k, k_gain, k_eps, k_cos, k_sin)):
            heads = x.transpose(1, 2)  # (N, L, H, E): contiguous
            out = torch.empty_like(heads, memory_format=torch.contiguous_format)
            rows, out_rows = _rows(heads, per_head), _rows(out, per_head)
            torch.mul(rows, rows, out=out_rows)
            rstd = out_rows.mean(-1, keepdim=True).add_(eps).rsqrt_()  # (R, 1), RMSNormFunction's r
            _rotate(out, heads, *_folded(cos, sin, gain, heads))
            out_rows.mul_(rstd)
            outs.append(out.transpose(1, 2))
            saved += [heads, rstd]
        ctx.save_for_backward(*saved, q_gain, k_gain, q_cos, q_sin, k_cos, k_sin)
        ctx.per_head = per_head
        return outs[0], outs[1]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, q_grad: Tensor, k_grad: Tensor) -> tuple[Tensor | None, ...]:
        q_heads, q_rstd, k_heads, k_rstd, q_gain, k_gain, q_cos, q_sin, k_cos, k_sin = ctx.saved_tensors
        per_head, wanted = ctx.per_head, ctx.needs_input_grad
        # u x of q, then of k, in one scratch tensor
        scratch = torch.empty(
            max(q_heads.numel(), k_heads.numel()), dtype=q_heads.dtype, device=q_heads.device
        )
        grads: list[Tensor | None] = []
        for grad, heads, rstd, gain, cos, sin, x_wanted, gain_wanted in (
            (q_grad, q_heads, q_rstd, q_gain, q_cos, q_sin, wanted[0], wanted[2]),
            (k_grad, k_heads, k_rstd, k_gain, k_cos, k_sin, wanted[1], wanted[4]),
        ):
            upstream = torch.empty_like(heads)  # u = R^T g, then dx in its place
            _rotate(upstream, grad.transpose(1, 2), cos, sin, sin, inverse=True)
            rows, u_rows = _rows(heads, per_head), _rows(upstream, per_head)
            ux = torch.mul(u_rows, rows, out=scratch[: rows.numel()].view(rows.shape))
            gain_grad = None
            if gain is not None and gain_wanted:
                gain_grad = torch.mv(ux.t(), rstd.view(-1)).view(gain.shape)  # sum_rows(u x r)
            if not x_wanted:
                grads += [None, gain_grad]
                continue
            dot = ux.sum(-1) if gain is None else torch.mv(ux, gain.reshape(-1))  # sum_row(u w x)
            coefficient = dot.unsqueeze(-1).mul_(rstd.pow(3)).div_(-rows.size(-1))  # -r^3 sum(u w x) / D
            if gain is not None:
                upstream.mul_(_gain_in_memory(gain, heads))
            u_rows.mul_(rstd).addcmul_(rows, coefficient)
            grads += [upstream.transpose(1, 2), gain_grad]
        q_dx, q_dw, k_dx, k_dw = grads
        return q_dx, k_dx, q_dw, None, k_dw, None, None, None


def _rows(heads: Tensor, per_head: bool) -> Tensor:
    """``(N, L, H, E)`` contiguous as the norm's rows: ``(N L H, E)`` per head, ``(N L, H E)`` over the projection."""
    return heads.view(-1, heads.size(-1) if per_head else heads.size(-2) * heads.size(-1))


def _in_memory_order(table: Tensor) -> Tensor:
    """A rotation table broadcastable to ``(N, H, L, .)`` as one broadcastable to ``(N, L, H, .)`` (a view)."""
    return table.reshape((1,) * (4 - table.dim()) + tuple(table.shape)).transpose(1, 2)


def _gain_in_memory(gain: Tensor, heads: Tensor) -> Tensor:
    """The gain ``(E,)`` or ``(H E,)`` broadcastable to ``(N, L, H, E)``."""
    return gain if gain.numel() == heads.size(-1) else gain.view(heads.size(-2), heads.size(-1))


def _folded(cos: Tensor, sin: Tensor, gain: Tensor | None, heads: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The tables that turn ``x`` into ``R(x w)``: ``cos w``, and ``sin`` times the gain of the half that each
    half receives (``rotate_half(x w) = (-x2 w2, x1 w1)``). Small: ``(L, H, E)`` against x's ``(N, L, H, E)``."""
    if gain is None:
        return cos, sin, sin
    with torch.no_grad():
        gain = _gain_in_memory(gain.detach(), heads)
        half = heads.size(-1) // 2
        return cos * gain, sin * gain[..., half:], sin * gain[..., :half]


def _rotate(
    out: Tensor, x: Tensor, cos: Tensor, first_sin: Tensor, second_sin: Tensor, *, inverse: bool = False
) -> None:
    """``out = x * cos + rotate_half(x) * sin`` (``inverse``: ``- rotate_half(x) * sin``, R^T), the halves'
    sin tables apart: one full-width multiply and two half-width ``addcmul_`` in place, as RoPE's ``_rotated``."""
    sign = -1.0 if inverse else 1.0
    half = x.size(-1) // 2
    x1, x2 = x.narrow(-1, 0, half), x.narrow(-1, half, half)
    torch.mul(x, cos, out=out)
    out.narrow(-1, 0, half).addcmul_(x2, first_sin, value=-sign)
    out.narrow(-1, half, half).addcmul_(x1, second_sin, value=sign)
