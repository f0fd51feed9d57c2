"""Gemma 2 (``model_type: gemma2``): four norms per layer, soft-capped scores and logits, sliding layers between
full ones.

Each layer is a sandwich of Gemma's ``(1 + w)`` RMSNorms (``norm: {name: rmsnorm, unit_offset: true}``)::

    x ──┬── input_layernorm ── attention ── post_attention_layernorm ──(+)──▶     (placement: sandwich; the FFN
        └───────────────────────────────────────────────────────────────┘          between pre_feedforward_ and
                                                                                   post_feedforward_layernorm)

The scores are scaled by ``query_pre_attn_scalar ** -0.5`` (``attention_scale``) and soft-capped by
``attn_logit_softcapping`` (the ``math`` and ``sliding_window`` kernels' ``softcap``; ``sdpa`` without a cap),
the logits by ``final_logit_softcapping`` (``logit_softcap``), the embeddings multiplied by sqrt(D)
(``scale_embeddings``: transformers multiplies by sqrt(D) rounded to the model's dtype, the same number in
float32). The layers ``layer_types`` names sliding (without it, every other layer from the first) become
``layers`` overrides of a full-attention config, a pattern when they repeat::

    layer_types: [sliding, full, sliding]   ->   attention: {name: math, softcap: 50.0}
                                                 layers: {pattern: [sliding, full], types: {full: {},
                                                          sliding: {attention: {name: sliding_window,
                                                                                window: 4096, softcap: 50.0}}}}

transformers runs Gemma 2 with its eager attention by default (its SDPA cannot soft-cap).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from swapformer.config import ModelConfig
from swapformer.interop import llama
from swapformer.interop.core import (
    Architecture,
    Link,
    Unsupported,
    activation_of,
    layer_links,
    norm_links,
    placement_requirement,
    register,
    require,
)
from swapformer.interop.layers import decoder_specs, layers_of
from swapformer.layer_specs import LayerSpec
from swapformer.registry import split_spec

DEFAULTS = {
    "vocab_size": 256000,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "bos_token_id": 2,
    "tie_word_embeddings": True,
    "query_pre_attn_scalar": 256,
    "sliding_window": 4096,
    "final_logit_softcapping": 30.0,
    "attn_logit_softcapping": 50.0,
}
"""Gemma2Config's defaults, for a ``config.json`` that leaves them out."""


def layer_types(hf: Mapping[str, Any], sliding_every: int = 2) -> list[str]:
    """Each layer's type: ``layer_types``, or a full layer every ``sliding_every``-th one (Gemma 2: 2) as the
    config derives it when absent.

    Raises:
        Unsupported: ``layer_types`` of another length than the depth.
    """
    depth = hf["num_hidden_layers"]
    types = hf.get("layer_types") or [
        "full_attention" if (i + 1) % sliding_every == 0 else "sliding_attention" for i in range(depth)
    ]
    if len(types) != depth:
        raise Unsupported(f"layer_types lists {len(types)} layers but num_hidden_layers is {depth}")
    return list(types)


def attention_changes(
    types: list[str], hf: Mapping[str, Any], family: str
) -> tuple[Any, list[dict[str, Any]]]:
    """The full layers' kernel and each layer's overrides: ``math`` soft-capped by ``attn_logit_softcapping``
    (``sdpa`` without a cap), ``sliding_window`` of ``sliding_window`` on the sliding layers."""
    cap = hf.get("attn_logit_softcapping")
    full: Any = "sdpa" if cap is None else {"name": "math", "softcap": float(cap)}
    changes = llama.sliding_changes(types, hf.get("sliding_window"), family)
    if cap is not None:
        for change in changes:
            if "attention" in change:
                change["attention"]["softcap"] = float(cap)
    return full, changes


def gemma_fields(hf: Mapping[str, Any]) -> dict[str, Any]:
    """The ModelConfig fields every Gemma shares (Llama's sizes and rope; the sandwich of ``(1 + w)`` norms,
    the GeGLU FFN, the query and embedding scales), for a config with its defaults filled in.

    Raises:
        Unsupported: a bidirectional decoder, or what Llama's fields refuse (a rope type, an activation).
    """
    if hf.get("use_bidirectional_attention"):
        raise Unsupported(
            "use_bidirectional_attention: true (a decoder that sees later tokens) has no swapformer equivalent: "
            "swapformer's causal LMs see earlier tokens only"
        )
    fields = llama.config({**hf, "hidden_act": hf["hidden_activation"]})
    return {
        **fields,
        "norm": {"name": "rmsnorm", "unit_offset": True, "eps": hf["rms_norm_eps"]},
        "placement": "sandwich",
        "ffn": {**fields["ffn"], "bias": False},
        "attention_scale": float(hf["query_pre_attn_scalar"]) ** -0.5,
        "scale_embeddings": True,
    }


def config(hf: Mapping[str, Any]) -> dict[str, Any]:
    hf = {**DEFAULTS, **hf}
    fields = gemma_fields(hf)
    full, changes = attention_changes(layer_types(hf), hf, "gemma2")
    uniform, layers = layers_of(changes)
    cap = hf.get("final_logit_softcapping")
    return {
        **fields,
        "attention": full,
        **uniform,
        "layers": layers,
        "logit_softcap": None if cap is None else float(cap),
    }


