"""Gemma 3 text (``model_type: gemma3_text``): Gemma 2's layer (:mod:`swapformer.interop.gemma2`) with Gemma's
``(1 + w)`` RMSNorm on each query and key head before the rotation (``qk_norm: {name: rmsnorm, unit_offset:
true}``), and a rope of its own for the sliding layers (base 10k) and for the full ones (base 1M, scaled on the
larger models). Its logits are soft-capped when ``final_logit_softcapping`` is set (it is null in Google's
checkpoints); ``attn_logit_softcapping`` is read by no attention layer of transformers' Gemma 3, so the import
leaves the scores uncapped as transformers does, and ``to_hf`` refuses a model whose scores are capped.

Without ``layer_types`` every sixth layer is full (``sliding_window_pattern``). The full layers' rope is the
uniform one, the sliding layers override the kernel and the rope::

    rope_parameters: {full_attention: {rope_theta: 1e6, rope_type: linear, factor: 8},
                      sliding_attention: {rope_theta: 1e4}}
    ->  positional: {name: rope, base: 1000000.0, scaling: linear, factor: 8.0}
        layers: {pattern: [sliding_positional, (4 more), full],
                 types: {full: {}, sliding_positional: {attention: {name: sliding_window, window: W},
                                                        positional: {name: rope, base: 10000.0}}}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swapformer.config import ModelConfig
from swapformer.interop import gemma2, llama
from swapformer.interop.core import Architecture, Link, Unsupported, qk_norm_links, register, require
from swapformer.interop.layers import decoder_specs, layers_of
from swapformer.registry import split_spec

DEFAULTS = {
    **gemma2.DEFAULTS,
    "vocab_size": 262208,
    "max_position_embeddings": 131072,
    "final_logit_softcapping": None,
    "attn_logit_softcapping": None,
}
"""Gemma3TextConfig's defaults, for a ``config.json`` that leaves them out."""

TYPES = ("full_attention", "sliding_attention")


def rope_of_types(hf: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each layer type's ``rope_parameters``: transformers 5 writes them per type; earlier configs wrote
    ``rope_theta`` and ``rope_scaling`` for the full layers and ``rope_local_base_freq`` for the sliding ones."""
    parameters = hf.get("rope_parameters") or {}
    if set(parameters) & set(TYPES):
        return {
            kind: {"rope_theta": 1e6 if kind == TYPES[0] else 1e4, **(parameters.get(kind) or {})}
            for kind in TYPES
        }
    return {
        "full_attention": {"rope_theta": hf.get("rope_theta", 1e6), **(hf.get("rope_scaling") or parameters)},
        "sliding_attention": {"rope_theta": hf.get("rope_local_base_freq", 1e4)},
    }


def config(hf: Mapping[str, Any]) -> dict[str, Any]:
    hf = {**DEFAULTS, **hf}
    # transformers reads YaRN's truncate from the top of rope_parameters, where a per-type config has none: a
    # type's own truncate is ignored there, and so here
    ropes = {
        kind: llama._rope({**hf, "rope_parameters": {k: v for k, v in parameters.items() if k != "truncate"}})
        for kind, parameters in rope_of_types(hf).items()
    }
    fields = gemma2.gemma_fields({**hf, "rope_parameters": rope_of_types(hf)["full_attention"]})
    every = hf.get("sliding_window_pattern", hf.get("_sliding_window_pattern", 6))
    types = gemma2.layer_types(hf, sliding_every=every)
    # transformers' Gemma3Attention passes no softcap to its kernels
    full, changes = gemma2.attention_changes(types, {**hf, "attn_logit_softcapping": None}, "gemma3_text")
    for kind, change in zip(types, changes, strict=True):
        if kind == "sliding_attention" and ropes[kind] != ropes["full_attention"]:
            change["positional"] = ropes[kind]
    uniform, layers = layers_of(changes)
    cap = hf.get("final_logit_softcapping")
    return {
        **fields,
        "attention": full,
        "positional": ropes["full_attention"],
        "qk_norm": dict(fields["norm"]),
        **uniform,
        "layers": layers,
        "logit_softcap": None if cap is None else float(cap),
    }


def links(cfg: ModelConfig) -> list[Link]:
    return gemma2.links(cfg) + [link for i in range(cfg.num_layers) for link in qk_norm_links(i)]


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    specs = decoder_specs(cfg)
    types, window = llama.layer_windows(specs)
    ropes: dict[str, Any] = {}
    for i, (kind, spec) in enumerate(zip(types, specs, strict=True)):
        seen = ropes.setdefault(kind, spec.positional)
        if split_spec(seen) != split_spec(spec.positional):
            raise Unsupported(
                f"positional {spec.positional!r} of layer {i} beside {seen!r} on another {kind} layer "
                "(one rope per layer type)"
            )
    full = ropes.get("full_attention", cfg.positional)
    sliding = ropes.get("sliding_attention", full)
    hf = gemma2.gemma_hf_config(cfg, full, "gemma3_text")
    qk_norm, qk_options = split_spec(cfg.qk_norm) if cfg.qk_norm is not None else (None, {})
    cap = gemma2.attention_softcap(specs)
    require(
        [
            (
                cap is None,
                f"attention softcap {cap} (transformers' Gemma 3 ignores attn_logit_softcapping; Gemma 2 "
                "caps scores)",
            ),
            llama.decoder_checks(cfg, sliding)[0],  # the sliding layers' rope too
            *[
                (
                    split_spec(rope)[1].get("truncate") is not False,
                    f"positional {rope!r} (transformers' Gemma 3 ignores a per-type truncate: false)",
                )
                for rope in (full, sliding)
            ],
            (
                qk_norm == "rmsnorm"
                and qk_options.get("unit_offset")
                and set(qk_options) <= {"eps", "unit_offset"},
                f"qk_norm {cfg.qk_norm!r} (Gemma 3's is {{name: rmsnorm, unit_offset: true}})",
            ),
            (
                qk_options.get("eps", 1e-6) == hf["rms_norm_eps"],
                f"qk_norm eps {qk_options.get('eps', 1e-6)} beside norm eps {hf['rms_norm_eps']} "
                "(one rms_norm_eps)",
            ),
        ],
        "gemma3_text",
    )
    del hf["rope_theta"]
    return {
        "model_type": "gemma3_text",
        "architectures": ["Gemma3ForCausalLM"],
        **hf,
        "rope_parameters": {
            "full_attention": llama.rope_parameters(full),
            "sliding_attention": llama.rope_parameters(sliding),
        },
        "layer_types": types,
        "sliding_window": cfg.max_seq_len
        if window is None
        else window,  # as Gemma 2: needed when none slides
        "attn_logit_softcapping": None,
        "final_logit_softcapping": cfg.logit_softcap,
    }


ARCHITECTURE = register(
    Architecture(
        model_types=("gemma3_text",),
        kind="causal_lm",
        config=config,
        links=links,
        hf_config=hf_config,
        ignored=(".rotary_emb.sliding_attention_inv_freq", ".rotary_emb.full_attention_inv_freq"),
        per_layer=("attention", "positional"),
        qk_norm="head",
        softcap=True,
    )
)
