"""Encoder and decoder layers, and the stack that repeats them.

A layer is a sequence of residual steps, each built by a placement around a sublayer::

    encoder layer:  x ─▶ placement(self-attention) ─▶ placement(feed-forward) ─▶
    decoder layer:  x ─▶ placement(causal self-attention) ─▶ placement(cross-attention to memory)
                      ─▶ placement(feed-forward) ─▶
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from swapformer.components.auxiliary import take_losses
from swapformer.components.placement.residual import PostNorm, PreNorm
from swapformer.components.positional.base import PositionalEncoding
from swapformer.nn._shared import borrow
from swapformer.nn.attention import MultiHeadAttention
from swapformer.nn.direct import (
    decoding_norm_function,
    feed_forward_function,
    plain,
    residual_function,
)
from swapformer.nn.masks import with_score_bias

if TYPE_CHECKING:
    from swapformer.nn.cache import KVCache, LayerCache


class TransformerLayer(nn.Module):
    """One encoder layer (no ``cross_attention``) or decoder layer (with it).

    Args:
        self_attention: residual step around a :class:`~swapformer.nn.MultiHeadAttention`.
        feed_forward: residual step around a feed-forward sublayer.
        cross_attention: residual step around the attention to the encoder output, for decoder layers.

    Shape:
        x ``(N, L, D)``; memory ``(N, S, D)``; output ``(N, L, D)``.
    """

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
        """``forward`` through the functions of :mod:`swapformer.nn.direct`, made at the first cached call: the
        same numbers in fewer Python calls, which is what a decoding step of a small model costs."""
        if cache.steps is None:
            cache.steps = (
                residual_function(self.self_attention),
                None if self.cross_attention is None else residual_function(self.cross_attention),
                residual_function(self.feed_forward, feed_forward_function),
            )
        self_attention, cross_attention, feed_forward = cache.steps
        x = self_attention(
            x, attn_mask=attn_mask, is_causal=is_causal, offset=offset, cache=cache.self_attention
        )
        if cross_attention is not None:
            x = cross_attention(x, memory, attn_mask=memory_mask, cache=cache.cross_attention)
        return feed_forward(x)

    def decoding_function(
        self, cache: LayerCache, positional: nn.Module | None
    ) -> Callable[[Tensor, int, tuple[Tensor, Tensor] | None], Tensor] | None:
        """The layer for one new token at an int ``position``, without masks (a decoder-only step that may attend
        every cached key), as one function of ``(x, position, rotation)``: the placement around
        :meth:`MultiHeadAttention.decoding_function`, then the feed-forward step's function
        (:mod:`swapformer.nn.direct`). None where a member has no such function, or a hook waits on it."""
        step = self.self_attention
        if (
            self.training
            or self.cross_attention is not None
            or type(step) not in (PreNorm, PostNorm)
            or type(step.sublayer) is not MultiHeadAttention
            or not plain(self, step)
        ):
            return None
        attend = step.sublayer.decoding_function(cache.self_attention, positional)
        if attend is None:
            return None
        norm = decoding_norm_function(step.norm)
        feed_forward = residual_function(self.feed_forward, feed_forward_function, decoding_norm_function)
        if type(step) is PreNorm:

            def pre_norm_layer(x: Tensor, position: int, rotation: tuple | None) -> Tensor:
                # x ─┬─ norm ─ attention ─(+)─ feed-forward step ─▶
                return feed_forward(x + attend(norm(x), position, rotation))

            return pre_norm_layer

        def post_norm_layer(x: Tensor, position: int, rotation: tuple | None) -> Tensor:
            # x ─┬─ attention ─(+)─ norm ─ feed-forward step ─▶
            return feed_forward(norm(x + attend(x, position, rotation)))

        return post_norm_layer


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
