"""`rope`: rotary position embedding (Su et al., 2021, "RoFormer"), in the rotate-half layout of Llama."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

from swapformer.components.positional.base import PositionalEncoding, last_position, positions
from swapformer.errors import ConfigError
from swapformer.registry import Capabilities


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _rotated(x: Tensor, cos: Tensor, sin: Tensor, sign: float) -> Tensor:
    """``x * cos + rotate_half(x) * sin`` (``sign`` -1: the inverse rotation) in three kernels instead of five.

    Llama's formula runs neg, cat, mul, mul, add per tensor, and autograd as many again backwards. Here one
    full-width multiply, then each half accumulates the other half times sin in place: the halves are never
    copied. ``sin`` is one half of the rotate-half table (whose two halves are equal).
    """
    out = x * cos
    half = x.size(-1) // 2
    # narrow, not chunk: in-place updates of a multi-output view (chunk, split) are refused under torch.export
    x1, x2 = x.narrow(-1, 0, half), x.narrow(-1, half, half)
    out1, out2 = out.narrow(-1, 0, half), out.narrow(-1, half, half)
    out1.addcmul_(x2, sin, value=-sign)
    out2.addcmul_(x1, sin, value=sign)
    return out


def rotate_stacked(heads: Tensor, cos: Tensor, signed_sin: Tensor) -> None:
    """``heads`` ``(..., E)`` rotated in place, ``x * cos + roll(x) * (-sin, sin)`` (``rotate_half`` as a roll of
    the halves, the sign in the table): three kernels, no autograd. A one-token decoding step costs its calls, not
    its arithmetic: ``rotate`` makes seven calls per tensor and slices the tables per layer, while here q and k
    (adjacent in a stacked projection) turn together, with the tables of a position looked up once per step
    (:meth:`~swapformer.nn.MultiHeadAttention.decoding_function` calls it through
    :meth:`RotaryPositionalEncoding.stacked_rotation`)."""
    rolled = heads.roll(heads.size(-1) // 2, -1)  # (x2, x1)
    # x * cos + (-x2 * sin, x1 * sin) = x * cos + rotate_half(x) * sin
    heads.mul_(cos).addcmul_(rolled, signed_sin)


class _Rotation(torch.autograd.Function):
    """Rotates q and k in one autograd node whose backward is the inverse rotation of the gradients (a rotation
    is orthogonal): nothing but the cos/sin tables is kept for it, and it runs three kernels per tensor."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, tables: tuple[Tensor, Tensor, Tensor, Tensor]):
        ctx.save_for_backward(*tables)
        q_cos, q_sin, k_cos, k_sin = tables
        return _rotated(q, q_cos, q_sin, 1.0), _rotated(k, k_cos, k_sin, 1.0)

    @staticmethod
    def backward(ctx, q_grad: Tensor, k_grad: Tensor):
        q_cos, q_sin, k_cos, k_sin = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the inverse rotation as a node of its own, differentiable
            return *_Rotation.apply(q_grad, k_grad, (q_cos, -q_sin, k_cos, -k_sin)), None
        return _rotated(q_grad, q_cos, q_sin, -1.0), _rotated(k_grad, k_cos, k_sin, -1.0), None