def links(cfg: ModelConfig) -> list[Link]:
    out = [Link(("embedding.token.weight",), "model.embed_tokens.weight")]
    _, _, mlp_bias = activation_of(cfg.ffn)
    for i in range(cfg.num_layers):
        ours, theirs = f"decoder.layers.{i}", f"model.layers.{i}"
        for mine, hf_norm in (
            ("self_attention.norm", "input_layernorm"),
            ("self_attention.post_norm", "post_attention_layernorm"),
            ("feed_forward.norm", "pre_feedforward_layernorm"),
            ("feed_forward.post_norm", "post_feedforward_layernorm"),
        ):
            out += norm_links(f"{ours}.{mine}", f"{theirs}.{hf_norm}", bias=False)
        attention = f"{ours}.self_attention.sublayer"
        pairs = [(f"{p}_proj", f"{p}_proj") for p in "qkv"] + [("out_proj", "o_proj")]
        out += layer_links(f"{theirs}.self_attn", attention, pairs, bias=cfg.bias)
        pairs = [(name, name) for name in ("gate_proj", "up_proj", "down_proj")]
        out += layer_links(f"{theirs}.mlp", f"{ours}.feed_forward.sublayer", pairs, bias=mlp_bias)
    out += norm_links("decoder.final_norm", "model.norm", bias=False)
    if not cfg.tie_embeddings:
        out.append(Link(("lm_head.weight",), "lm_head.weight"))
    return out


def gemma_hf_config(cfg: ModelConfig, positional: Any, family: str) -> dict[str, Any]:
    """The ``config.json`` keys every Gemma writes (Llama's sizes and rope, ``hidden_activation``,
    ``query_pre_attn_scalar``, ``attention_bias``); ``positional`` is the rope the layers use.

    Raises:
        Unsupported: the first of Gemma's norms, placement, scales and FFN that ``cfg`` lacks, named.
    """
    norm, norm_options = split_spec(cfg.norm)
    scale = cfg.resolved_head_dim**-0.5 if cfg.attention_scale is None else cfg.attention_scale
    scalar = round(scale**-2)
    activation, gated, mlp_bias = activation_of(cfg.ffn)
    require(
        [
            llama.decoder_checks(cfg, positional)[0],  # a rope
            (
                norm == "rmsnorm"
                and norm_options.get("unit_offset")
                and set(norm_options) <= {"eps", "unit_offset"},
                f"norm {cfg.norm!r} (Gemma's is {{name: rmsnorm, unit_offset: true}})",
            ),
            placement_requirement(cfg, "sandwich", " (Gemma's is sandwich)"),
            (
                cfg.scale_embeddings,
                "scale_embeddings: false (Gemma multiplies the embeddings by sqrt(d_model))",
            ),
            (not (cfg.embedding_norm or cfg.lm_head_bias), "embedding_norm or lm_head_bias"),
            (cfg.qkv_bias in (None, cfg.bias), f"qkv_bias={cfg.qkv_bias} beside bias={cfg.bias}"),
            (gated and not mlp_bias, f"ffn {cfg.ffn!r} (Gemma's is gated, without biases)"),
            (
                scalar >= 1 and math.isclose(float(scalar) ** -0.5, scale, rel_tol=1e-12),  # 1 / sqrt(E) too
                f"attention_scale={cfg.attention_scale} (Gemma's scale is an integer query_pre_attn_scalar "
                f"** -0.5, e.g. {max(scalar, 1)} ** -0.5 = {max(scalar, 1) ** -0.5:.6g})",
            ),
        ],
        family,
    )
    hf = llama.decoder_keys(cfg, positional)
    del hf["hidden_act"]
    return {
        **hf,
        "hidden_activation": activation,
        "query_pre_attn_scalar": scalar,
        "attention_bias": cfg.bias,
    }


def attention_softcap(specs: list[LayerSpec]) -> float | None:
    """The one ``attn_logit_softcapping`` of layers whose kernels' ``softcap`` are all the same.

    Raises:
        Unsupported: layers of different caps.
    """
    caps = {split_spec(spec.attention)[1].get("softcap") for spec in specs}
    if len(caps) > 1:
        shown = sorted(caps, key=lambda cap: -1.0 if cap is None else cap)
        raise Unsupported(f"attention softcaps of {shown} in one model (one attn_logit_softcapping)")
    return next(iter(caps))


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    hf = gemma_hf_config(cfg, cfg.positional, "gemma2")
    specs = decoder_specs(cfg)
    types, window = llama.layer_windows(specs)
    return {
        "model_type": "gemma2",
        "architectures": ["Gemma2ForCausalLM"],
        **hf,
        "layer_types": types,
        # Gemma2Model makes the sliding layers' mask even when no layer slides, and it needs a window
        "sliding_window": cfg.max_seq_len if window is None else window,
        "attn_logit_softcapping": attention_softcap(specs),
        "final_logit_softcapping": cfg.logit_softcap,
    }


ARCHITECTURE = register(
    Architecture(
        model_types=("gemma2",),
        kind="causal_lm",
        config=config,
        links=links,
        hf_config=hf_config,
        ignored=(".rotary_emb.inv_freq",),
        per_layer=("attention",),
        softcap=True,
    )
)
