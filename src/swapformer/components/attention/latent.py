"""`mla`: multi-head latent attention (DeepSeek-V2, 2024; DeepSeek-V3): keys and values from one shared latent.

::

    q        = x W_q                    or  RMSNorm(x W_qa) W_qb          (q_lora_rank: a low-rank query path)
    q_nope, q_rope = q split per head   (H, dn) and (H, dr)
    c, k_rope = x W_kva                 c: the latent (r = kv_lora_rank), k_rope: one rope key (dr) for every head
    c        = RMSNorm(c)
    k_nope, v = c W_kvb                 per head (H, dn) and (H, dv)
    q_rope, k_rope = positional.rotate(q_rope, k_rope)
    o        = kernel([q_nope, q_rope], [k_nope, k_rope], v, scale = mscale^2 / sqrt(dn + dr))
    y        = concat(o_1 ... o_H) W_o

The KV cache holds only ``c`` and ``k_rope``: ``r + dr`` values per token and layer, against ``2 Hkv E`` for
grouped-query attention. A decoding step (one token over the cache) may *absorb* the up-projections instead of
expanding every cached latent into keys and values: with W_kvb = [W_uk; W_uv] per head,

    q_nope . k_nope_j = (q_nope W_uk) . c_j            o = (sum_j a_j c_j) W_uv^T

so the step attends with queries ``[q_nope W_uk, q_rope]`` over keys ``[c_j, k_rope_j]`` and values ``c_j``,
one key/value head shared by all H (multi-query attention over the latent), then applies W_uv per head. The
values are the keys themselves, whose first r columns are ``c_j`` (the rest of the output is dropped): one tensor,
and keys and values of one width, which torch's fused CPU kernel requires.

Parameter names and shapes are DeepSeek-V3's (``q_proj`` or ``q_a_proj``, ``q_a_layernorm``, ``q_b_proj``;
``kv_a_proj_with_mqa``, ``kv_a_layernorm``, ``kv_b_proj``), W_o is ``out_proj`` as in every attention layer.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from swapformer.components.declarations import local_part
from swapformer.components.positional.base import heads_split
from swapformer.errors import ConfigError
from swapformer.registry import ATTENTION, Capabilities, ComponentSpec, capabilities, split_spec


def _size(value: object, name: str, *, even: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (even and value % 2):
        kind = "a positive even integer (rope turns pairs)" if even else "a positive integer"
        raise ConfigError(f"mla: {name}={value!r} must be {kind}")
    return value


def _rank(value: object, name: str, d_model: int, example: str) -> int:
    rank = _size(value, name)
    if rank > d_model:
        raise ConfigError(
            f"mla: {name}={rank} is larger than d_model={d_model}, so the latent compresses nothing; choose "
            f"{name} <= {d_model} ({example})"
        )
    return rank


class MultiHeadLatentAttention(nn.Module):
    """Multi-head latent attention (DeepSeek-V2/V3): a whole attention layer, its projections around a kernel.

    Sizes default from the head width E = ``head_dim`` (D / H): ``qk_nope_head_dim = v_head_dim = E``,
    ``qk_rope_head_dim = E / 2`` (even, at least 2), ``kv_lora_rank = D / 2``; DeepSeek-V3 has E = 128, 64, 128,
    512 and a ``q_lora_rank`` of 1536 (D = 7168).

    Args:
        d_model: model dimension D.
        num_heads: query heads H (each has its own keys and values, expanded from the shared latent).
        head_dim: E, the default of the head sizes below.
        kernel: the attention kernel inside (``sdpa``, ``math``, ``sliding_window`` ..., options included): a
            softmax kernel, since the absorbed step relies on the scores being dot products.
        q_lora_rank: the rank of the query's low-rank path (``q_a_proj``, RMSNorm, ``q_b_proj``); None: one
            ``q_proj``.
        kv_lora_rank: r, the latent's width, what the KV cache holds per token besides the rope key.
        qk_nope_head_dim: dn, each head's query/key width without positions.
        qk_rope_head_dim: dr, the width of the rotated query part and of the rope key shared by all heads.
        v_head_dim: dv, each head's value width.
        rope_interleave: the rope dims of the projections' outputs lie in pairs (x0, x1), (x2, x3) ... (DeepSeek-V3
            checkpoints); they are regrouped into halves before the rotation.
        mscale: the softmax scale is ``mscale ** 2 / sqrt(dn + dr)`` (or ``scale * mscale ** 2``): DeepSeek with
            YaRN uses ``0.1 mscale_all_dim ln(factor) + 1``.
        absorb: decoding steps (one token over a KV cache) absorb the up-projections; False expands every
            cached latent into keys and values at every step.
        bias: biases in ``q_a_proj``, ``kv_a_proj_with_mqa`` and W_o (DeepSeek's ``attention_bias``); ``q_proj``,
            ``q_b_proj`` and ``kv_b_proj`` have none.
        scale: the factor on q . k before ``mscale``; None = 1 / sqrt(dn + dr).
        dropout: dropout on the attention weights while training.
        positional: a rotating member of width dr (the builders make it); None: no rotation.

    Raises:
        ConfigError: a size that is not a positive integer (an odd ``qk_rope_head_dim``), a rank larger than D, or
            a kernel that is not a softmax kernel.

    Shape:
        x ``(N, L, D)``; attn_mask broadcastable to ``(N, H, L, S)``; output ``(N, L, D)``.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        layer=True,
        self_attention_only=True,
        cross_attention="sdpa",
        torch_export=False,
        notes="a whole attention layer (its own projections); the KV cache holds the latent and the rope key; "
        "cross-attention uses sdpa",
    )
    residual_projections: ClassVar[tuple[str, ...]] = ("out_proj",)
    score_projections: ClassVar[tuple[str, ...]] = ("q_proj", "q_a_proj", "q_b_proj")

    def tensor_parallel_plan(self, *, size: int) -> dict[str, Any]:
        """Split ``size`` ways (TP) by heads after the latent: the query's last projection (``q_proj``, or
        ``q_b_proj`` after the low-rank path) and ``kv_b_proj`` column-wise (each rank expands the latent into
        its own H / size heads' keys and values), W_o row-wise. The latent path (``q_a_proj``, ``kv_a_proj_with_mqa``
        and their RMSNorms) runs whole on every rank; the rope key, which every head reads, has its gradient
        summed over the ranks (:class:`~swapformer.components.tensor_parallel.SharedByHeads`).

        Raises:
            ConfigError: ``size`` does not divide H.
        """
        if heads_split(self.num_heads, size, "mla") == 1:
            return {}
        from swapformer.components.tensor_parallel import SharedByHeads

        query = "q_proj" if self.q_proj is not None else "q_b_proj"
        return {query: "colwise", "kv_b_proj": "colwise", "out_proj": "rowwise", "rope_key": SharedByHeads()}

    def __init__(
        self,
        *,
        d_model: int,
        num_heads: int,
        head_dim: int | None = None,
        kernel: ComponentSpec = "sdpa",
        q_lora_rank: int | None = None,
        kv_lora_rank: int | None = None,
        qk_nope_head_dim: int | None = None,
        qk_rope_head_dim: int | None = None,
        v_head_dim: int | None = None,
        rope_interleave: bool = False,
        mscale: float = 1.0,
        absorb: bool = True,
        bias: bool = False,
        scale: float | None = None,
        dropout: float = 0.0,
        positional: nn.Module | None = None,
    ) -> None:
        super().__init__()
        width = d_model // num_heads if head_dim is None else head_dim
        self.num_heads = num_heads
        self.qk_nope_head_dim = _size(
            width if qk_nope_head_dim is None else qk_nope_head_dim, "qk_nope_head_dim"
        )
        rope_default = max(2, width // 4 * 2)
        self.qk_rope_head_dim = _size(
            rope_default if qk_rope_head_dim is None else qk_rope_head_dim, "qk_rope_head_dim", even=True
        )
        self.v_head_dim = _size(width if v_head_dim is None else v_head_dim, "v_head_dim")
        self.kv_lora_rank = _rank(
            max(1, d_model // 2) if kv_lora_rank is None else kv_lora_rank,
            "kv_lora_rank",
            d_model,
            "DeepSeek-V3: 512 of 7168",
        )
        self.q_lora_rank = (
            None
            if q_lora_rank is None
            else _rank(q_lora_rank, "q_lora_rank", d_model, "DeepSeek-V3: 1536 of 7168")
        )
        if isinstance(mscale, bool) or not isinstance(mscale, int | float) or not mscale > 0:
            raise ConfigError(
                f"mla: mscale={mscale!r} must be a number > 0 (1.0: the plain 1 / sqrt(dn + dr))"
            )
        for name, value in (("rope_interleave", rope_interleave), ("absorb", absorb)):
            if not isinstance(value, bool):
                raise ConfigError(f"mla: {name}={value!r} must be true or false")
        kernel_name = split_spec(kernel, where="mla: kernel")[0]
        declared = capabilities("attention", kernel_name)
        if declared.layer or not declared.accepts_score_bias:
            softmax = [n for n in ATTENTION.available() if _softmax_kernel(n)]
            raise ConfigError(
                f"mla: kernel '{kernel_name}' cannot attend inside latent attention (it needs a softmax kernel "
                f"over the expanded or absorbed heads); use kernel: {' | '.join(softmax)}"
            )
        self.kernel = ATTENTION.build(kernel, num_heads=num_heads)
        self.rope_interleave, self.absorb, self.dropout = rope_interleave, absorb, dropout
        qk_head_dim = self.qk_nope_head_dim + self.qk_rope_head_dim
        self.scale = (1.0 / math.sqrt(qk_head_dim) if scale is None else scale) * mscale**2
        if self.q_lora_rank is None:
            self.q_proj = nn.Linear(d_model, num_heads * qk_head_dim, bias=False)
            self.q_a_proj = self.q_a_layernorm = self.q_b_proj = None
        else:
            self.q_proj = None
            self.q_a_proj = nn.Linear(d_model, self.q_lora_rank, bias=bias)
            self.q_a_layernorm = nn.RMSNorm(self.q_lora_rank, eps=1e-6)
            self.q_b_proj = nn.Linear(self.q_lora_rank, num_heads * qk_head_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(d_model, self.kv_lora_rank + self.qk_rope_head_dim, bias=bias)
        self.kv_a_layernorm = nn.RMSNorm(self.kv_lora_rank, eps=1e-6)
        self.kv_b_proj = nn.Linear(
            self.kv_lora_rank, num_heads * (self.qk_nope_head_dim + self.v_head_dim), bias=False
        )
        self.out_proj = nn.Linear(num_heads * self.v_head_dim, d_model, bias=bias)  # W_o
        self.positional = positional
        # the identity, where tensor parallelism sums the rope key's gradient over the ranks' heads
        self.rope_key = nn.Identity()

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        offset: int | Tensor = 0,
        need_weights: bool = False,
        cache: Any = None,
    ) -> Tensor | tuple[Tensor, Tensor | None]:
        """Self-attention of ``x``; the arguments are :class:`~swapformer.nn.MultiHeadAttention`'s. ``cache`` (an
        :class:`~swapformer.nn.AttentionCache`) receives the rope keys as its keys ``(N, 1, S, dr)`` and the
        latents as its values ``(N, 1, S, r)``."""
        if memory is not None:
            raise ConfigError("mla is self-attention only; cross-attention takes a full kernel (sdpa)")
        batch, length, _ = x.shape
        nope, rope = self.qk_nope_head_dim, self.qk_rope_head_dim
        # heads as the projection gives them: H, or H / TP on each rank of a tensor-parallel split
        query = self._queries(x).view(batch, length, -1, nope + rope).transpose(1, 2)  # (N, H, L, dn + dr)
        heads = query.size(1)
        q_nope, q_rope = query.split([nope, rope], dim=-1)
        latent, k_rope = self.kv_a_proj_with_mqa(x).split([self.kv_lora_rank, rope], dim=-1)
        latent = self.kv_a_layernorm(latent).unsqueeze(1)  # (N, 1, L, r)
        k_rope = self.rope_key(k_rope).unsqueeze(1)  # (N, 1, L, dr): one key head for all H
        if self.rope_interleave:  # pairs (x0, x1), (x2, x3) ... to halves (x0, x2, ...), (x1, x3, ...)
            q_rope, k_rope = (torch.cat((t[..., 0::2], t[..., 1::2]), dim=-1) for t in (q_rope, k_rope))
        if self.positional is not None:
            q_rope, k_rope = self.positional.rotate(q_rope, k_rope, offset=offset)
        if cache is not None:
            if not cache.length:
                cache.window = self.cache_window()
            k_rope, latent = cache.append(k_rope, latent)  # (N, 1, S, dr), (N, 1, S, r)
            attn_mask = cache.key_mask(attn_mask, length)
        absorbed = self.absorb and cache is not None and length == 1
        if absorbed:
            query, key, value = self._absorbed(q_nope, q_rope, latent, k_rope)
        else:
            query, key, value = self._expanded(q_nope, q_rope, latent, k_rope)
        out, weights = self.kernel(
            query,
            key,
            value,
            attn_mask=attn_mask,
            is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
            scale=self.scale,
            need_weights=need_weights,
        )
        if absorbed:  # o = (sum_j a_j c_j) W_uv^T per head: (N, H, L, r) to (N, H, L, dv)
            # (einsum: a batched GEMM per head; matmul's broadcast over N is ~40x slower here on the CPU)
            out = torch.einsum("nhlr,hvr->nhlv", out[..., : self.kv_lora_rank], self._up_projections()[1])
        out = self.out_proj(out.transpose(1, 2).reshape(batch, length, heads * self.v_head_dim))
        return (out, weights) if need_weights else out

    def _queries(self, x: Tensor) -> Tensor:
        if self.q_proj is not None:
            return self.q_proj(x)
        return self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))

    def _up_projections(self) -> tuple[Tensor, Tensor]:
        """W_uk ``(H, dn, r)`` and W_uv ``(H, dv, r)``: ``kv_b_proj``'s weight per head (the local heads' rows
        under tensor parallelism)."""
        weight = local_part(self.kv_b_proj.weight)
        weight = weight.view(-1, self.qk_nope_head_dim + self.v_head_dim, weight.size(-1))
        return weight.split([self.qk_nope_head_dim, self.v_head_dim], dim=1)

    def _expanded(self, q_nope: Tensor, q_rope: Tensor, latent: Tensor, k_rope: Tensor) -> tuple[Tensor, ...]:
        """Keys and values of every head from the latents ``(N, 1, S, r)``: ``(N, H, S, dn + dr)``, ``(N, H, S, dv)``."""
        batch, _, source_length, _ = latent.shape
        width = self.qk_nope_head_dim + self.v_head_dim
        kv = self.kv_b_proj(latent.squeeze(1)).view(batch, source_length, -1, width).transpose(1, 2)
        k_nope, value = kv.split([self.qk_nope_head_dim, self.v_head_dim], dim=-1)
        key = torch.cat((k_nope, k_rope.expand(-1, kv.size(1), -1, -1)), dim=-1)
        return torch.cat((q_nope, q_rope), dim=-1), key, value

    def _absorbed(self, q_nope: Tensor, q_rope: Tensor, latent: Tensor, k_rope: Tensor) -> tuple[Tensor, ...]:
        """Queries ``[q_nope W_uk, q_rope]`` ``(N, H, L, r + dr)`` over one key head ``[c, k_rope]``, which is also
        the value head (its first r columns, ``c``, are what the step keeps): nothing of size S per head."""
        w_uk = self._up_projections()[0]
        q_latent = torch.einsum("nhld,hdr->nhlr", q_nope, w_uk)  # (N, H, L, dn) x (H, dn, r) -> (N, H, L, r)
        key = torch.cat((latent, k_rope), dim=-1)  # (N, 1, S, r + dr)
        return torch.cat((q_latent, q_rope), dim=-1), key, key

    def cache_window(self) -> int | None:
        """The newest keys a query of the kernel inside sees (its ``cache_window``), or None: every key."""
        return getattr(self.kernel, "cache_window", None)

    def decoding_function(self, cache: Any) -> None:
        """No one-token function: a decoding step runs :meth:`forward` (absorbed), which reads the cache."""
        return None

    def extra_repr(self) -> str:
        return (
            f"num_heads={self.num_heads}, kv_lora_rank={self.kv_lora_rank}, q_lora_rank={self.q_lora_rank}, "
            f"qk_nope_head_dim={self.qk_nope_head_dim}, qk_rope_head_dim={self.qk_rope_head_dim}, "
            f"v_head_dim={self.v_head_dim}, absorb={self.absorb}"
        )


def _softmax_kernel(name: str) -> bool:
    declared = capabilities("attention", name)
    return declared.accepts_score_bias and not declared.layer
