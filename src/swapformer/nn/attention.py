"""Multi-head attention: projections, positional rotation, a kernel, and the output projection W_o."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swapformer.components.functions import function_of, own_function, plain
from swapformer.components.positional.base import PositionalEncoding
from swapformer.errors import ConfigError
from swapformer.nn._shared import borrow
from swapformer.nn.cache import AttentionCache
from swapformer.nn.qk_norm_rotation import normed_rotation


class MultiHeadAttention(nn.Module):
    """Multi-head attention with ``num_kv_heads`` for grouped-query (GQA) and multi-query (MQA) attention.

    ::

        q = x W_q, k = m W_k, v = m W_v     (m = x for self-attention, the encoder output for cross-attention)
        q, k = q_norm(q), k_norm(k)         (when given: per head over E, Qwen3; or per projection, OLMo 2)
        q, k = positional.rotate(q, k)      (self-attention only; identity unless e.g. RoPE)
        o = kernel(q, k, v, mask, scale)    per head, heads = num_heads; scale = 1 / sqrt(E) unless given
        y = concat(o_1 ... o_H) W_o

    Args:
        d_model: model dimension D.
        num_heads: query heads H.
        kernel: an attention kernel (``family("attention").build("sdpa")``).
        num_kv_heads: key/value heads Hkv (H for MHA, 1 for MQA, between for GQA); must divide H.
        head_dim: E, the width of each head; None = D / H (which must then divide evenly).
        bias: biases in the four projections.
        qkv_bias: biases in W_q, W_k and W_v; None = ``bias`` (Qwen2 has them, without one in W_o).
        scale: the factor on q . k; None = 1 / sqrt(E). T5 uses 1.0.
        dropout: dropout on the attention weights while training.
        positional: this layer's positional member, whose ``rotate`` hook applies to q and k in self-attention
            (RoPE); None for cross-attention. The layer's score bias (ALiBi) is added by its stack.
        owns_positional: register ``positional`` as this module's own; False (the default) uses it without
            owning it: the model, or an earlier layer of the same spec, holds its parameters and buffers.
        q_norm, k_norm: norms applied to the queries and keys before the rotation, or None: to each head, over
            E (``qk_norm_per_head``, Qwen3), or else to the whole projection, over H E and Hkv E (OLMo 2).
        qk_norm_per_head: see ``q_norm``.

    Raises:
        ConfigError: D not divisible by H (without ``head_dim``), or H not divisible by Hkv.

    Shape:
        x ``(N, L, D)``; memory ``(N, S, D)``; attn_mask broadcastable to ``(N, H, L, S)``; output ``(N, L, D)``.
    """

    residual_projections: ClassVar[tuple[str, ...]] = ("out_proj",)
    """W_o writes into the residual stream: its weight starts at the residual std (``init_weights``)."""
    score_projections: ClassVar[tuple[str, ...]] = ("q_proj", "k_proj")
    """W_q and W_k only meet in the scores: DeepNet's initialization keeps their gain at 1."""

    def tensor_parallel_plan(self, *, size: int) -> dict[str, Any]:
        """Split ``size`` ways (TP): W_q, W_k, W_v column-wise, so each rank projects H / size query heads and
        Hkv / size key/value heads (a GQA group stays on one rank), and W_o row-wise (the ranks' partial
        outputs summed). ``forward`` takes its head counts from the projections' outputs: the kernel and the
        positional rotation act on the local heads. q/k norms per head run on the local heads, their gains
        whole on every rank and their gradients summed over the ranks; q/k norms over the whole projection
        (OLMo 2) gather the heads of q and of k first (an all-gather each, per layer), since the mean runs
        over every head (:mod:`swapformer.components.tensor_parallel`).

        Raises:
            ConfigError: ``size`` does not divide H or Hkv.
        """
        for name, count in (("num_heads", self.num_heads), ("num_kv_heads", self.num_kv_heads)):
            if count % size:
                fits = [d for d in range(1, self.num_kv_heads + 1) if self.num_kv_heads % d == 0]
                raise ConfigError(
                    f"tensor_parallel_size={size} does not divide {name}={count} (each TP rank takes whole "
                    f"heads): set tensor_parallel_size to one of {fits}"
                )
        plan: dict[str, Any] = {
            "q_proj": "colwise",
            "k_proj": "colwise",
            "v_proj": "colwise",
            "out_proj": "rowwise",
        }
        if self.q_norm is not None and size > 1:
            from swapformer.components.tensor_parallel import PerHead, WholeWidth

            style = PerHead(dim=1) if self.qk_norm_per_head else WholeWidth(dim=-1)
            plan |= {"q_norm": style, "k_norm": style}
        return plan

    def __init__(
        self,
        *,
        d_model: int,
        num_heads: int,
        kernel: nn.Module,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        bias: bool = True,
        qkv_bias: bool | None = None,
        scale: float | None = None,
        dropout: float = 0.0,
        positional: PositionalEncoding | None = None,
        owns_positional: bool = False,
        q_norm: nn.Module | None = None,
        k_norm: nn.Module | None = None,
        qk_norm_per_head: bool = True,
    ) -> None:
        super().__init__()
        if owns_positional:
            self.positional = positional
        else:
            borrow(self, "positional", positional)
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if head_dim is None and d_model % num_heads:
            raise ConfigError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        if num_heads % num_kv_heads:
            raise ConfigError(f"num_heads={num_heads} is not divisible by num_kv_heads={num_kv_heads}")
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = d_model // num_heads if head_dim is None else head_dim
        self.scale, self.dropout = scale, dropout
        qkv_bias = bias if qkv_bias is None else qkv_bias
        self.q_proj = nn.Linear(d_model, num_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(d_model, num_kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(d_model, num_kv_heads * self.head_dim, bias=qkv_bias)
        self.out_proj = nn.Linear(num_heads * self.head_dim, d_model, bias=bias)  # W_o
        self.kernel = kernel
        self.q_norm, self.k_norm = q_norm, k_norm
        self.qk_norm_per_head = qk_norm_per_head

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        offset: int | Tensor = 0,
        need_weights: bool = False,
        cache: AttentionCache | None = None,
    ) -> Tensor | tuple[Tensor, Tensor | None]:
        """Self-attention when ``memory`` is None, else cross-attention from ``x`` to ``memory``.

        Args:
            attn_mask: True = may attend (or a float bias), broadcastable to ``(N, H, L, S)``.
            is_causal: block future keys (when no mask is given, the kernel's fast causal path).
            offset: absolute position of ``x[:, 0]`` (tokens already seen), for ``rotate``; an int, or ``(N,)``
                per-row offsets for left-padded batches.
            need_weights: also return the attention weights ``(N, H, L, S)``.
            cache: keys and values of earlier steps. Self-attention appends the new tokens' keys and values and
                attends to all of them (``S`` = cached + ``L``); cross-attention projects ``memory`` at the first
                call and reuses it afterwards.
        """
        batch, length, _ = x.shape
        if (  # one token's cross-attention to memory already projected: the plan's step, kept in the cache
            memory is not None
            and cache is not None
            and cache.length
            and length == 1
            and not (need_weights or self.training or torch.is_grad_enabled())
            and not torch.compiler.is_compiling()
        ):
            step = cache.step or self.memory_decoding_function(cache)
            if step is not None:
                cache.step = step
                return step(x, attn_mask)
        stack = memory is None and cache is not None and not torch.is_grad_enabled()
        stack = stack and (cache.projection is not None or self._plain_projections())
        decoding = stack and length == 1 and not need_weights and not self.training
        if (
            decoding and not torch.compiler.is_compiling()
        ):  # a decoding step (in place: not for a compiled graph)
            step = cache.step or self.decoding_function(cache)
            if step is not None:
                cache.step = step
                return step(x, offset, None, attn_mask, is_causal)
        if stack:  # a prompt into the cache: one GEMM instead of three
            q, k, v = self._project_qkv_stacked(x, cache)
        else:
            # heads as the projection gives them: H, or H / TP on each rank of a tensor-parallel split
            q = self.q_proj(x).view(batch, length, -1, self.head_dim).transpose(1, 2)  # (N, H, L, E)
            if memory is None:
                k, v = self._project_kv(x)
        if memory is None:  # self-attention
            q, k = self._normed_and_rotated(q, k, offset)
            if cache is not None:
                if not cache.length:
                    cache.window = self.cache_window()
                k, v = cache.append(k, v)  # (N, Hkv, S, E), S = cached + L (at most the window + L)
                attn_mask = cache.key_mask(attn_mask, length)
        elif cache is not None and cache.length:  # cross-attention, memory already projected
            k, v = cache.keys, cache.values
            if cache.repeats > 1:  # one row per source (remember): here each beam gets its copy
                k, v = k.repeat_interleave(cache.repeats, 0), v.repeat_interleave(cache.repeats, 0)
        else:
            k, v = self._project_kv(memory)
            if cache is not None:
                cache.store(k, v)
        out, weights = self.kernel(
            q,
            k,
            v,
            attn_mask=attn_mask,
            is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
            scale=self.scale,
            need_weights=need_weights,
        )
        if length == 1:  # one query: (N, H, 1, E) to (N, 1, H * E) needs no transpose call
            out = out.reshape(batch, 1, -1)
        else:
            out = out.transpose(1, 2).reshape(batch, length, -1)
        if stack:  # a plain Linear (see _plain_projections): skip the module call
            out = F.linear(out, *self._stacked_projection(cache)[2:])
        else:
            out = self.out_proj(out)
        return (out, weights) if need_weights else out

    def cache_window(self) -> int | None:
        """The newest keys a query of this layer's kernel sees, itself included (its ``cache_window``, as
        ``sliding_window`` declares its window), which is all a KV cache of its self-attention keeps; None: every
        key."""
        return getattr(self.kernel, "cache_window", None)

    def _normed_and_rotated(self, q: Tensor, k: Tensor, offset: int | Tensor) -> tuple[Tensor, Tensor]:
        """q and k through their norms, then the positional rotation: in one autograd node where the norms are
        RMS norms and the rotation RoPE's, in a CPU training step (:mod:`swapformer.nn.qk_norm_rotation`)."""
        if self.q_norm is not None and self.positional is not None and torch.is_grad_enabled():
            turned = normed_rotation(
                q,
                k,
                q_norm=self.q_norm,
                k_norm=self.k_norm,
                positional=self.positional,
                offset=offset,
                per_head=self.qk_norm_per_head,
            )
            if turned is not None:
                return turned
        if self.q_norm is not None:
            q, k = self._normed(self.q_norm, q), self._normed(self.k_norm, k)
        if self.positional is not None:
            q, k = self.positional.rotate(q, k, offset=offset)
        return q, k

    def _normed(self, norm: Callable[[Tensor], Tensor], heads: Tensor) -> Tensor:
        """``norm`` of q or k ``(N, H, L, E)``: per head, or over the whole projection ``(N, L, H E)``."""
        if self.qk_norm_per_head:
            return norm(heads)
        batch, count, length, dim = heads.shape
        whole = heads.transpose(1, 2).reshape(batch, length, count * dim)
        return norm(whole).view(batch, length, count, dim).transpose(1, 2)

    def _plain_projections(self) -> bool:
        # plain Linears without hooks: then one stacked GEMM computes exactly what the three would
        projections = (self.q_proj, self.k_proj, self.v_proj, self.out_proj)
        return all(type(p) is nn.Linear for p in projections) and plain(*projections)

    def _stacked_projection(
        self, cache: AttentionCache
    ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        """W_q, W_k, W_v stacked (and their biases), then W_o and its bias, kept in ``cache``: looked up there,
        a step reads no module attribute."""
        if cache.projection is None:
            projections = (self.q_proj, self.k_proj, self.v_proj)
            bias = None if self.q_proj.bias is None else torch.cat([p.bias for p in projections])
            weight = torch.cat([p.weight for p in projections])
            cache.projection = (weight, bias, self.out_proj.weight, self.out_proj.bias)
        return cache.projection

    def _project_qkv_stacked(self, x: Tensor, cache: AttentionCache) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v from W_q, W_k, W_v stacked into one matrix. A decoding step is bound by per-call overhead, not
        arithmetic, so one GEMM beats three; the stacked copy lives in the cache, only while a generation runs."""
        batch, length, _ = x.shape
        heads = self.num_heads + 2 * self.num_kv_heads
        # one view and one transpose for the three, then views per head group: fewer calls per step
        qkv = (
            F.linear(x, *self._stacked_projection(cache)[:2])
            .view(batch, length, heads, self.head_dim)
            .transpose(1, 2)
        )
        q, k, v = qkv.split([self.num_heads, self.num_kv_heads, self.num_kv_heads], 1)  # (N, H|Hkv, L, E)
        return q, k, v

    def decoding_function(self, cache: AttentionCache) -> Callable[..., Tensor] | None:
        """Self-attention of one new token ``(N, 1, D)`` with ``cache``, without autograd, as one function of
        ``(x, position, rotation=None, attn_mask=None, is_causal=False)`` with what a step looks up resolved once:
        ``forward``'s decoding step (kept in the cache) and the plan of a whole decoder-only step
        (:meth:`~swapformer.nn.TransformerLayer.decoding_function`). The same operators on the same tensors as
        ``forward``, so the same numbers.

        W_q, W_k and W_v stacked make one GEMM whose output is already head-major, ``(N, H + 2 Hkv, 1, E)``: the
        q/k norms overwrite their heads, a positional member with a stacked rotation (RoPE's) turns the q and k
        heads together in place, and the k and v heads go into the cache with one copy. ``rotation`` is that
        member's tables of ``position`` (an int, or ``(N,)`` per row), looked up once per step for the layers
        that share it; None looks them up here. Another rotating member rotates through its ``rotate``. The
        kernel's function (:mod:`swapformer.components.functions`) attends unmasked; a mask (left-padded
        prompts), or a kernel without a function, calls the kernel module.

        Returns None (``forward``'s general path then runs) where the projections are not torch's Linear or
        something hooks them or this module: their stacked weights stand in for them.
        """
        if not (self._plain_projections() and plain(self)):
            return None
        kernel = own_function(self.kernel)
        # a score bias (T5's, ALiBi's; -inf at padded keys) straight to a function that takes one: the new token
        # always sees its own key, so no row is empty and the module's guard (4 operators a layer) has no work
        biased = kernel is not None and getattr(self.kernel, "function_takes_score_bias", False)
        norms = None if self.q_norm is None else (function_of(self.q_norm), function_of(self.k_norm))
        positional = self.positional
        rotates = positional is not None and positional.rotates
        tables, rotate = (positional.stacked_rotation() if rotates else None) or (None, None)
        w_qkv, b_qkv, w_out, b_out = self._stacked_projection(cache)
        if not cache.length:
            cache.window = self.cache_window()
        heads, kv_heads, dim, scale = self.num_heads, self.num_kv_heads, self.head_dim, self.scale
        grouped, width = kv_heads != heads, heads * dim
        stacked, rotated, pairs = heads + 2 * kv_heads, heads + kv_heads, 2 * kv_heads

        def attend(
            x: Tensor,
            position: int | Tensor,
            rotation: tuple[Tensor, Tensor] | None = None,
            attn_mask: Tensor | None = None,
            is_causal: bool = False,
        ) -> Tensor:  # x (N, 1, D)
            qkv = F.linear(x, w_qkv, b_qkv).view(-1, stacked, 1, dim)  # (N, H + 2 Hkv, 1, E)
            if norms is not None:
                for norm, start, count in ((norms[0], 0, heads), (norms[1], heads, kv_heads)):
                    part = qkv.narrow(1, start, count)
                    part.copy_(self._normed(norm, part))
            if tables is not None:
                query_keys = qkv.narrow(1, 0, rotated)
                if rotation is None or rotation[0].dtype != qkv.dtype:  # (autocast: q and k of another dtype)
                    rotation = tables(position, query_keys)
                rotate(query_keys, *rotation)
            if rotates and tables is None:  # a member's own rotate: new q and k, two copies into the cache
                q, k, v = qkv.split([heads, kv_heads, kv_heads], 1)
                q, k = positional.rotate(q, k, offset=position)
                k, v = cache.append(k, v)
            else:
                q = qkv.narrow(1, 0, heads)
                k, v = cache.append_pairs(qkv.narrow(1, heads, pairs))  # (N, Hkv, S, E)
            if attn_mask is not None:  # (a window's ring: its columns as the keys lie)
                attn_mask = cache.key_mask(attn_mask, 1)
            if kernel is not None and attn_mask is None and not is_causal:
                out = kernel(q, k, v, scale=scale, enable_gqa=grouped)
            elif biased and not is_causal and attn_mask.is_floating_point():
                if attn_mask.dim() < 4:  # (H, 1, S): torch's CPU dispatch gives a 3-D mask its math fallback
                    attn_mask = attn_mask[(None,) * (4 - attn_mask.dim())]
                out = kernel(q, k, v, attn_mask=attn_mask, scale=scale, enable_gqa=grouped)
            else:
                out = self.kernel(q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale)[0]
            return F.linear(out.reshape(-1, 1, width), w_out, b_out)  # (N, H, 1, E) as (N, 1, H E)

        return attend

    def remember(self, memory: Tensor, cache: AttentionCache, *, repeats: int = 1) -> None:
        """Project ``memory`` ``(N, S, D)`` into the keys and values of cross-attention once per source, for
        ``repeats`` query rows each (the beams of a source share them), into ``cache``, which every later
        cross-attention step reads instead of ``memory``.

        With a kernel function (torch's SDPA, whose queries never see each other) the keys and values stay one
        row per source, ``(N, Hkv, S, E)``, and a step attends with the ``repeats`` beams of a source as its
        queries (:meth:`memory_decoding_function`): no copy, and a quarter of the traffic at 4 beams. Another
        kernel gets each row repeated, ``(N * repeats, Hkv, S, E)``."""
        k, v = self._project_kv(memory)
        shared = repeats > 1 and own_function(self.kernel) is not None
        if repeats > 1 and not shared:
            k, v = k.repeat_interleave(repeats, dim=0), v.repeat_interleave(repeats, dim=0)
        cache.store(k, v, repeats=repeats if shared else 1)

    def memory_decoding_function(self, cache: AttentionCache) -> Callable[..., Tensor] | None:
        """Cross-attention of one new token ``(N, 1, D)`` to the keys and values of ``memory`` already in
        ``cache`` (:meth:`remember`, or ``forward``'s first call), without autograd, as one function of
        ``(x, attn_mask=None)``: ``forward``'s one-token cross-attention step (kept in the cache) and the plan of
        an encoder-decoder's step (:meth:`~swapformer.nn.TransformerLayer.decoding_function`). ``attn_mask`` is
        the source's key padding ``(N, 1, 1, S)``, True = real token, or None.

        Where ``cache`` holds one row per source for ``B`` beams (:meth:`remember`), the beams of a source are its
        queries, ``(N / B, H, B, E)`` against its keys and values once::

            q (N, 1, H E) ─view─▶ (N / B, B, H, E) ─transpose─▶ (N / B, H, B, E) ─kernel─▶ back as (N, 1, H E)

        Returns None (``forward``'s general path then runs) where the projections are not torch's Linear or
        something hooks them or this module, or no keys are cached yet.
        """
        if not (self._plain_projections() and plain(self)) or not cache.length:
            return None
        kernel = own_function(self.kernel)
        w_q, b_q, w_out, b_out = (
            self.q_proj.weight,
            self.q_proj.bias,
            self.out_proj.weight,
            self.out_proj.bias,
        )
        heads, dim, scale = self.num_heads, self.head_dim, self.scale
        grouped, width, beams = self.num_kv_heads != heads, heads * dim, cache.repeats

        def attend(x: Tensor, attn_mask: Tensor | None = None) -> Tensor:  # x (N, 1, D)
            q = F.linear(x, w_q, b_q).view(-1, heads, 1, dim)  # (N, H, 1, E): one query needs no transpose
            k, v = cache.keys, cache.values  # (N, Hkv, S, E)
            if kernel is not None and attn_mask is None:
                out = kernel(q, k, v, scale=scale, enable_gqa=grouped)
            else:
                out = self.kernel(q, k, v, attn_mask=attn_mask, is_causal=False, scale=scale)[0]
            return F.linear(out.reshape(-1, 1, width), w_out, b_out)  # (N, H, 1, E) as (N, 1, H E)

        def attend_beams(x: Tensor, attn_mask: Tensor | None = None) -> Tensor:  # x (N, 1, D), N = sources B
            q = F.linear(x, w_q, b_q).view(-1, beams, heads, dim).transpose(1, 2)  # (N / B, H, B, E)
            k, v = cache.keys, cache.values  # (N / B, Hkv, S, E)
            if kernel is not None and attn_mask is None:
                out = kernel(q, k, v, scale=scale, enable_gqa=grouped)
            else:  # the source's padding: its beams' rows are the same
                mask = None if attn_mask is None else attn_mask[::beams]
                out = self.kernel(q, k, v, attn_mask=mask, is_causal=False, scale=scale)[0]
            return F.linear(out.transpose(1, 2).reshape(-1, 1, width), w_out, b_out)  # (N, 1, H E)

        return attend if beams == 1 else attend_beams

    def _project_kv(self, source: Tensor) -> tuple[Tensor, Tensor]:
        batch, source_length, _ = source.shape
        shape = (batch, source_length, -1, self.head_dim)  # Hkv, or Hkv / TP on a tensor-parallel rank
        k = self.k_proj(source).view(shape).transpose(1, 2)  # (N, Hkv, S, E)
        v = self.v_proj(source).view(shape).transpose(1, 2)
        return k, v
