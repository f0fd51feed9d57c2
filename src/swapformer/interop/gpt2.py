"""GPT-2 (``model_type: gpt2``): learned positions, pre-norm LayerNorm, GELU (tanh), biases, fused q/k/v in
``Conv1D`` layers that store weights as ``(in, out)``."""

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
    norm_links,
    placement_requirement,
    register,
    require,
)
from swapformer.registry import split_spec


def config(hf: Mapping[str, Any]) -> dict[str, Any]:
    if hf.get("scale_attn_by_inverse_layer_idx"):
        raise Unsupported(
            "scale_attn_by_inverse_layer_idx: true (a per-layer score scale) has no swapformer option"
        )
    if hf.get("add_cross_attention"):
        raise Unsupported("add_cross_attention: true (GPT-2 as a decoder of an encoder) is not supported")
    d_model = hf.get("n_embd", 768)
    eps = hf.get("layer_norm_epsilon", 1e-5)
    return {
        "vocab_size": hf.get("vocab_size", 50257),
        "d_model": d_model,
        "num_heads": hf.get("n_head", 12),
        "num_layers": hf.get("n_layer", 12),
        "d_ff": hf.get("n_inner") or 4 * d_model,
        "max_seq_len": hf.get("n_positions", 1024),
        "dropout": hf.get("resid_pdrop", 0.1),
        "attention": "sdpa",
        "positional": "learned",
        "norm": "layernorm" if eps == 1e-5 else {"name": "layernorm", "eps": eps},
        "placement": "pre",
        "final_norm": True,
        "ffn": ffn_spec(hf.get("activation_function", "gelu_new"), gated=False, bias=True),
        "bias": True,
        "attention_scale": None if hf.get("scale_attn_weights", True) else 1.0,
        "tie_embeddings": hf.get("tie_word_embeddings", True),
        "pad_token_id": hf.get("pad_token_id"),
        "bos_token_id": hf.get("bos_token_id", 50256),
        "eos_token_id": hf.get("eos_token_id", 50256),
    }


def links(cfg: ModelConfig) -> list[Link]:
    out = [
        Link(("embedding.token.weight",), "transformer.wte.weight"),
        Link(("positional.table.weight",), "transformer.wpe.weight"),
    ]
    for i in range(cfg.num_layers):
        ours, theirs = f"decoder.layers.{i}", f"transformer.h.{i}"
        attention, ffn = f"{ours}.self_attention.sublayer", f"{ours}.feed_forward.sublayer"
        qkv = tuple(f"{attention}.{p}_proj" for p in "qkv")
        out += norm_links(f"{ours}.self_attention.norm", f"{theirs}.ln_1", bias=True)
        out += norm_links(f"{ours}.feed_forward.norm", f"{theirs}.ln_2", bias=True)
        out += [
            Link(tuple(f"{p}.weight" for p in qkv), f"{theirs}.attn.c_attn.weight", transpose=True),
            Link(tuple(f"{p}.bias" for p in qkv), f"{theirs}.attn.c_attn.bias"),
            Link((f"{attention}.out_proj.weight",), f"{theirs}.attn.c_proj.weight", transpose=True),
            Link((f"{attention}.out_proj.bias",), f"{theirs}.attn.c_proj.bias"),
            Link((f"{ffn}.linear1.weight",), f"{theirs}.mlp.c_fc.weight", transpose=True),
            Link((f"{ffn}.linear1.bias",), f"{theirs}.mlp.c_fc.bias"),
            Link((f"{ffn}.linear2.weight",), f"{theirs}.mlp.c_proj.weight", transpose=True),
            Link((f"{ffn}.linear2.bias",), f"{theirs}.mlp.c_proj.bias"),
        ]
    out += norm_links("decoder.final_norm", "transformer.ln_f", bias=True)
    if not cfg.tie_embeddings:
        out.append(Link(("lm_head.weight",), "lm_head.weight"))
    return out


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    norm, norm_options = split_spec(cfg.norm)
    checks = [
        (
            split_spec(cfg.positional) == ("learned", {}),
            f"positional {cfg.positional!r} (GPT-2 has learned positions)",
        ),
        (norm == "layernorm" and set(norm_options) <= {"eps"}, f"norm {cfg.norm!r} (GPT-2 has layernorm)"),
        placement_requirement(cfg, "pre"),
        (cfg.component_name("attention") in ("sdpa", "math"), f"attention {cfg.attention!r}"),
        (
            cfg.kv_heads == cfg.num_heads,
            f"num_kv_heads={cfg.num_kv_heads} (GPT-2 has no grouped-query attention)",
        ),
        (cfg.head_dim is None, f"head_dim={cfg.head_dim}"),
        (cfg.attention_scale in (None, 1.0), f"attention_scale={cfg.attention_scale}"),
        (cfg.bias and cfg.qkv_bias in (None, True), "attention without biases (GPT-2 has them)"),
        (
            not (cfg.embedding_norm or cfg.scale_embeddings or cfg.lm_head_bias),
            "embedding_norm, scale_embeddings or lm_head_bias",
        ),
    ]
    require(checks, "GPT-2")
    activation, gated, bias = activation_of(cfg.ffn)
    if gated or not bias:
        raise Unsupported(f"ffn {cfg.ffn!r} has no GPT-2 equivalent (two linear layers with biases)")
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": cfg.vocab_size,
        "n_embd": cfg.d_model,
        "n_head": cfg.num_heads,
        "n_layer": cfg.num_layers,
        "n_inner": cfg.d_ff,
        "n_positions": cfg.max_seq_len,
        "activation_function": activation,
        "layer_norm_epsilon": norm_options.get("eps", 1e-5),
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "scale_attn_weights": cfg.attention_scale is None,
        "tie_word_embeddings": cfg.tie_embeddings,
        "pad_token_id": cfg.pad_token_id,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
    }


ARCHITECTURE = register(
    Architecture(
        model_types=("gpt2",),
        kind="causal_lm",
        config=config,
        links=links,
        hf_config=hf_config,
        ignored=(".attn.bias", ".attn.masked_bias"),  # causal-mask buffers of old checkpoints
    )
)
