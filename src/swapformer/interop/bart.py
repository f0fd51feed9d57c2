"""BART and Marian (``model_type: bart | marian``): post-norm LayerNorm, an MLP with biases, biases everywhere,
``final_logits_bias`` (our LM head's bias) and, optionally, embeddings scaled by sqrt(D).

- BART: learned positions whose table starts at row 2 (``learned`` with ``offset: 2``), a LayerNorm on the
  embeddings (``layernorm_embedding``), GELU, one embedding for both sides and the head.
- Marian: fixed sinusoids with sines and cosines in halves (``sinusoidal`` with ``layout: halves``; transformers 5
  recomputes them and does not save them), swish (``silu``), decoding from the padding id; with
  ``share_encoder_decoder_embeddings: false``, a source table of ``vocab_size`` ids and a target table (and head)
  of ``decoder_vocab_size``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swapformer.config import ModelConfig
from swapformer.interop.core import (
    Architecture,
    Link,
    Unsupported,
    activation_of,
    ffn_spec,
    layer_links,
    norm_links,
    placement_requirement,
    register,
    require,
    seq2seq_sides,
)
from swapformer.registry import split_spec

ATTENTION_PAIRS = [(f"{p}_proj", f"{p}_proj") for p in ("q", "k", "v", "out")]
POSITIONAL = {"bart": {"name": "learned", "offset": 2}, "marian": {"name": "sinusoidal", "layout": "halves"}}


def _same(hf: Mapping[str, Any], encoder_key: str, decoder_key: str, default: int) -> int:
    encoder, decoder = hf.get(encoder_key, default), hf.get(decoder_key, default)
    if encoder != decoder:
        raise Unsupported(
            f"{encoder_key}={encoder} differs from {decoder_key}={decoder}; swapformer's sides share one value"
        )
    return encoder


def config(hf: Mapping[str, Any]) -> dict[str, Any]:
    model_type = hf["model_type"]
    marian = model_type == "marian"
    layers, decoder_layers = hf.get("encoder_layers", 12), hf.get("decoder_layers", 12)
    shared = bool(hf.get("share_encoder_decoder_embeddings", True)) if marian else True
    tied = bool(hf.get("tie_word_embeddings", True))
    vocab_size = hf.get("vocab_size", 58101 if marian else 50265)
    target_vocab_size = hf.get("decoder_vocab_size") or vocab_size
    if shared and target_vocab_size != vocab_size:
        raise Unsupported(
            f"decoder_vocab_size={target_vocab_size} with share_encoder_decoder_embeddings: true (vocab_size="
            f"{vocab_size}) has no swapformer equivalent"
        )
    return {
        "vocab_size": target_vocab_size,
        "src_vocab_size": None if target_vocab_size == vocab_size else vocab_size,
        "d_model": hf.get("d_model", 1024),
        "num_heads": _same(hf, "encoder_attention_heads", "decoder_attention_heads", 16),
        "num_layers": layers,
        "num_decoder_layers": None if decoder_layers == layers else decoder_layers,
        "d_ff": _same(hf, "encoder_ffn_dim", "decoder_ffn_dim", 4096),
        "max_seq_len": hf.get("max_position_embeddings", 1024),
        "dropout": hf.get("dropout", 0.1),
        "attention": "sdpa",
        "positional": dict(POSITIONAL[model_type]),
        "norm": "layernorm",  # torch's default eps, as transformers builds these LayerNorms
        "placement": "post",
        "final_norm": False,
        "ffn": ffn_spec(hf.get("activation_function", "gelu"), gated=False, bias=True),
        "bias": True,
        "scale_embeddings": bool(hf.get("scale_embedding", False)),
        "embedding_norm": not marian,
        "lm_head_bias": True,
        # transformers 5 ties nothing, not even the two sides, when tie_word_embeddings is false
        "share_embeddings": shared and tied,
        "tie_embeddings": tied,
        "pad_token_id": hf.get("pad_token_id", 58100 if marian else 1),
        "bos_token_id": hf.get("bos_token_id", None if marian else 0),
        "eos_token_id": _first(hf.get("eos_token_id", 0 if marian else 2)),
        "decoder_start_token_id": hf.get("decoder_start_token_id", 58100 if marian else 2),
    }


def _first(value: Any) -> int | None:
    return value[0] if isinstance(value, list) and value else value


def links(cfg: ModelConfig) -> list[Link]:
    bart = cfg.component_name("positional") == "learned"
    if cfg.share_embeddings:
        out = [Link(("tgt_embedding.token.weight",), "model.shared.weight")]
    else:
        out = [
            Link(("src_embedding.token.weight",), "model.encoder.embed_tokens.weight"),
            Link(("tgt_embedding.token.weight",), "model.decoder.embed_tokens.weight"),
        ]
    for ours, side in (("src", "encoder"), ("tgt", "decoder")):
        if bart:
            out.append(Link((f"{ours}_positional.table.weight",), f"model.{side}.embed_positions.weight"))
        if cfg.embedding_norm:
            out += norm_links(f"{ours}_embedding.norm", f"model.{side}.layernorm_embedding", bias=True)
    for side, depth, cross in seq2seq_sides(cfg):
        for i in range(depth):
            ours, theirs = f"{side}.layers.{i}", f"model.{side}.layers.{i}"
            steps = [("self_attention", "self_attn")] + (
                [("cross_attention", "encoder_attn")] if cross else []
            )
            for step, name in steps:
                out += layer_links(f"{theirs}.{name}", f"{ours}.{step}.sublayer", ATTENTION_PAIRS, bias=True)
                out += norm_links(f"{ours}.{step}.norm", f"{theirs}.{name}_layer_norm", bias=True)
            ffn_pairs = [("linear1", "fc1"), ("linear2", "fc2")]
            out += layer_links(theirs, f"{ours}.feed_forward.sublayer", ffn_pairs, bias=True)
            out += norm_links(f"{ours}.feed_forward.norm", f"{theirs}.final_layer_norm", bias=True)
    out.append(Link(("lm_head.bias",), "final_logits_bias", unsqueezed=True))  # a (1, V) buffer
    if not cfg.tie_embeddings:
        out.append(Link(("lm_head.weight",), "lm_head.weight"))
    return out


def _hf_config(cfg: ModelConfig, model_type: str) -> dict[str, Any]:
    name = {"bart": "BART", "marian": "Marian"}[model_type]
    norm, norm_options = split_spec(cfg.norm)
    checks = [
        (split_spec(cfg.positional) == split_spec(POSITIONAL[model_type]), f"positional {cfg.positional!r}"),
        (norm == "layernorm" and norm_options in ({}, {"eps": 1e-5}), f"norm {cfg.norm!r}"),
        placement_requirement(cfg, "post"),
        (cfg.component_name("attention") in ("sdpa", "math"), f"attention {cfg.attention!r}"),
        (cfg.kv_heads == cfg.num_heads, f"num_kv_heads={cfg.num_kv_heads}"),
        (cfg.head_dim in (None, cfg.d_model // cfg.num_heads), f"head_dim={cfg.head_dim}"),
        (cfg.attention_scale is None, f"attention_scale={cfg.attention_scale}"),
        (cfg.bias and cfg.qkv_bias in (None, True), "attention without biases"),
        (cfg.embedding_norm == (model_type == "bart"), f"embedding_norm={cfg.embedding_norm}"),
        (cfg.lm_head_bias, "lm_head_bias: false (the head's final_logits_bias)"),
        (
            cfg.share_embeddings == cfg.tie_embeddings or (model_type == "marian" and cfg.tie_embeddings),
            f"share_embeddings: {str(cfg.share_embeddings).lower()} with tie_embeddings: "
            f"{str(cfg.tie_embeddings).lower()} (transformers 5 ties both or neither)",
        ),
    ]
    require(checks, name)
    activation, gated, bias = activation_of(cfg.ffn)
    if gated or not bias:
        raise Unsupported(f"ffn {cfg.ffn!r} has no {name} equivalent (two linear layers with biases)")
    hf: dict[str, Any] = {
        "model_type": model_type,
        "architectures": ["BartForConditionalGeneration" if model_type == "bart" else "MarianMTModel"],
        "vocab_size": cfg.src_vocab_size or cfg.vocab_size,
        "d_model": cfg.d_model,
        "encoder_attention_heads": cfg.num_heads,
        "decoder_attention_heads": cfg.num_heads,
        "encoder_layers": cfg.encoder_layers,
        "decoder_layers": cfg.decoder_layers,
        "encoder_ffn_dim": cfg.d_ff,
        "decoder_ffn_dim": cfg.d_ff,
        "max_position_embeddings": cfg.max_seq_len,
        "activation_function": activation,
        "dropout": cfg.dropout,
        "scale_embedding": cfg.scale_embeddings,
        "tie_word_embeddings": cfg.tie_embeddings,
        "is_encoder_decoder": True,
        "pad_token_id": cfg.pad_token_id,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "decoder_start_token_id": cfg.start_token_id,
        # generation extras a swapformer model does not have: off, so generate gives the same tokens
        "forced_eos_token_id": None,
        "forced_bos_token_id": None,
    }
    if model_type == "marian":
        hf.update(share_encoder_decoder_embeddings=cfg.share_embeddings, decoder_vocab_size=cfg.vocab_size)
    return hf


def bart_config(cfg: ModelConfig) -> dict[str, Any]:
    return _hf_config(cfg, "bart")


def marian_config(cfg: ModelConfig) -> dict[str, Any]:
    return _hf_config(cfg, "marian")


# tied copies of model.shared.weight (written by transformers 4, present in a model's state_dict), and
# model.shared.weight itself when untied: each side then reads its own table
TIED = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "model.shared.weight")
BART = register(
    Architecture(
        model_types=("bart",), kind="seq2seq", config=config, links=links, hf_config=bart_config, ignored=TIED
    )
)
MARIAN = register(
    Architecture(
        model_types=("marian",),
        kind="seq2seq",
        config=config,
        links=links,
        hf_config=marian_config,
        ignored=(*TIED, ".embed_positions.weight"),  # fixed sinusoids, recomputed
    )
)
