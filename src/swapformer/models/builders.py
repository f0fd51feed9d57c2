"""Builders: the only code that reads a ModelConfig and chooses sizes."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from torch import nn

from swapformer.compat import cross_attention_kernel
from swapformer.components.positional.base import PositionalEncoding
from swapformer.config import ModelConfig
from swapformer.nn import MultiHeadAttention, TokenEmbedding, TransformerLayer, TransformerStack
from swapformer.registry import ATTENTION, FFN, NORM, PLACEMENT, POSITIONAL, kind

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


def _residual(cfg: ModelConfig, sublayer: nn.Module, depth: Mapping[str, Any]) -> nn.Module:
    norm = NORM.build(cfg.norm, **_context(cfg))
    return PLACEMENT.build(cfg.placement, sublayer=sublayer, norm=norm, dropout=cfg.dropout, **depth)


def _attention(
    cfg: ModelConfig, *, positional: PositionalEncoding | None = None, cross: bool = False
) -> MultiHeadAttention:
    # A self-attention-only kernel (sliding_window) gives cross-attention the full kernel it names.
    spec = cross_attention_kernel(cfg.attention) if cross else cfg.attention
    return MultiHeadAttention(
        d_model=cfg.d_model,
        num_heads=cfg.num_heads,
        num_kv_heads=cfg.kv_heads,
        head_dim=cfg.head_dim,
        kernel=ATTENTION.build(spec, **_context(cfg)),
        bias=cfg.bias,
        qkv_bias=cfg.qkv_bias,
        scale=cfg.attention_scale,
        dropout=cfg.dropout,
        positional=None if cross else positional,
    )


def build_layer(
    cfg: ModelConfig,
    *,
    cross_attention: bool,
    num_layers: int,
    positional: PositionalEncoding | None = None,
    is_encoder: bool = False,
    num_encoder_layers: int = 0,
    num_decoder_layers: int = 0,
) -> TransformerLayer:
    """One encoder layer (``cross_attention=False``) or decoder layer of ``cfg``'s components.

    ``positional`` is the model's member, whose ``rotate`` hook the self-attention applies (None: no rotation).
    ``num_layers`` is the depth of the layer's stack; ``is_encoder`` and the two sides' depths (0 = no such side)
    reach the placement, whose constants may depend on them (``deepnorm``).
    """
    depth = {
        "num_layers": num_layers,
        "is_encoder": is_encoder,
        "num_encoder_layers": num_encoder_layers,
        "num_decoder_layers": num_decoder_layers,
    }
    return TransformerLayer(
        self_attention=_residual(cfg, _attention(cfg, positional=positional), depth),
        cross_attention=_residual(cfg, _attention(cfg, cross=True), depth) if cross_attention else None,
        feed_forward=_residual(cfg, FFN.build(cfg.ffn, **_context(cfg)), depth),
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
    """``num_layers`` layers and the final norm the placement asks for (or ``cfg.final_norm`` says)."""
    if cross_attention and cross_attention_kernel(cfg.attention) != cfg.attention:
        logger.info(
            "attention %r is for self-attention only; cross-attention uses %r",
            cfg.attention,
            cross_attention_kernel(cfg.attention),
        )
    layers = [
        build_layer(
            cfg,
            cross_attention=cross_attention,
            num_layers=num_layers,
            positional=positional,
            is_encoder=is_encoder,
            num_encoder_layers=num_encoder_layers,
            num_decoder_layers=num_decoder_layers,
        )
        for _ in range(num_layers)
    ]
    final = cfg.final_norm if cfg.final_norm is not None else type(layers[0].feed_forward).final_norm
    return TransformerStack(
        layers=layers, final_norm=NORM.build(cfg.norm, **_context(cfg)) if final else None
    )


def build_positional(cfg: ModelConfig, *, bidirectional: bool) -> PositionalEncoding:
    """The positional member of one stack; ``bidirectional``: its self-attention sees both directions (an
    encoder), which ``t5_relative`` buckets by."""
    return POSITIONAL.build(cfg.positional, **_context(cfg), bidirectional=bidirectional)


def build_embedding(cfg: ModelConfig, vocab_size: int, positional: PositionalEncoding) -> TokenEmbedding:
    """Token embedding of ``vocab_size`` ids that adds ``positional``'s absolute positions."""
    return TokenEmbedding(
        vocab_size=vocab_size,
        d_model=cfg.d_model,
        positional=positional,
        scale=cfg.scale_embeddings,
        norm=NORM.build(cfg.norm, **_context(cfg)) if cfg.embedding_norm else None,
        dropout=cfg.dropout,
    )


def build_lm_head(cfg: ModelConfig, embedding: TokenEmbedding) -> nn.Linear:
    """The final linear layer to the vocabulary, tied to ``embedding`` when ``cfg.tie_embeddings``."""
    head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=cfg.lm_head_bias)
    if cfg.tie_embeddings:
        head.weight = embedding.token.weight
    return head


def init_weights(model: nn.Module, *, std: float, num_layers: int) -> None:
    """Normal(0, std) linear and embedding weights, zero biases; residual output projections (W_o and the FFN's
    last layer) get std / sqrt(2 * num_layers) so the residual stream's variance does not grow with depth
    (GPT-2). Norms keep torch's ones and zeros. Then every module's ``after_init_weights`` hook runs (a
    placement's own scheme: ``deepnorm``).
    """
    residual_std = std / math.sqrt(2 * num_layers)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name.rsplit(".", 1)[-1]
            nn.init.normal_(
                module.weight, std=residual_std if last in ("out_proj", "linear2", "down_proj") else std
            )
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
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
