"""OLMo 2 (``model_type: olmo2``): Llama's sizes, rope and SwiGLU, with each norm on its sublayer's output inside
the residual (``placement: res_post``) and an RMSNorm over the whole query and key projections before the heads
split (``qk_norm: rmsnorm``, ``qk_norm_scope: projection``), all of ``rms_norm_eps``::

    x ──┬── attention ── post_attention_layernorm ──(+)──▶     (the FFN between itself and
        └──────────────────────────────────────────┘              post_feedforward_layernorm; model.norm last)

    q_norm: RMSNorm over H E (num_attention_heads * head_dim), k_norm over Hkv E, on q_proj(x) and k_proj(x)

``attention_bias`` puts biases in all four projections (W_o too: our ``bias``); the FFN has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swapformer.config import ModelConfig
from swapformer.interop import llama
from swapformer.interop.core import (
    Architecture,
    Link,
    activation_of,
    layer_links,
    norm_links,
    placement_requirement,
    qk_norm_links,
    register,
    require,
)
from swapformer.registry import split_spec

DEFAULTS = {
    "vocab_size": 50304,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "hidden_act": "silu",
    "max_position_embeddings": 2048,
    "pad_token_id": 1,
    "bos_token_id": None,
    "eos_token_id": 50279,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "rms_norm_eps": 1e-5,
}
"""Olmo2Config's defaults that differ from Llama's, for a ``config.json`` that leaves them out."""


def config(hf: Mapping[str, Any]) -> dict[str, Any]:
    hf = {**DEFAULTS, **hf}
    fields = llama.config(hf)
    return {
        **fields,
        "placement": "res_post",
        "final_norm": True,
        "ffn": {**fields["ffn"], "bias": False},  # Olmo2MLP reads no mlp_bias
        "qk_norm": dict(fields["norm"]),
        "qk_norm_scope": "projection",
    }


def links(cfg: ModelConfig) -> list[Link]:
    out = [Link(("embedding.token.weight",), "model.embed_tokens.weight")]
    for i in range(cfg.num_layers):
        ours, theirs = f"decoder.layers.{i}", f"model.layers.{i}"
        attention = f"{ours}.self_attention.sublayer"
        out += norm_links(f"{ours}.self_attention.norm", f"{theirs}.post_attention_layernorm", bias=False)
        out += norm_links(f"{ours}.feed_forward.norm", f"{theirs}.post_feedforward_layernorm", bias=False)
        pairs = [(f"{p}_proj", f"{p}_proj") for p in "qkv"] + [("out_proj", "o_proj")]
        out += layer_links(f"{theirs}.self_attn", attention, pairs, bias=cfg.bias)
        out += qk_norm_links(i)
        pairs = [(name, name) for name in ("gate_proj", "up_proj", "down_proj")]
        out += layer_links(f"{theirs}.mlp", f"{ours}.feed_forward.sublayer", pairs, bias=False)
    out += norm_links("decoder.final_norm", "model.norm", bias=False)
    if not cfg.tie_embeddings:
        out.append(Link(("lm_head.weight",), "lm_head.weight"))
    return out


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    checks = llama.decoder_checks(cfg, cfg.positional)
    attention = split_spec(cfg.attention)[0]
    _, gated, mlp_bias = activation_of(cfg.ffn)
    _, norm_options = split_spec(cfg.norm)
    qk_norm, qk_options = split_spec(cfg.qk_norm) if cfg.qk_norm is not None else (None, {})
    eps = norm_options.get("eps", 1e-6)
    require(
        [
            *checks[:2],  # a rope; RMSNorms
            placement_requirement(cfg, "res_post", " (OLMo 2 normalizes each sublayer's output: res_post)"),
            *checks[3:],  # the plain scale; no embedding norm, scale or head bias
            (attention in ("sdpa", "math"), f"attention {cfg.attention!r}"),
            (gated and not mlp_bias, f"ffn {cfg.ffn!r} (OLMo 2's is gated, without biases)"),
            (cfg.qkv_bias in (None, cfg.bias), f"qkv_bias={cfg.qkv_bias} beside bias={cfg.bias}"),
            (
                qk_norm == "rmsnorm" and set(qk_options) <= {"eps"},
                f"qk_norm {cfg.qk_norm!r} (OLMo 2's is rmsnorm)",
            ),
            (
                qk_options.get("eps", 1e-6) == eps,
                f"qk_norm eps {qk_options.get('eps', 1e-6)} beside norm eps {eps} (one rms_norm_eps)",
            ),
        ],
        "olmo2",
    )
    return {
        "model_type": "olmo2",
        "architectures": ["Olmo2ForCausalLM"],
        **llama.decoder_keys(cfg, cfg.positional),
        "attention_bias": cfg.bias,
    }


ARCHITECTURE = register(
    Architecture(
        model_types=("olmo2",),
        kind="causal_lm",
        config=config,
        links=links,
        hf_config=hf_config,
        ignored=(".rotary_emb.inv_freq",),
        qk_norm="projection",
    )
)
