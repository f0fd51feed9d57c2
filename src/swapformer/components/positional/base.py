"""The positional contract: three hooks, each the identity unless a member overrides it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from swapformer.errors import ConfigError


def positions(offset: int | Tensor, length: int, device: torch.device | None = None) -> Tensor:
    """Absolute positions of ``length`` tokens starting at ``offset``: ``(L,)`` for an int, ``(N, L)`` for a
    ``(N,)`` tensor of per-row offsets (clamped at 0, see :class:`PositionalEncoding`); an ``(N, L)`` tensor is
    already every token's position (packed documents, :func:`swapformer.nn.masks.document_positions`)."""
    if isinstance(offset, int):
        return torch.arange(offset, offset + length, device=device)
    if offset.dim() == 2:
        return offset
    return (offset[:, None] + torch.arange(length, device=offset.device)).clamp_min(0)


def last_position(offset: int | Tensor, length: int) -> int:
    """The largest position :func:`positions` returns (a host sync for a tensor offset)."""
    if isinstance(offset, int):
        return offset + length - 1
    return int(offset.max()) + (length - 1 if offset.dim() == 1 else 0)


def heads_split(num_heads: int, size: int, member: str) -> int:
    """``size``, the tensor-parallel degree, when it splits ``num_heads`` into whole heads per rank.

    Raises:
        ConfigError: it does not (one line naming ``member``, the sizes and those that fit).
    """
    if num_heads % size:
        fits = [d for d in range(1, num_heads + 1) if num_heads % d == 0]
        raise ConfigError(
            f"{member}: tensor_parallel_size={size} does not divide num_heads={num_heads} (each TP rank takes "
            f"whole heads): set tensor_parallel_size to one of {fits}"
        )
    return size


class PositionalEncoding(nn.Module):
    """Base class of every positional member.

    Where order enters the model differs by method, so the contract has three hooks:

    - ``embed(x, offset)``: added to the token embeddings (sinusoidal, learned absolute).
    - ``rotate(q, k, offset)``: applied to queries and keys inside self-attention (RoPE).
    - ``bias(L, S, offset)``: added to the attention scores (ALiBi, T5 relative bias).

    ``offset`` is the absolute position of the first of the ``L`` tokens (non-zero when a KV cache already holds
    earlier tokens). ``embed`` and ``rotate`` also take a ``(N,)`` tensor of per-row offsets: batched prompts of
    different lengths are left-padded, and each row's first real token must sit at position 0. Positions below 0
    (the left padding, which every query masks out) are clamped to 0. They also take an ``(N, L)`` tensor, every
    token's own position: packed rows restart positions at each document's first token (Llama 3's practice).
    ``bias`` takes an int: a relative bias is unchanged when every position of a row shifts by the same amount,
    and a document mask keeps a query to keys of its own document, whose distances are those within it.
    """

    max_length: int | None = None
    """The longest sequence the member can encode (a learned table's size); None = any length."""

    def embed(self, x: Tensor, *, offset: int | Tensor = 0) -> Tensor:
        """Token embeddings ``(N, L, D)`` with positions added; identity by default."""
        return x

    def rotate(self, q: Tensor, k: Tensor, *, offset: int | Tensor = 0) -> tuple[Tensor, Tensor]:
        """Queries ``(N, H, L, E)`` and keys ``(N, Hkv, S, E)`` with positions applied; identity by default."""
        return q, k

    def rotation_tables(
        self, q: Tensor, k: Tensor, *, offset: int | Tensor = 0
    ) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
        """Where ``rotate`` is RoPE's ``x * cos + rotate_half(x) * sin``, its tables (cos and half of sin, of q
        then of k), for a caller that fuses the rotation with what comes before it (attention's q/k norm:
        :mod:`swapformer.nn.qk_norm_rotation`); None (the default): ``rotate`` is something else."""
        return None

    def bias(
        self, length: int, source_length: int, *, offset: int = 0, device: torch.device | None = None
    ) -> Tensor | None:
        """Additive score bias broadcastable to ``(N, H, L, S)``, or None (the default: no bias)."""
        return None

    @property
    def embeds(self) -> bool:
        """Whether ``embed`` is more than the identity: the member adds positions to the embeddings, so it is a
        model's member, never a layer's."""
        return type(self).embed is not PositionalEncoding.embed

    @property
    def rotates(self) -> bool:
        """Whether ``rotate`` is more than the identity (its class overrides it)."""
        return type(self).rotate is not PositionalEncoding.rotate

    @property
    def adds_bias(self) -> bool:
        """Whether ``bias`` may return a score bias (its class overrides it)."""
        return type(self).bias is not PositionalEncoding.bias

    def reserve(self, length: int, device: torch.device) -> None:
        """Make whatever tables ``length`` positions need now, before decoding (a table grown between two steps is
        a new tensor, which a compiled step would recompile for); nothing by default."""

    def step_bias(self, capacity: int, device: torch.device) -> Callable[[int], Tensor | None]:
        """``lookup(position)``: the score bias of one new token at an int ``position`` against every key before
        it and itself, as ``bias(1, position + 1, offset=position)``, for decoding steps. A member that declares
        ``relative`` in its own class (its scores depend on distances only) computes once the row of the last of
        ``capacity`` positions and gives each step its last ``position + 1`` columns: the same distances, so the
        same numbers, without the arithmetic of a bias per token (T5's buckets). Others compute it each step."""
        declared = vars(type(self)).get("capabilities")
        if capacity < 1 or not getattr(declared, "relative", False):
            return lambda position: self.bias(1, position + 1, offset=position, device=device)
        row = self.bias(1, capacity, offset=capacity - 1, device=device)  # distances -(capacity - 1) .. 0
        if row is None:
            return lambda position: None
        last = capacity - 1

        def lookup(position: int) -> Tensor | None:
            if position > last:  # past the capacity: computed
                return self.bias(1, position + 1, offset=position, device=device)
            return row.narrow(-1, last - position, position + 1)

        return lookup

    def stacked_rotation(self) -> tuple[Callable[[int, Tensor], Any], Callable[..., None]] | None:
        """``(lookup, rotate)`` for decoding steps: ``lookup(position, heads)`` gives the tables of an int
        position once per step, ``rotate(heads, *tables)`` turns a new token's stacked q and k heads
        ``(N, H + Hkv, 1, E)`` in place, as ``rotate`` would; None (the default) where the member has no such
        form (a decoding plan then steps aside for a member that rotates)."""
        return None
