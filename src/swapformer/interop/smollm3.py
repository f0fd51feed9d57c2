"""SmolLM3 (``model_type: smollm3``): Llama's layer without rope on some layers (NoPE), and a sliding window on the
layers ``layer_types`` names sliding.

``no_rope_layers[i]`` is 1 where layer i rotates (the name says the opposite); without it, every
``no_rope_layer_interval``-th layer is NoPE. Without ``layer_types``, the NoPE layers slide when
``use_sliding_window`` is true. Both become ``layers`` overrides of a rope, full-attention config, a pattern when
they repeat (its period need not divide the depth)::

    no_rope_layer_interval: 4, 6 layers   ->   layers: {pattern: [full, full, full, nope],
                                                        types: {full: {}, nope: {positional: none}}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swapformer.config import ModelConfig
from swapformer.interop import llama
from swapformer.interop.core import Architecture, Unsupported, register, require
from swapformer.interop.layers import decoder_specs, layers_of
from swapformer.registry import split_spec

DEFAULTS = {
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-6,
    "use_sliding_window": False,
    "sliding_window": None,
    "no_rope_layer_interval": 4,
    "tie_word_embeddings": True,
    "rope_theta": 2000000.0,
}
"""SmolLM3Config's defaults that differ from Llama's, for a ``config.json`` that leaves them out."""


def layer_settings(hf: Mapping[str, Any]) -> tuple[list[int], list[str]]:
    """``no_rope_layers`` and ``layer_types``, as ``SmolLM3Config`` derives them when absent."""
    depth = hf.get("num_hidden_layers", 36)
    rotates = hf.get("no_rope_layers") or [
        int((i + 1) % hf["no_rope_layer_interval"] != 0) for i in range(depth)
    ]
    types = hf.get("layer_types") or [
        "sliding_attention"
        if hf["use_sliding_window"] and hf["sliding_window"] is not None and not rotates[i]
        else "full_attention"
        for i in range(depth)
    ]
    for key, values in (("no_rope_layers", rotates), ("layer_types", types)):
        if len(values) != depth:
            raise Unsupported(f"{key} lists {len(values)} layers but num_hidden_layers is {depth}")
    return list(rotates), list(types)


def config(hf: Mapping[str, Any]) -> dict[str, Any]:
    hf = {**DEFAULTS, **hf}
    fields = llama.config(hf)
    rotates, types = layer_settings(hf)
    changes = llama.sliding_changes(types, hf["sliding_window"], "smollm3")
    for change, rotating in zip(changes, rotates, strict=True):
        if not rotating:
            change["positional"] = "none"
    uniform, layers = layers_of(changes)
    return {**fields, **uniform, "layers": layers}


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    specs = decoder_specs(cfg)
    ropes = [spec.positional for spec in specs if split_spec(spec.positional)[0] not in ("none", "nope")]
    distinct = {repr(split_spec(rope)): rope for rope in ropes}
    if len(distinct) > 1:
        raise Unsupported(
            f"positional {list(distinct.values())[1]!r} beside {ropes[0]!r} (one rope for all layers)"
        )
    rope = ropes[0] if ropes else "rope"
    hf, mlp_bias = llama.decoder_hf_config(cfg, rope, "smollm3")
    types, window = llama.layer_windows(specs)
    require(
        [(cfg.qkv_bias in (None, cfg.bias), f"qkv_bias={cfg.qkv_bias} beside bias={cfg.bias}")], "smollm3"
    )
    rotates = [int(split_spec(spec.positional)[0] not in ("none", "nope")) for spec in specs]
    return {
        "model_type": "smollm3",
        "architectures": ["SmolLM3ForCausalLM"],
        **hf,
        "attention_bias": cfg.bias,
        "mlp_bias": mlp_bias,
        "use_sliding_window": window is not None,
        "sliding_window": window,
        "no_rope_layers": rotates,
        "layer_types": types,
    }


ARCHITECTURE = register(
    Architecture(
        model_types=("smollm3",),
        kind="causal_lm",
        config=config,
        links=llama.links,
        hf_config=hf_config,
        ignored=(".rotary_emb.inv_freq",),
        per_layer=("attention", "positional"),
    )
)
