"""Builders: the only code that reads a ModelConfig and chooses sizes."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from torch import nn

from swapformer import layer_specs
from swapformer.compat import cross_attention_kernel
from swapformer.components import declarations
from swapformer.components.positional.base import PositionalEncoding
from swapformer.config import ModelConfig
from swapformer.errors import ConfigError
from swapformer.layer_specs import LayerSpec
from swapformer.nn import (
    LMHeadTransform,
    MultiHeadAttention,
    TokenEmbedding,
    TransformerLayer,
    TransformerStack,
)
from swapformer.nn.head import ACTIVATIONS as HEAD_ACTIVATIONS
from swapformer.registry import (
    ATTENTION,
    FFN,
    NORM,
    PLACEMENT,
    POSITIONAL,
    ComponentSpec,
    capabilities,
    kind,
    split_spec,
)

logger = logging.getLogger(__name__)


def _context(cfg: ModelConfig) -> dict[str, Any]:
    return {
        "d_model": cfg.d_model,
        "d_ff": cfg.d_ff,
        "num_heads": cfg.num_heads,
        "num_kv_heads": cfg.kv_heads,
        "head_dim": cfg.resolved_head_dim,
        "max_seq_len": cfg.max_seq_len,
        "dropout": cfg.dropout,
    }


def _residual(
    cfg: ModelConfig, spec: LayerSpec, sublayer: nn.Module, depth: Mapping[str, Any], *, norm: bool = True
) -> nn.Module:
    # norm=False: the placement gets the identity for its norm (ModernBERT's first self-attention)
    norm = NORM.build(spec.norm, **_context(cfg)) if norm else nn.Identity()
    return PLACEMENT.build(spec.placement, sublayer=sublayer, norm=norm, dropout=cfg.dropout, **depth)


def _attention(
    cfg: ModelConfig,
    spec: LayerSpec,
    *,
    positional: PositionalEncoding | None = None,
    owns_positional: bool = False,
    cross: bool = False,
) -> nn.Module:
    # A self-attention-only kernel (sliding_window) gives cross-attention the full kernel it names.
    kernel = cross_attention_kernel(spec.attention) if cross else spec.attention
    if capabilities("attention", kernel).layer:  # a whole attention layer (mla)
        return _attention_layer(cfg, spec, positional=positional)
    head_dim = cfg.resolved_head_dim
    qk_norm = None if cross or spec.qk_norm is None else spec.qk_norm
    per_head = cfg.qk_norm_scope == "head"  # each head over E, or the whole projection (H E and Hkv E)
    widths = (1, 1) if per_head else (cfg.num_heads, cfg.kv_heads)
    return MultiHeadAttention(
        d_model=cfg.d_model,
        num_heads=cfg.num_heads,
        num_kv_heads=cfg.kv_heads,
        head_dim=cfg.head_dim,
        kernel=ATTENTION.build(kernel, **_context(cfg)),
        bias=cfg.bias,
        qkv_bias=cfg.qkv_bias,
        scale=cfg.attention_scale,
        dropout=cfg.dropout,
        positional=None if cross else positional,
        owns_positional=owns_positional and not cross,
        q_norm=None
        if qk_norm is None
        else NORM.build(qk_norm, **{**_context(cfg), "d_model": widths[0] * head_dim}),
        k_norm=None
        if qk_norm is None
        else NORM.build(qk_norm, **{**_context(cfg), "d_model": widths[1] * head_dim}),
        qk_norm_per_head=per_head,
    )


def _attention_layer(
    cfg: ModelConfig, spec: LayerSpec, *, positional: PositionalEncoding | None
) -> nn.Module:
    """An attention member that is a whole layer (``mla``), with the layer's sizes, and its own rotating member
    of the width it rotates (``qk_rope_head_dim``, not the config's head_dim) where the layer's positional
    member rotates; a score bias (ALiBi) still comes from the stack."""
    if spec.qk_norm is not None:
        name = split_spec(spec.attention, where="attention")[0]
        raise ConfigError(
            f"qk_norm does not apply to attention '{name}', which normalizes its own latents; drop qk_norm"
        )
    layer = ATTENTION.build(spec.attention, **_context(cfg), bias=cfg.bias, scale=cfg.attention_scale)
    if positional is not None and positional.rotates:
        width = {**_context(cfg), "head_dim": layer.qk_rope_head_dim}
        layer.positional = POSITIONAL.build(spec.positional, **width)
    return layer


def build_layer(
    cfg: ModelConfig,
    *,
    cross_attention: bool,
    num_layers: int,
    positional: PositionalEncoding | None = None,
    is_encoder: bool = False,
    num_encoder_layers: int = 0,
    num_decoder_layers: int = 0,
    spec: LayerSpec | None = None,
    owns_positional: bool = False,
    attention_norm: bool = True,
) -> TransformerLayer:
    """One encoder layer (``cross_attention=False``) or decoder layer of ``spec`` (the config's uniform layer
    when None).

    ``positional`` is the member whose ``rotate`` hook the self-attention applies (None: no rotation); the
    attention layer owns it (registers it) when ``owns_positional``, else it uses the model's or an earlier
    layer's. ``attention_norm=False`` leaves the self-attention's norm out (the identity in its place).
    ``num_layers`` is the depth of the layer's stack; ``is_encoder`` and the two sides' depths (0 = no
    such side) reach the placement, whose constants may depend on them (``deepnorm``).
    """
    spec = layer_specs.uniform_spec(cfg) if spec is None else spec
    depth = {
        "num_layers": num_layers,
        "is_encoder": is_encoder,
        "num_encoder_layers": num_encoder_layers,
        "num_decoder_layers": num_decoder_layers,
    }
    attention = _attention(cfg, spec, positional=positional, owns_positional=owns_positional)
    context = {**_context(cfg), "d_ff": spec.d_ff}
    return TransformerLayer(
        self_attention=_residual(cfg, spec, attention, depth, norm=attention_norm),
        cross_attention=_residual(cfg, spec, _attention(cfg, spec, cross=True), depth)
        if cross_attention
        else None,
        feed_forward=_residual(cfg, spec, FFN.build(spec.ffn, **context), depth),
    )


def build_stack(
    cfg: ModelConfig,
    *,
    num_layers: int,
    cross_attention: bool,
    positional: PositionalEncoding | None = None,
    is_encoder: bool = False,
    num_encoder_layers: int = 0,
    num_decoder_layers: int = 0,
) -> TransformerStack:
    """``num_layers`` layers of their specs (:mod:`swapformer.layer_specs`; the encoder's when ``is_encoder``,
    else the decoder's) and the final norm the last layer's placement asks for (or ``cfg.final_norm`` says).
    The first layer's self-attention has no norm when ``cfg.first_attention_norm`` is false.

    Layers whose positional spec is the config's use ``positional``, the model's member. Each other positional
    spec gets one member, owned by the first layer that uses it and used by the later ones: layers of one spec
    share its tables and its score bias.
    """
    stack = "encoder" if is_encoder else "decoder"
    specs = layer_specs.resolve(cfg, stack)
    if len(specs) != num_layers:
        raise ConfigError(f"the config's {stack} has {len(specs)} layers, not num_layers={num_layers}")
    members: list[tuple[Any, PositionalEncoding]] = []
    layers, positionals, logged = [], [], []
    for (where, _), spec in zip(layer_specs.overrides(cfg, stack), specs, strict=True):
        member, owned = positional, False
        if not layer_specs.same_member(spec.positional, cfg.positional):
            member = next((m for s, m in members if layer_specs.same_member(s, spec.positional)), None)
            if member is None:
                member, owned = _layer_positional(cfg, spec.positional, where, bidirectional=is_encoder), True
                members.append((spec.positional, member))
        layers.append(
            build_layer(
                cfg,
                cross_attention=cross_attention,
                num_layers=num_layers,
                positional=member,
                is_encoder=is_encoder,
                num_encoder_layers=num_encoder_layers,
                num_decoder_layers=num_decoder_layers,
                spec=spec,
                owns_positional=owned,
                attention_norm=cfg.first_attention_norm or bool(layers),
            )
        )
        positionals.append(member)
        fallback = cross_attention and cross_attention_kernel(spec.attention) != spec.attention
        if fallback and spec.attention not in logged:
            logged.append(spec.attention)
            logger.info(
                "attention %r is for self-attention only; cross-attention uses %r",
                spec.attention,
                cross_attention_kernel(spec.attention),
            )
    final = cfg.final_norm if cfg.final_norm is not None else type(layers[-1].feed_forward).final_norm
    return TransformerStack(
        layers=layers,
        final_norm=NORM.build(cfg.norm, **_context(cfg)) if final else None,
        positionals=positionals,
    )


def _layer_positional(
    cfg: ModelConfig, spec: ComponentSpec, where: str, *, bidirectional: bool
) -> PositionalEncoding:
    member = POSITIONAL.build(spec, **_context(cfg), bidirectional=bidirectional)
    if member.embeds:
        name = split_spec(spec, where=where)[0]
        raise ConfigError(
            f"{where}.positional: '{name}' adds positions to the embeddings, which every layer shares; a layer "
            "may only choose a member that acts inside attention (rope, alibi, t5_relative, none): set "
            f"positional: {name} for the whole model instead"
        )
    return member


def build_positional(cfg: ModelConfig, *, bidirectional: bool) -> PositionalEncoding:
    """The positional member of one stack; ``bidirectional``: its self-attention sees both directions (an
    encoder), which ``t5_relative`` buckets by."""
    return POSITIONAL.build(cfg.positional, **_context(cfg), bidirectional=bidirectional)


def build_embedding(cfg: ModelConfig, vocab_size: int, positional: PositionalEncoding) -> TokenEmbedding:
    """Token embedding of ``vocab_size`` ids that adds ``positional``'s absolute positions (and token types).

    Raises:
        ConfigError: masked-LM fields in a config of another kind (a config made without a kind becomes a
            ``causal_lm`` one when built by :func:`build`).
    """
    problem = cfg.masked_only_problem()
    if problem is not None:
        raise ConfigError(problem)
    return TokenEmbedding(
        vocab_size=vocab_size,
        d_model=cfg.d_model,
        positional=positional,
        scale=cfg.scale_embeddings,
        norm=NORM.build(cfg.norm, **_context(cfg)) if cfg.embedding_norm else None,
        dropout=cfg.dropout,
        token_types=cfg.token_types,
    )


def build_lm_head_transform(cfg: ModelConfig) -> LMHeadTransform | None:
    """The dense layer (biased when ``cfg.bias``), activation and norm before a masked LM's output layer
    (``cfg.lm_head_transform``), or None."""
    if cfg.lm_head_transform is None:
        return None
    return LMHeadTransform(
        d_model=cfg.d_model,
        activation=HEAD_ACTIVATIONS[cfg.lm_head_transform](),
        norm=NORM.build(cfg.norm, **_context(cfg)),
        bias=cfg.bias,
    )


def build_lm_head(cfg: ModelConfig, embedding: TokenEmbedding) -> nn.Linear:
    """The final linear layer to the vocabulary, tied to ``embedding`` when ``cfg.tie_embeddings``."""
    head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=cfg.lm_head_bias)
    if cfg.tie_embeddings:
        head.weight = embedding.token.weight
    return head


def init_weights(model: nn.Module, *, std: float, num_layers: int) -> None:
    """Normal(0, std) linear and embedding weights, zero linear biases; the linear layers of the residual output
    projections its members declare (W_o, the FFN's last layer) get std / sqrt(2 * num_layers) so the residual
    stream's variance does not grow with depth (GPT-2). Norms keep torch's ones and zeros. Then every module's
    ``reset_weights(std=, residual_std=)`` runs (its own parameters), then every ``after_init_weights()`` (a
    placement's own scheme: ``deepnorm``). See :mod:`swapformer.components.declarations`.
    """
    residual_std = std / math.sqrt(2 * num_layers)
    residual = {
        id(linear)
        for module in model.modules()
        for projection in declarations.residual_projections(module)
        for linear in projection.modules()
        if isinstance(linear, nn.Linear)
    }
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=residual_std if id(module) in residual else std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
    for module in model.modules():
        reset = getattr(module, "reset_weights", None)
        if callable(reset):
            reset(std=std, residual_std=residual_std)
    for module in model.modules():
        hook = getattr(module, "after_init_weights", None)
        if callable(hook):
            hook()


def build(config: ModelConfig | Mapping[str, Any]) -> nn.Module:
    """The model of ``config``'s kind (``causal_lm`` by default), from a :class:`ModelConfig` or a mapping.

    Example:
        >>> import torch
        >>> model = build({"kind": "masked_lm", "vocab_size": 100, "d_model": 32, "num_heads": 4, "num_layers": 2})
        >>> model(torch.randint(100, (2, 10))).shape
        torch.Size([2, 10, 100])
    """
    cfg = ModelConfig.coerce(config)
    return kind(cfg.kind).build(cfg)
