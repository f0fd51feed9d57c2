"""Encoder and decoder layers, and the stack that repeats them.

A layer is a sequence of residual steps, each built by a placement around a sublayer::

    encoder layer:  x ─▶ placement(self-attention) ─▶ placement(feed-forward) ─▶
    decoder layer:  x ─▶ placement(causal self-attention) ─▶ placement(cross-attention to memory)
                      ─▶ placement(feed-forward) ─▶
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from swapformer.components.auxiliary import take_losses
from swapformer.components.functions import function_of, own_function, plain
from swapformer.components.positional.base import PositionalEncoding
from swapformer.nn._shared import borrow
from swapformer.nn.cache import KVCache, LayerCache
from swapformer.nn.masks import with_score_bias


class TransformerLayer(nn.Module):
    """One encoder layer (no ``cross_attention``) or decoder layer (with it).

    Args:
        self_attention: residual step around a :class:`~swapformer.nn.MultiHeadAttention`.
        feed_forward: residual step around a feed-forward sublayer.
        cross_attention: residual step around the attention to the encoder output, for decoder layers.

    Shape:
        x ``(N, L, D)``; memory ``(N, S, D)``; output ``(N, L, D)``.
    """

    tensor_parallel_plan: ClassVar[dict[str, str]] = {}
    """Under tensor parallelism every rank runs it whole, on the full (replicated) activations."""

    def __init__(
        self, *, self_attention: nn.Module, feed_forward: nn.Module, cross_attention: nn.Module | None = None
    ):
        super().__init__()
        self.self_attention = self_attention
        self.cross_attention = cross_attention
        self.feed_forward = feed_forward

    def forward(
        self,
        x: Tensor,
        *,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        offset: int | Tensor = 0,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: LayerCache | None = None,
        return_losses: bool = False,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """The layer's output ``(N, L, D)``; with ``return_losses``, also the auxiliary losses its members added
        in this call (:class:`~swapformer.components.AddsLosses`), returned with the output so that whatever
        wraps the layer (activation checkpointing, compile, FSDP2) sees them as outputs."""
        # a compiled step traces the modules themselves: the graph fuses what these functions save
        direct = cache is not None and not self.training and not torch.is_grad_enabled()
        if direct and not torch.compiler.is_compiling():
            x = self._cached_step(x, attn_mask, is_causal, offset, memory, memory_mask, cache)
        else:
            x = self.self_attention(
                x,
                attn_mask=attn_mask,
                is_causal=is_causal,
                offset=offset,
                cache=None if cache is None else cache.self_attention,
            )
            if self.cross_attention is not None:
                x = self.cross_attention(
                    x, memory, attn_mask=memory_mask, cache=None if cache is None else cache.cross_attention
                )
            x = self.feed_forward(x)
        return (x, take_losses(self)) if return_losses else x

    def _cached_step(
        self,
        x: Tensor,
        attn_mask: Tensor | None,
        is_causal: bool,
        offset: int | Tensor,
        memory: Tensor | None,
        memory_mask: Tensor | None,
        cache: LayerCache,
    ) -> Tensor:
        """``forward`` through the residual steps' functions (:mod:`swapformer.components.functions`), made at the
        first cached call: the same numbers in fewer Python calls, which is what a decoding step of a small model
        costs. The attention layers run their own forward (masks, cache)."""
        if cache.steps is None:
            cache.steps = (
                function_of(self.self_attention),
                None if self.cross_attention is None else function_of(self.cross_attention),
                function_of(self.feed_forward),
            )
        self_attention, cross_attention, feed_forward = cache.steps
        x = self_attention(
            x, attn_mask=attn_mask, is_causal=is_causal, offset=offset, cache=cache.self_attention
        )
        if cross_attention is not None:
            x = cross_attention(x, memory, attn_mask=memory_mask, cache=cache.cross_attention)
        return feed_forward(x)

    def remember(self, memory: Tensor, cache: LayerCache, *, repeats: int = 1) -> None:
        """Project ``memory`` ``(N, S, D)`` into ``cache``'s cross-attention keys and values once per source, for
        ``repeats`` query rows each (beams), through the attention layer's ``remember``; nothing without
        cross-attention or where the attention layer has no ``remember`` (its first step then projects the
        memory it is given)."""
        if self.cross_attention is None:
            return
        for (
            member
        ) in self.cross_attention.children():  # the residual step's attention layer, beside its norms
            remember = getattr(member, "remember", None)
            if remember is not None:
                remember(memory, cache.cross_attention, repeats=repeats)
                return

    def decoding_function(
        self, cache: LayerCache, *, memory: Tensor | None = None, memory_mask: Tensor | None = None
    ) -> Callable[[Tensor, int, tuple[Tensor, Tensor] | None, Tensor | None], Tensor] | None:
        """The layer for one new token at an int ``position``, without padding (a step that may attend every
        cached key), as one function of ``(x, position, rotation, bias)``: the self-attention step's function
        around its attention layer's ``decoding_function(cache)`` (``bias``: the positional member's score bias,
        or None), then, in a decoder of an encoder-decoder, the cross-attention step's function around its
        attention layer's ``memory_decoding_function`` over the keys and values of ``memory`` already in the
        cache (``memory_mask``: the source's padding ``(N, 1, 1, S)``, or None), then the feed-forward step's
        function (a member without one is called, as ``forward`` calls it). None where an attention layer cannot
        make its function, a hook waits on the layer, or a subclass changes ``forward``."""
        if self.training or type(self).forward is not TransformerLayer.forward or not plain(self):
            return None
        missing = []

        def of(member: nn.Module) -> Callable[..., Tensor]:  # the attention layer gets the cache
            make = getattr(member, "decoding_function", None)
            if make is None:
                return function_of(member, of)
            made = make(cache.self_attention)
            if made is None:
                missing.append(member)
            return made

        def of_memory(member: nn.Module) -> Callable[..., Tensor]:  # called as forward calls the module
            make = getattr(member, "memory_decoding_function", None)
            if make is None:
                return function_of(member, of_memory)
            made = make(cache.cross_attention)
            if made is None:
                missing.append(member)
            return lambda x, memory, *, attn_mask=None, cache=None: made(x, attn_mask)

        attention = own_function(self.self_attention, of)
        cross = None if self.cross_attention is None else own_function(self.cross_attention, of_memory)
        feed_forward = function_of(self.feed_forward)
        if attention is None or missing or (self.cross_attention is not None and cross is None):
            return None
        if cross is None:

            def layer(x: Tensor, position: int, rotation: tuple | None, bias: Tensor | None) -> Tensor:
                return feed_forward(attention(x, position, rotation, bias))

            return layer
        cross_cache = cache.cross_attention

        def decoder_layer(x: Tensor, position: int, rotation: tuple | None, bias: Tensor | None) -> Tensor:
            x = attention(x, position, rotation, bias)
            return feed_forward(cross(x, memory, attn_mask=memory_mask, cache=cross_cache))

        return decoder_layer


class TransformerStack(nn.Module):
    """Layers applied in order, then an optional final norm (needed after pre-norm layers).

    Each layer's self-attention may have its own positional member; a member that adds a score bias (ALiBi, T5's
    relative bias) has it added to that layer's mask here, once per forward for every layer that shares the member.

    Args:
        layers: the layers.
        final_norm: norm applied to the last layer's output, or None.
        positionals: the positional member of each layer's self-attention (used, not owned: the model or a layer
            holds each), whose ``bias`` hook adds to the layer's attention scores; None = no score bias.
    """

    tensor_parallel_plan: ClassVar[dict[str, str]] = {}
    """Under tensor parallelism every rank runs it whole, on the full (replicated) activations."""

    def __init__(
        self,
        *,
        layers: Sequence[TransformerLayer],
        final_norm: nn.Module | None = None,
        positionals: Sequence[PositionalEncoding | None] | None = None,
    ):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.final_norm = final_norm
        if positionals is not None and len(positionals) != len(self.layers):
            raise ValueError(f"{len(positionals)} positional members for {len(self.layers)} layers")
        borrow(self, "positionals", tuple(positionals or (None,) * len(self.layers)))

    def forward(
        self,
        x: Tensor,
        *,
        cache: KVCache | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        losses: dict[str, Tensor] | None = None,
        **kwargs,
    ) -> Tensor:
        """Run every layer with the same keyword arguments (offset, memory), each with its own slot of ``cache``
        and its positional member's score bias added to ``attn_mask``.

        Args:
            attn_mask, is_causal: the self-attention mask of padding and causality (True = may attend), without
                score biases.
            losses: when given, each layer's auxiliary losses (:class:`~swapformer.components.AddsLosses`) are
                added to it by name, summed over the layers.
        """
        past = 0 if cache is None else cache.length
        masks: dict[int, tuple[Tensor | None, bool]] = {}
        caches = [None] * len(self.layers) if cache is None else cache.layers
        for layer, layer_cache, positional in zip(self.layers, caches, self.positionals, strict=True):
            key = id(positional)
            if key not in masks:
                masks[key] = with_score_bias(attn_mask, is_causal, positional, x.size(1), past, x.device)
            mask, causal = masks[key]
            if layer_cache is not None:
                kwargs["cache"] = layer_cache
            if losses is None:
                x = layer(x, attn_mask=mask, is_causal=causal, **kwargs)
            else:
                x, added = layer(x, attn_mask=mask, is_causal=causal, return_losses=True, **kwargs)
                for name, value in added.items():
                    losses[name] = losses[name] + value if name in losses else value
        return x if self.final_norm is None else self.final_norm(x)

    def decoding_function(
        self, cache: KVCache, *, memory: Tensor | None = None, memory_mask: Tensor | None = None
    ) -> Callable[[Tensor, int], Tensor] | None:
        """The stack for one new token of every row at an int ``position``, without padding, as one function of
        ``(x, position)``: each layer's ``decoding_function`` (a decoder's with ``memory``, whose keys and values
        its cache already holds, and the source's padding ``memory_mask``), the tables of each rotating positional
        member and the score bias of each biasing one (ALiBi, T5's buckets: its ``step_bias``, a relative member's
        row made once per generation) looked up once per step for the layers that share it, then the final norm's
        function. None where a layer has no such function, a positional member is
        not a :class:`PositionalEncoding`, or a subclass changes ``forward``."""
        if type(self).forward is not TransformerStack.forward or not plain(self):
            return None
        rotating: list[PositionalEncoding] = []
        biasing: list[PositionalEncoding] = []
        indices: list[tuple[int | None, int | None]] = []  # each layer's (rotating, biasing) member, or None
        for positional in self.positionals:
            if positional is not None and not isinstance(positional, PositionalEncoding):
                return None
            # (a rotation without a stacked form is the layer's own: its attention rotates)
            rotates = positional is not None and positional.stacked_rotation() is not None
            biases = positional is not None and positional.adds_bias
            indices.append(
                (
                    _index(rotating, positional) if rotates else None,
                    _index(biasing, positional) if biases else None,
                )
            )
        layers = [
            getattr(layer, "decoding_function", lambda cache, **kwargs: None)(
                layer_cache, **({} if memory is None else {"memory": memory, "memory_mask": memory_mask})
            )
            for layer, layer_cache in zip(self.layers, cache.layers, strict=True)
        ]
        if any(layer is None for layer in layers):
            return None
        lookups = [member.stacked_rotation()[0] for member in rotating]
        capacity = cache.layers[0].self_attention.capacity if cache.layers else 0
        device = next(iter(self.parameters()), torch.empty(0)).device
        bias_lookups = [member.step_bias(capacity, device) for member in biasing]
        pairs = list(zip(layers, indices, strict=True))
        final_norm = None if self.final_norm is None else function_of(self.final_norm)

        def stack(x: Tensor, position: int) -> Tensor:
            tables = [lookup(position, x) for lookup in lookups]
            # as with_score_bias adds them to a one-token step that may attend every key
            biases = [lookup(position) for lookup in bias_lookups]
            for layer, (rotation, bias) in pairs:
                x = layer(
                    x,
                    position,
                    None if rotation is None else tables[rotation],
                    None if bias is None else biases[bias],
                )
            return x if final_norm is None else final_norm(x)

        return stack


def _index(members: list[PositionalEncoding], member: PositionalEncoding) -> int:
    """The index of ``member`` in ``members``, appended if it is not there yet (members are compared by identity)."""
    for index, seen in enumerate(members):
        if seen is member:
            return index
    members.append(member)
    return len(members) - 1
