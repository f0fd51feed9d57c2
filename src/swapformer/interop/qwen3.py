"""Qwen3 (``model_type: qwen3``): Llama's layer with an RMSNorm on each query and key head before the rotation
(``qk_norm``, of ``rms_norm_eps``), a ``head_dim`` of its own, and a sliding window on the layers
``layer_types`` names sliding.

Which layers slide, as transformers 5 decides: ``layer_types`` when the config has it; otherwise every layer from
``max_window_layers`` on when ``use_sliding_window`` is true (``sliding_window`` is null when it is false). The
sliding layers become ``layers`` overrides of a full-attention config (a pattern when they repeat)::

    max_window_layers: 1, 3 layers   ->   layers: [{}, {attention: {name: sliding_window, window: W}}, {...same}]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swapformer.config import ModelConfig
from swapformer.interop import llama
from swapformer.interop.core import (
    Architecture,
    Link,
    qk_norm_links,
    register,
    require,
)
from swapformer.interop.layers import decoder_specs, layers_of
from swapformer.registry import split_spec

DEFAULTS = {
    "head_dim": 128,
    "rms_norm_eps": 1e-6,
    **llama.QWEN_WINDOWS,
    "tie_word_embeddings": False,
}
"""Qwen3Config's defaults that differ from Llama's, for a ``config.json`` that leaves them out."""


def config(hf: Mapping[str, Any]) -> dict[str, Any]:
    hf = {**DEFAULTS, **hf}
    fields = llama.config(hf)
    types, window = llama.qwen_layer_types(hf)
    uniform, layers = layers_of(
        llama.sliding_changes(types, window, "qwen3", fix=llama.qwen_window_fix(hf, "qwen3"))
    )
    return {**fields, **uniform, "qk_norm": dict(fields["norm"]), "layers": layers}


def links(cfg: ModelConfig) -> list[Link]:
    return llama.links(cfg) + [link for i in range(cfg.num_layers) for link in qk_norm_links(i)]


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    hf, mlp_bias = llama.decoder_hf_config(cfg, cfg.positional, "qwen3")
    types, window = llama.layer_windows(decoder_specs(cfg))
    qk_norm, qk_options = split_spec(cfg.qk_norm) if cfg.qk_norm is not None else (None, {})
    require(
        [
            (not mlp_bias, "ffn biases"),
            (cfg.qkv_bias in (None, cfg.bias), f"qkv_bias={cfg.qkv_bias} beside bias={cfg.bias}"),
            (qk_norm == "rmsnorm" and set(qk_options) <= {"eps"}, f"qk_norm {cfg.qk_norm!r}"),
            (
                qk_options.get("eps", 1e-6) == hf["rms_norm_eps"],
                f"qk_norm eps {qk_options.get('eps', 1e-6)} beside norm eps {hf['rms_norm_eps']} "
                "(one rms_norm_eps)",
            ),
        ],
        "qwen3",
    )
    sliding = [i for i, kind in enumerate(types) if kind == "sliding_attention"]
    return {
        "model_type": "qwen3",
        "architectures": ["Qwen3ForCausalLM"],
        **hf,
        "attention_bias": cfg.bias,
        "use_sliding_window": bool(sliding),
        "sliding_window": window,
        "max_window_layers": sliding[0] if sliding else cfg.num_layers,
        "layer_types": types,
    }


ARCHITECTURE = register(
    Architecture(
        model_types=("qwen3",),
        kind="causal_lm",
        config=config,
        links=links,
        hf_config=hf_config,
        ignored=(".rotary_emb.inv_freq",),
        per_layer=("attention",),
        qk_norm="head",
    )
)
