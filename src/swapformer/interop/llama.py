"""Llama, Mistral and Qwen2 (``model_type: llama | mistral | qwen2``): rope, pre-norm RMSNorm, SwiGLU, no biases
(Qwen2: q/k/v biases), grouped-query attention; Mistral's sliding window; Llama 3.1's rope scaling."""

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
    register,
    require,
)
from swapformer.registry import split_spec

ROPE_TYPES = ("default", "linear", "llama3")


def _rope(hf: Mapping[str, Any]) -> dict[str, Any]:
    # transformers 5 writes rope_parameters; earlier versions rope_theta and rope_scaling
    parameters = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    base = parameters.get("rope_theta", hf.get("rope_theta", 10000.0))
    rope_type = parameters.get("rope_type", parameters.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise Unsupported(
            f"rope_type {rope_type!r} has no swapformer equivalent; supported: {', '.join(ROPE_TYPES)}"
        )
    if parameters.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)) != 1.0:
        raise Unsupported("partial_rotary_factor below 1 (rope on part of each head) is not supported")
    spec: dict[str, Any] = {"name": "rope", "base": float(base)}
    if rope_type != "default":
        spec.update(scaling=rope_type, factor=float(parameters["factor"]))
    if rope_type == "llama3":
        spec.update(
            low_freq_factor=float(parameters["low_freq_factor"]),
            high_freq_factor=float(parameters["high_freq_factor"]),
            original_max_seq_len=int(
                parameters.get("original_max_position_embeddings", hf.get("max_position_embeddings", 8192))
            ),
        )
    return spec


def config(hf: Mapping[str, Any]) -> dict[str, Any]:
    model_type = hf["model_type"]
    d_model, heads = hf.get("hidden_size", 4096), hf.get("num_attention_heads", 32)
    head_dim = hf.get("head_dim") or d_model // heads
    attention: Any = "sdpa"
    window = hf.get("sliding_window")
    if model_type == "mistral" and window:
        attention = {"name": "sliding_window", "window": int(window)}
    if model_type == "qwen2" and hf.get("use_sliding_window"):
        raise Unsupported("use_sliding_window: true (a window on some layers only) is not supported")
    bias = bool(hf.get("attention_bias", False))
    return {
        "vocab_size": hf.get("vocab_size", 32000),
        "d_model": d_model,
        "num_heads": heads,
        "num_kv_heads": hf.get("num_key_value_heads") or heads,
        "head_dim": None if head_dim * heads == d_model else head_dim,
        "num_layers": hf.get("num_hidden_layers", 32),
        "d_ff": hf.get("intermediate_size", 11008),
        "max_seq_len": hf.get("max_position_embeddings", 2048),
        "dropout": hf.get("attention_dropout", 0.0),
        "attention": attention,
        "positional": _rope(hf),
        "norm": {"name": "rmsnorm", "eps": hf.get("rms_norm_eps", 1e-6)},
        "placement": "pre",
        "final_norm": True,
        "ffn": ffn_spec(hf.get("hidden_act", "silu"), gated=True, bias=bool(hf.get("mlp_bias", False))),
        "bias": bias,
        "qkv_bias": True if model_type == "qwen2" else None,
        "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
        "pad_token_id": hf.get("pad_token_id"),
        "bos_token_id": hf.get("bos_token_id"),
        "eos_token_id": _first(hf.get("eos_token_id")),
    }


def _first(value: Any) -> int | None:
    # Llama 3 lists several end ids; the config keeps the first (generate(eos_token_id=[...]) takes them all)
    return value[0] if isinstance(value, list) and value else value


