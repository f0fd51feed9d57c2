"""Builders: the only code that reads a ModelConfig and chooses sizes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import nn

from swapformer.blocks import TransformerLayer, TransformerStack
from swapformer.components.attention import MultiHeadAttention
from swapformer.config import ModelConfig
from swapformer.models.causal_lm import DecoderOnly
from swapformer.models.embedding import TokenEmbedding
from swapformer.models.seq2seq import EncoderDecoder
from swapformer.registry import ATTENTION, FFN, NORM, PLACEMENT, POSITIONAL


def _context(cfg: ModelConfig) -> dict[str, Any]:
    return {
        "d_model": cfg.d_model,
        "d_ff": cfg.d_ff,
        "num_heads": cfg.num_heads,
        "num_kv_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "max_seq_len": cfg.max_seq_len,
        "dropout": cfg.dropout,
    }


def _residual(cfg: ModelConfig, sublayer: nn.Module, num_layers: int) -> nn.Module:
    norm = NORM.build(cfg.norm, **_context(cfg))
    return PLACEMENT.build(
        cfg.placement, sublayer=sublayer, norm=norm, dropout=cfg.dropout, num_layers=num_layers
    )


def _attention(cfg: ModelConfig) -> MultiHeadAttention:
    return MultiHeadAttention(
        d_model=cfg.d_model,
        num_heads=cfg.num_heads,
        num_kv_heads=cfg.kv_heads,
        kernel=ATTENTION.build(cfg.attention, **_context(cfg)),
        bias=cfg.bias,
        dropout=cfg.dropout,
    )


def build_layer(cfg: ModelConfig, *, cross_attention: bool, num_layers: int) -> TransformerLayer:
    """One encoder layer (``cross_attention=False``) or decoder layer of ``cfg``'s components."""
    return TransformerLayer(
        self_attention=_residual(cfg, _attention(cfg), num_layers),
        cross_attention=_residual(cfg, _attention(cfg), num_layers) if cross_attention else None,
        feed_forward=_residual(cfg, FFN.build(cfg.ffn, **_context(cfg)), num_layers),
    )


def build_stack(cfg: ModelConfig, *, num_layers: int, cross_attention: bool) -> TransformerStack:
    """``num_layers`` layers and the final norm the placement asks for (or ``cfg.final_norm`` says)."""
    layers = [
        build_layer(cfg, cross_attention=cross_attention, num_layers=num_layers) for _ in range(num_layers)
    ]
    final = cfg.final_norm if cfg.final_norm is not None else type(layers[0].feed_forward).final_norm
    return TransformerStack(
        layers=layers, final_norm=NORM.build(cfg.norm, **_context(cfg)) if final else None
    )


def _embedding(cfg: ModelConfig, vocab_size: int) -> TokenEmbedding:
    return TokenEmbedding(
        vocab_size=vocab_size,
        d_model=cfg.d_model,
        positional=POSITIONAL.build(cfg.positional, **_context(cfg)),
        scale=cfg.scale_embeddings,
        dropout=cfg.dropout,
    )


def _lm_head(cfg: ModelConfig, embedding: TokenEmbedding) -> nn.Linear:
    head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
    if cfg.tie_embeddings:
        head.weight = embedding.token.weight
    return head


def init_weights(model: nn.Module, *, std: float, num_layers: int) -> None:
    """Normal(0, std) linear and embedding weights, zero biases; residual output projections (W_o and the FFN's
    last layer) get std / sqrt(2 * num_layers) so the residual stream's variance does not grow with depth
    (GPT-2). Norms keep torch's ones and zeros.
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


def build_causal_lm(config: ModelConfig | Mapping[str, Any]) -> DecoderOnly:
    """A decoder-only causal LM from a :class:`ModelConfig` or a plain mapping.

    Example:
        >>> model = build_causal_lm({"vocab_size": 100, "d_model": 64, "num_heads": 4, "num_layers": 2,
        ...                          "d_ff": 128, "positional": "rope", "norm": "rmsnorm", "placement": "pre",
        ...                          "ffn": "swiglu"})
        >>> model(torch.randint(100, (2, 10))).shape
        torch.Size([2, 10, 100])
    """
    cfg = ModelConfig.coerce(config)
    embedding = _embedding(cfg, cfg.vocab_size)
    model = DecoderOnly(
        embedding=embedding,
        decoder=build_stack(cfg, num_layers=cfg.num_layers, cross_attention=False),
        lm_head=_lm_head(cfg, embedding),
    )
    init_weights(model, std=cfg.init_std, num_layers=cfg.num_layers)
    model.config = cfg
    return model


def build_seq2seq(config: ModelConfig | Mapping[str, Any]) -> EncoderDecoder:
    """An encoder-decoder model from a :class:`ModelConfig` or a plain mapping.

    ``num_encoder_layers`` / ``num_decoder_layers`` default to ``num_layers``; the source vocabulary to
    ``vocab_size`` unless ``src_vocab_size`` is set.
    """
    cfg = ModelConfig.coerce(config)
    num_encoder = cfg.num_encoder_layers or cfg.num_layers
    num_decoder = cfg.num_decoder_layers or cfg.num_layers
    tgt_embedding = _embedding(cfg, cfg.vocab_size)
    model = EncoderDecoder(
        src_embedding=_embedding(cfg, cfg.src_vocab_size or cfg.vocab_size),
        tgt_embedding=tgt_embedding,
        encoder=build_stack(cfg, num_layers=num_encoder, cross_attention=False),
        decoder=build_stack(cfg, num_layers=num_decoder, cross_attention=True),
        lm_head=_lm_head(cfg, tgt_embedding),
    )
    init_weights(model, std=cfg.init_std, num_layers=num_encoder + num_decoder)
    model.config = cfg
    return model