class RotaryPositionalEncoding(PositionalEncoding):
    """Rotates each pair of query/key features by an angle proportional to the position.

    The score q_m . k_n then depends on positions only through m - n: relative position, no table,
    applied inside self-attention through the ``rotate`` hook.

    Args:
        head_dim: per-head dimension E (must be even).
        base: frequency base (10000 in RoFormer and Llama 2; 500000 in Llama 3).

    Raises:
        ConfigError: odd head_dim.
    """

    tensor_parallel_plan: ClassVar[dict[str, str]] = {}
    """Acts on each head alone: under tensor parallelism it runs unsplit on the rank's local heads."""

    capabilities: ClassVar[Capabilities] = Capabilities(relative=True)

    _decoding: tuple | None = None
    """:meth:`decoding_tables`' memo: the full tables in the last asking dtype, and the last position's rows."""

    def __init__(self, *, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ConfigError(f"rope needs an even head dimension, got d_model / num_heads = {head_dim}")
        self.head_dim, self.base = head_dim, base
        self.table_scale = 1.0
        """A factor on the cos and sin tables, so on q and k after the rotation (YaRN's attention factor)."""
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (E/2,)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("cos", torch.empty(0, head_dim), persistent=False)
        self.register_buffer("sin", torch.empty(0, head_dim), persistent=False)
        self._cast: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}
        self._repeated: dict[
            tuple[int, torch.device, torch.dtype], tuple[tuple[int, int], Tensor, Tensor]
        ] = {}

    @torch.inference_mode(False)  # tables grown while validating or generating serve training steps too
    def _grow(self, end: int, device: torch.device) -> None:
        length = max(end, 2 * self.cos.size(0), 64)
        angles = torch.outer(
            torch.arange(length, dtype=torch.float32, device=device), self.inv_freq.to(device)
        )
        angles = torch.cat((angles, angles), dim=-1)  # (L, E), rotate-half layout
        self.cos, self.sin = angles.cos(), angles.sin()
        if self.table_scale != 1.0:
            self.cos, self.sin = self.cos * self.table_scale, self.sin * self.table_scale
        self._cast, self._repeated = {}, {}

    def _table(self, x: Tensor, start: int, end: int) -> tuple[Tensor, Tensor]:
        """cos ``(..., E)`` and sin ``(..., E / 2)`` (one half: both are equal) of positions start .. end-1 in
        ``x``'s dtype, laid out to match ``x``.

        Attention hands over q and k as ``(N, L, H, E)`` projections seen as ``(N, H, L, E)``; a table repeated
        over the H heads in that same order lets each element-wise kernel run over L * H * E contiguous
        numbers, where an ``(L, E)`` table broadcast over the heads cuts the runs to E numbers (about twice
        slower at E = 32). Only the repeated table last asked for is kept (a training step asks for the same
        one in every layer and step), never one for every position: H times the full table is too big.
        """
        key = (x.device, x.dtype)
        if key not in self._cast:  # the full tables in x's dtype, cast once
            with torch.inference_mode(False):  # cached: normal tensors, which autograd may save
                cos, sin = (t.to(device=x.device, dtype=x.dtype) for t in (self.cos, self.sin))
                self._cast[key] = cos, sin[:, : self.head_dim // 2]
        cos, sin = self._cast[key]
        heads = x.size(1) if x.dim() == 4 and x.size(-2) > 1 and x.stride(1) < x.stride(2) else 0
        if not heads:  # decoding one token, or another layout: (L, E) broadcast over heads
            return cos[start:end], sin[start:end]
        last = self._repeated.get((heads, *key))
        if last is None or last[0] != (start, end):
            with torch.inference_mode(False):
                cos, sin = (t[start:end, None].expand(-1, heads, -1).contiguous() for t in (cos, sin))
                last = (start, end), cos.transpose(0, 1), sin.transpose(0, 1)
            self._repeated[(heads, *key)] = last
        return last[1], last[2]  # (H, L, E) and (H, L, E / 2), (L, H, .) in memory

    def rotate(self, q: Tensor, k: Tensor, *, offset: int | Tensor = 0) -> tuple[Tensor, Tensor]:
        tables = self._tables(q, k, offset)
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad):
            return _Rotation.apply(q, k, tables)
        q_cos, q_sin, k_cos, k_sin = tables
        return _rotated(q, q_cos, q_sin, 1.0), _rotated(k, k_cos, k_sin, 1.0)

    def rotation_tables(
        self, q: Tensor, k: Tensor, *, offset: int | Tensor = 0
    ) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
        """The tables ``rotate`` turns q and k by, ``x * cos + rotate_half(x) * sin``: cos ``(..., L, E)`` and sin
        ``(..., L, E / 2)`` (its halves are equal) of q, then of k, broadcastable to their heads; None where a
        subclass overrides ``rotate`` or ``offset`` is not an int."""
        if type(self).rotate is not RotaryPositionalEncoding.rotate or not isinstance(offset, int):
            return None
        return self._tables(q, k, offset)

    def _tables(self, q: Tensor, k: Tensor, offset: int | Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        # q and k hold the same new tokens at positions offset .. offset+L-1 (a KV cache stores rotated keys)
        length = q.size(-2)
        end = last_position(offset, length) + 1
        if end > self.cos.size(0):
            self._grow(end, q.device)
        if isinstance(offset, int):
            q_tables = self._table(q, offset, end)
            same = k.shape[1:] == q.shape[1:] and k.stride()[1:] == q.stride()[1:] and k.dtype == q.dtype
            same = same and k.device == q.device  # then k's table is q's (multi-head attention)
            tables = (*q_tables, *(q_tables if same else self._table(k, offset, end)))
        else:  # per-row offsets: (N, 1, L, E), broadcast over heads
            index = positions(offset, length)
            cos, sin = self.cos[index][:, None], self.sin[index][:, None, :, self.head_dim // 2 :]
            tables = (cos.to(q.dtype), sin.to(q.dtype), cos.to(k.dtype), sin.to(k.dtype))
        return tables

    def reserve(self, length: int, device: torch.device) -> None:
        """Grow the tables (and their float32 cast) to ``length`` positions, as rotating the last one would."""
        probe = torch.zeros(1, 1, 1, self.head_dim, device=device)  # (N, H, L, E)
        self.rotate(probe, probe, offset=length - 1)

    def stacked_rotation(
        self,
    ) -> tuple[Callable[[int, Tensor], tuple[Tensor, Tensor]], Callable[..., None]] | None:
        """:meth:`decoding_tables` and :func:`rotate_stacked`, unless a subclass overrides ``rotate``."""
        if type(self).rotate is not RotaryPositionalEncoding.rotate:
            return None
        return self.decoding_tables, rotate_stacked

    def decoding_tables(self, offset: int | Tensor, heads: Tensor) -> tuple[Tensor, Tensor]:
        """cos and the signed sin ``(-sin, sin)`` of position ``offset`` for :func:`rotate_stacked` of ``heads``,
        in their dtype: ``(E,)`` for an int, ``(N, 1, 1, E)`` per row.

        Both full tables are kept in ``heads``' dtype and device (made again when the tables grow or another dtype
        asks), so a step's lookup is two row selections; an int position's rows are the last call's when it asks
        again (every layer of a step does). Per-row positions are looked up at every call (an inference tensor
        has no version counter that would tell an in-place update).
        """
        last = self._decoding  # (cos table, dtype, device, cos, signed sin, position, its cos, its sin)
        table = self.cos
        if last is None or last[0] is not table or last[1] is not heads.dtype or last[2] != heads.device:
            last = None
        elif isinstance(offset, int) and offset == last[5]:
            return last[6], last[7]
        end = offset + 1 if isinstance(offset, int) else last_position(offset, 1) + 1
        if last is None or end > last[3].size(0):
            if end > table.size(0):
                self._grow(end, heads.device)
                table = self.cos
            signed = self.sin.clone()
            signed[:, : self.head_dim // 2].neg_()
            full = tuple(t.to(device=heads.device, dtype=heads.dtype) for t in (table, signed))
            last = (table, heads.dtype, heads.device, *full, None, None, None)
        if not isinstance(offset, int):
            index = offset.clamp_min(0)  # left padding: clamped, as in rotate
            self.__dict__["_decoding"] = last
            return last[3][index][:, None, None], last[4][index][:, None, None]  # (N, 1, 1, E)
        cos, sin = last[3][offset], last[4][offset]  # (E,)
        self.__dict__["_decoding"] = (*last[:5], offset, cos, sin)  # not nn.Module's __setattr__: once a step
        return cos, sin
