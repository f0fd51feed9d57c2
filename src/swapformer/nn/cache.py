"""The KV cache: keys and values each attention layer has already computed, so a decoding step runs one token.

::

    step t:   x_t ─▶ q_t, k_t, v_t ─▶ append k_t, v_t ─▶ attend q_t to k_0..k_t, v_0..v_t
                                     (self-attention: grows by one slot per step)
    memory ─▶ k, v once             (cross-attention: computed at the first step, then reused)

Buffers are preallocated ``(N, Hkv, capacity, E)`` and filled in place: a step allocates no cache memory. A
decoding step of a stacked projection keeps keys and values in one buffer ``(N, 2 Hkv, capacity, E)`` and writes
both with one copy.
Only the ``Hkv`` key/value heads are stored, so grouped-query attention caches ``H / Hkv`` times less. Keys are
stored after the positional ``rotate`` hook (RoPE), since a key's position never changes once it is written.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor


class AttentionCache:
    """Keys and values of one attention layer.

    Args:
        capacity: slots to preallocate at the first :meth:`append` (the prompt plus every token to come);
            the buffers double if a longer sequence arrives.

    Shape:
        keys and values ``(N, Hkv, S, E)``, ``S = length``.
    """

    __slots__ = ("_keys", "_pairs", "_values", "capacity", "length", "projection", "step")

    def __init__(self, capacity: int = 0) -> None:
        self.capacity, self.length = capacity, 0
        self._keys: Tensor | None = None
        self._values: Tensor | None = None
        self._pairs: Tensor | None = None
        """Keys then values along the heads, ``(N, 2 Hkv, capacity, E)``: ``_keys`` and ``_values`` are its halves."""
        self.projection: tuple[Tensor, Tensor | None, Tensor, Tensor | None] | None = None
        """W_q, W_k, W_v stacked and their biases, then W_o and its bias: made by the attention layer at the first
        decoding step."""
        self.step: Callable[..., Tensor] | None = None
        """The attention layer's one-token step over this cache (its ``decoding_function``), made at the first."""

    def append(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Write ``key``, ``value`` ``(N, Hkv, L, E)`` after the cached ones; return all ``S`` keys and values."""
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
        if not start:  # apart at first (a compiled step, which refuses overlapping inputs, may continue)
            return self.append(pairs.narrow(1, 0, heads), pairs.narrow(1, heads, heads))
        if self._pairs is None or end > self._pairs.size(2):  # the first time: the prompt moves in once
            self._grow(pairs.narrow(1, 0, heads), pairs.narrow(1, heads, heads), end, paired=True)
        self._pairs.narrow(2, start, end - start).copy_(pairs)
        self.length = end
        return self._keys.narrow(2, 0, end), self._values.narrow(2, 0, end)

    def store(self, key: Tensor, value: Tensor) -> None:
        """Keep ``key``, ``value`` as they are (cross-attention: computed once from the encoder output)."""
        self._keys, self._values, self._pairs, self.length = key, value, None, key.size(2)

    @property
    def keys(self) -> Tensor | None:
        return None if self._keys is None else self._keys[:, :, : self.length]

    @property
    def values(self) -> Tensor | None:
        return None if self._values is None else self._values[:, :, : self.length]

    def reorder(self, index: Tensor) -> None:
        """Keep rows ``index`` ``(N',)`` of the batch (beam search: each beam continues another's prefix)."""
        if self._pairs is not None:
            self._set_pairs(self._pairs.index_select(0, index))
        elif self._keys is not None:
            self._keys = self._keys.index_select(0, index)
            self._values = self._values.index_select(0, index)

    def _grow(self, key: Tensor, value: Tensor, end: int, *, paired: bool = False) -> None:
        """Room for ``end`` tokens; keys and values in one buffer when ``paired`` or already so. Only
        :meth:`append_pairs` pairs them: a compiled step refuses a graph whose inputs overlap in memory."""
        size = max(end, self.capacity, 0 if self._keys is None else 2 * self._keys.size(2))
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
        if self.length:
            self._keys[:, :, : self.length] = old_keys[:, :, : self.length]
            self._values[:, :, : self.length] = old_values[:, :, : self.length]

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
