"""The KV cache: keys and values each attention layer has already computed, so a decoding step runs one token.

::

    step t:   x_t ─▶ q_t, k_t, v_t ─▶ append k_t, v_t ─▶ attend q_t to k_0..k_t, v_0..v_t
                                     (self-attention: grows by one slot per step)
    memory ─▶ k, v once per source  (cross-attention: projected before the first step; its beams read them as
                                     one query each, rows never repeated where the kernel allows it)

Buffers are preallocated ``(N, Hkv, capacity, E)`` and filled in place: a step allocates no cache memory. A
decoding step of a stacked projection keeps keys and values in one buffer ``(N, 2 Hkv, capacity, E)`` and writes
both with one copy.
Only the ``Hkv`` key/value heads are stored, so grouped-query attention caches ``H / Hkv`` times less. Keys are
stored after the positional ``rotate`` hook (RoPE), since a key's position never changes once it is written.

A layer whose kernel sees only the newest ``W`` keys (``sliding_window``: its ``cache_window``) keeps only those,
in a ring of ``W`` slots: token ``t`` goes to slot ``t % W``, over the token ``W`` before it, which no later query
sees::

    W = 4, after token 9:   slot  0  1  2  3        a step attends the ring as it lies: the order of the keys
                            token 8  9  6  7        does not change attention, and the mask's columns follow it

A prompt (or any call of several tokens) attends to the kept keys and its own in order, then leaves its last
``W`` in the ring, so the cache of such a layer never holds more than ``W`` tokens, however long the sequence.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class AttentionCache:
    """Keys and values of one attention layer.

    Args:
        capacity: slots to preallocate at the first :meth:`append` (the prompt plus every token to come);
            the buffers double if a longer sequence arrives.
        window: keep only the newest ``window`` tokens (a ring of ``window`` slots); None keeps every token.
            The attention layer sets it from its kernel's ``cache_window`` before the first :meth:`append`.

    Shape:
        keys and values ``(N, Hkv, S, E)``, ``S = min(length, window)``.
    """

    __slots__ = (
        "_keys",
        "_pairs",
        "_spare",
        "_values",
        "capacity",
        "length",
        "projection",
        "repeats",
        "step",
        "window",
    )

    def __init__(self, capacity: int = 0, *, window: int | None = None) -> None:
        self.capacity, self.length, self.window = capacity, 0, window
        self.repeats = 1
        """Consecutive query rows each stored row serves (:meth:`store`): the beams of one source."""
        self._keys: Tensor | None = None
        self._values: Tensor | None = None
        self._pairs: Tensor | None = None
        """Keys then values along the heads, ``(N, 2 Hkv, capacity, E)``: ``_keys`` and ``_values`` are its halves."""
        self._spare: Tensor | None = None
        """A buffer shaped as ``_pairs`` that :meth:`reorder` writes into, then swaps in (beam search)."""
        self.projection: tuple[Tensor, Tensor | None, Tensor, Tensor | None] | None = None
        """W_q, W_k, W_v stacked and their biases, then W_o and its bias: made by the attention layer at the first
        decoding step."""
        self.step: Callable[..., Tensor] | None = None
        """The attention layer's one-token step over this cache (its ``decoding_function``), made at the first."""

    def append(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Write ``key``, ``value`` ``(N, Hkv, L, E)`` after the cached ones; return the keys and values to attend.

        Those are all ``S`` cached ones, in order; with a ``window``, the kept ones: one token gets the ring as it
        lies (``S = min(length, window)``), several get the kept ones in order then their own. :meth:`key_mask`
        gives a mask over every token seen the same columns (attention weights a kernel returns follow them too)."""
        if self.window is not None:
            return self._slide(key, value)
        start, end = self.length, self.length + key.size(2)
        if self._keys is None or end > self._keys.size(2):
            self._grow(key, value, end)
        self._keys.narrow(2, start, end - start).copy_(key)
        self._values.narrow(2, start, end - start).copy_(value)
        self.length = end
        return self._keys.narrow(2, 0, end), self._values.narrow(2, 0, end)

    def append_pairs(self, pairs: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`append` of keys and values stacked along the heads, ``(N, 2 Hkv, L, E)`` (keys first), as a
        stacked projection makes them: one copy into the cache instead of two."""
        start, end = self.length, self.length + pairs.size(2)
        heads = pairs.size(1) // 2
        # apart at first (a compiled step, which refuses overlapping inputs, may continue), and a window's
        # prompt, which attends in order before it goes into the ring
        if not start or (self.window is not None and end - start > 1):
            return self.append(pairs.narrow(1, 0, heads), pairs.narrow(1, heads, heads))
        room = end if self.window is None else min(end, self.window)
        if self._pairs is None or room > self._pairs.size(2):  # the first time: the prompt moves in once
            self._grow(pairs.narrow(1, 0, heads), pairs.narrow(1, heads, heads), room, paired=True)
        if self.window is None:
            self._pairs.narrow(2, start, end - start).copy_(pairs)
            self.length = end
            return self._keys.narrow(2, 0, end), self._values.narrow(2, 0, end)
        self._pairs.narrow(2, start % self.window, 1).copy_(pairs)
        self.length = end
        return self._keys.narrow(2, 0, room), self._values.narrow(2, 0, room)

    def store(self, key: Tensor, value: Tensor, *, repeats: int = 1) -> None:
        """Keep ``key``, ``value`` as they are (cross-attention: computed once from the encoder output). With
        ``repeats``, row ``i`` serves the query rows ``i * repeats`` to ``(i + 1) * repeats - 1`` (the beams of
        source ``i``), which read it without a copy of their own."""
        self._keys, self._values, self._pairs, self.length = key, value, None, key.size(2)
        self.repeats = repeats

    @property
    def keys(self) -> Tensor | None:
        """The kept keys ``(N, Hkv, S, E)`` in the order of their tokens."""
        return None if self._keys is None else self._in_order(self._keys)

    @property
    def values(self) -> Tensor | None:
        return None if self._values is None else self._in_order(self._values)

    @property
    def nbytes(self) -> int:
        """Bytes of the key and value buffers this cache holds (preallocated slots included, and the spare buffer
        of a beam search's :meth:`reorder`)."""
        if self._pairs is not None:
            return self._pairs.nbytes + (0 if self._spare is None else self._spare.nbytes)
        return sum(t.nbytes for t in (self._keys, self._values) if t is not None)

    def key_mask(self, attn_mask: Tensor | None, length: int) -> Tensor | None:
        """``attn_mask``, whose last dimension covers every token seen (``self.length``), for the keys the last
        :meth:`append` of ``length`` tokens returned: with a ``window``, its last columns, turned as the ring lies
        for one token. Unchanged without a window, or when it broadcasts over the keys."""
        if self.window is None or attn_mask is None or attn_mask.size(-1) != self.length:
            return attn_mask
        window, seen = self.window, self.length
        if length == 1:
            if seen <= window:
                return attn_mask
            # column i of the last W is token seen - W + i, in slot (seen + i) % W
            return attn_mask.narrow(-1, seen - window, window).roll(seen % window, -1)
        held = min(seen - length, window) + length
        return attn_mask.narrow(-1, seen - held, held)

    def reorder(self, index: Tensor) -> None:
        """Keep rows ``index`` ``(N',)`` of the batch (beam search: each beam continues another's prefix).

        Paired keys and values with as many rows as ``index`` (every beam search step) copy only the filled slots,
        into a second buffer of the same shape that then takes the first one's place: no allocation per step, and
        the copy grows with the tokens so far instead of the capacity (twice the cache's memory while it runs)."""
        pairs = self._pairs
        if pairs is not None and index.size(0) == pairs.size(0):
            spare = self._spare
            if spare is None or spare.shape != pairs.shape or spare.dtype != pairs.dtype:
                spare = torch.empty_like(pairs)
            filled = min(self.length, pairs.size(2))
            torch.index_select(pairs.narrow(2, 0, filled), 0, index, out=spare.narrow(2, 0, filled))
            self._spare = pairs
            self._set_pairs(spare)
        elif pairs is not None:
            self._set_pairs(pairs.index_select(0, index))
        elif self._keys is not None:
            # rows shared by ``repeats`` query rows (beams): query row r reads row r // repeats
            rows = index if self.repeats == 1 else torch.div(index, self.repeats, rounding_mode="floor")
            self._keys = self._keys.index_select(0, rows)
            self._values = self._values.index_select(0, rows)
            self.repeats = 1

    def _slide(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`append` with a ``window``: slot ``t % window`` holds token ``t``."""
        window, start, new = self.window, self.length, key.size(2)
        end = start + new
        room = min(end, window)
        if self._keys is None or room > self._keys.size(2):
            self._grow(key, value, room)
        if new == 1:  # a decoding step: one slot, the ring as it lies
            self._keys.narrow(2, start % window, 1).copy_(key)
            self._values.narrow(2, start % window, 1).copy_(value)
            self.length = end
            return self._keys.narrow(2, 0, room), self._values.narrow(2, 0, room)
        if start:  # the kept tokens, in order, before the new ones
            key = torch.cat((self._in_order(self._keys), key), 2)
            value = torch.cat((self._in_order(self._values), value), 2)
        for buffer, new_part in ((self._keys, key), (self._values, value)):
            last = new_part.narrow(2, new_part.size(2) - room, room)  # tokens end - room .. end - 1
            first = (end - room) % window  # the slot of the oldest, then around the ring
            buffer.narrow(2, first, room - first).copy_(last.narrow(2, 0, room - first))
            buffer.narrow(2, 0, first).copy_(last.narrow(2, room - first, first))
        self.length = end
        return key, value

    def _in_order(self, buffer: Tensor) -> Tensor:
        """The first ``length`` slots of ``buffer``; with a window, the kept ones turned back into token order."""
        if self.window is None or self.length <= self.window:
            return buffer[:, :, : self.length]
        return buffer.roll(-(self.length % self.window), 2)

    def _grow(self, key: Tensor, value: Tensor, end: int, *, paired: bool = False) -> None:
        """Room for ``end`` tokens (at most ``window``); keys and values in one buffer when ``paired`` or already
        so. Only :meth:`append_pairs` pairs them: a compiled step refuses a graph whose inputs overlap in memory."""
        size = max(end, self.capacity, 0 if self._keys is None else 2 * self._keys.size(2))
        if self.window is not None:
            size = min(size, self.window)
        if self._keys is not None and end <= self._keys.size(2):
            size = self._keys.size(2)  # pairing only: same room
        batch, heads, _, dim = key.shape
        old_keys, old_values = self._keys, self._values
        paired = paired or self._pairs is not None
        if paired and value.shape[1:2] + value.shape[3:] == (heads, dim) and value.dtype == key.dtype:
            self._set_pairs(key.new_empty(batch, 2 * heads, size, dim))
        else:  # values of another width or dtype than the keys: apart
            self._keys, self._values, self._pairs = (
                key.new_empty(batch, heads, size, dim),
                value.new_empty(batch, heads, size, value.size(-1)),
                None,
            )
        if self.length:  # (a full ring is only ever paired, at the same size: every slot moves as it lies)
            kept = min(self.length, old_keys.size(2))
            self._keys[:, :, :kept] = old_keys[:, :, :kept]
            self._values[:, :, :kept] = old_values[:, :, :kept]

    def _set_pairs(self, pairs: Tensor) -> None:
        heads = pairs.size(1) // 2
        self._pairs, self._keys, self._values = (
            pairs,
            pairs.narrow(1, 0, heads),
            pairs.narrow(1, heads, heads),
        )


class LayerCache:
    """The caches of one layer: its self-attention and, in a decoder of an encoder-decoder, its cross-attention."""

    __slots__ = ("cross_attention", "self_attention", "steps")

    def __init__(self, capacity: int = 0) -> None:
        self.self_attention = AttentionCache(capacity)
        self.cross_attention = AttentionCache()
        self.steps: tuple | None = None
        """The layer's residual steps as functions (:mod:`swapformer.components.functions`), made at its first cached call."""


class KVCache:
    """One :class:`LayerCache` per layer of a decoder stack.

    Pass it to ``DecoderOnly.forward(..., cache=)`` or ``EncoderDecoder.decode(..., cache=)``: each call appends
    the new tokens' keys and values, and the next call continues after them.

    Args:
        num_layers: layers of the decoder stack.
        capacity: tokens to preallocate per layer (prompt + new tokens); 0 sizes the buffers at the first call.
            A layer whose kernel has a window (``sliding_window``) never holds more than the window.

    Examples:
        >>> import torch
        >>> from swapformer import build_causal_lm
        >>> from swapformer.generation import KVCache
        >>> model = build_causal_lm(dict(vocab_size=50, d_model=32, num_heads=4, num_layers=2)).eval()
        >>> ids = torch.randint(50, (1, 6))
        >>> cache = KVCache(2, capacity=7)
        >>> first = model(ids, cache=cache)  # the prompt: 6 tokens, cached
        >>> step = model(ids[:, :1], cache=cache)  # one more token at position 6
        >>> cache.length
        7
    """

    def __init__(self, num_layers: int, *, capacity: int = 0) -> None:
        self.layers = [LayerCache(capacity) for _ in range(num_layers)]

    @property
    def length(self) -> int:
        """Tokens already cached (the position of the next one)."""
        return self.layers[0].self_attention.length if self.layers else 0

    @property
    def nbytes(self) -> int:
        """Bytes of every layer's key and value buffers (self- and cross-attention)."""
        return sum(layer.self_attention.nbytes + layer.cross_attention.nbytes for layer in self.layers)

    def reorder(self, index: Tensor, *, cross_attention: bool = True) -> None:
        """Keep rows ``index`` of every layer's cache. Beam search reorders beams of the same source only, whose
        cross-attention keys are identical, so it passes ``cross_attention=False`` and saves the copy."""
        for layer in self.layers:
            layer.self_attention.reorder(index)
            if cross_attention:
                layer.cross_attention.reorder(index)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> LayerCache:
        return self.layers[index]