def links(cfg: ModelConfig) -> list[Link]:
    qkv_bias = cfg.bias if cfg.qkv_bias is None else cfg.qkv_bias
    out = [Link(("embedding.token.weight",), "model.embed_tokens.weight")]
    for i in range(cfg.num_layers):
        ours, theirs = f"decoder.layers.{i}", f"model.layers.{i}"
        attention = f"{ours}.self_attention.sublayer"
        out += norm_links(f"{ours}.self_attention.norm", f"{theirs}.input_layernorm", bias=False)
        out += norm_links(f"{ours}.feed_forward.norm", f"{theirs}.post_attention_layernorm", bias=False)
        out += layer_links(
            f"{theirs}.self_attn", attention, [(f"{p}_proj", f"{p}_proj") for p in "qkv"], bias=qkv_bias
        )
        out += layer_links(f"{theirs}.self_attn", attention, [("out_proj", "o_proj")], bias=cfg.bias)
        _, _, mlp_bias = activation_of(cfg.ffn)
        pairs = [(name, name) for name in ("gate_proj", "up_proj", "down_proj")]
        out += layer_links(f"{theirs}.mlp", f"{ours}.feed_forward.sublayer", pairs, bias=mlp_bias)
    out += norm_links("decoder.final_norm", "model.norm", bias=False)
    if not cfg.tie_embeddings:
        out.append(Link(("lm_head.weight",), "lm_head.weight"))
    return out


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    rope, rope_options = split_spec(cfg.positional)
    norm, norm_options = split_spec(cfg.norm)
    attention, attention_options = split_spec(cfg.attention)
    qkv_bias = cfg.bias if cfg.qkv_bias is None else cfg.qkv_bias
    model_type = "qwen2" if qkv_bias and not cfg.bias else "llama"
    if attention == "sliding_window":
        model_type = "mistral"
    checks = [
        (
            rope == "rope" and rope_options.get("scaling") in (None, "linear", "llama3"),
            f"positional {cfg.positional!r}",
        ),
        (norm == "rmsnorm" and set(norm_options) <= {"eps"}, f"norm {cfg.norm!r}"),
        (
            cfg.component_name("placement") == "pre" and cfg.final_norm is not False,
            f"placement {cfg.placement!r}",
        ),
        (attention in ("sdpa", "math", "sliding_window"), f"attention {cfg.attention!r}"),
        (not (model_type == "mistral" and cfg.bias), "attention biases with a sliding window"),
        (cfg.attention_scale is None, f"attention_scale={cfg.attention_scale}"),
        (
            not (cfg.embedding_norm or cfg.scale_embeddings or cfg.lm_head_bias),
            "embedding_norm, scale_embeddings or lm_head_bias",
        ),
    ]
    require(checks, "Llama, Mistral or Qwen2")
    activation, gated, mlp_bias = activation_of(cfg.ffn)
    if not gated:
        raise Unsupported(f"ffn {cfg.ffn!r} has no Llama equivalent (a gated FFN: swiglu or geglu)")
    rope_parameters: dict[str, Any] = {
        "rope_type": rope_options.get("scaling") or "default",
        "rope_theta": rope_options.get("base", 10000.0),
    }
    if "factor" in rope_options:
        rope_parameters["factor"] = rope_options["factor"]
    if rope_options.get("scaling") == "llama3":
        rope_parameters.update(
            low_freq_factor=rope_options.get("low_freq_factor", 1.0),
            high_freq_factor=rope_options.get("high_freq_factor", 4.0),
            original_max_position_embeddings=rope_options.get("original_max_seq_len", 8192),
        )
    hf = {
        "model_type": model_type,
        "architectures": [
            {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}[
                model_type
            ]
        ],
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.resolved_head_dim,
        "num_hidden_layers": cfg.num_layers,
        "intermediate_size": cfg.d_ff,
        "max_position_embeddings": cfg.max_seq_len,
        "hidden_act": activation,
        "rms_norm_eps": norm_options.get("eps", 1e-6),
        "rope_parameters": rope_parameters,
        "rope_theta": rope_parameters["rope_theta"],
        "attention_dropout": cfg.dropout,
        "tie_word_embeddings": cfg.tie_embeddings,
        "pad_token_id": cfg.pad_token_id,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
    }
    if model_type == "llama":
        hf.update(attention_bias=cfg.bias, mlp_bias=mlp_bias)
    elif mlp_bias:
        raise Unsupported(f"ffn biases have no {model_type} equivalent")
    if model_type == "mistral":
        hf["sliding_window"] = attention_options.get("window", 256)
    return hf


ARCHITECTURE = register(
    Architecture(
        model_types=("llama", "mistral", "qwen2"),
        kind="causal_lm",
        config=config,
        links=links,
        hf_config=hf_config,
        ignored=(".rotary_emb.inv_freq",),
    )
)
