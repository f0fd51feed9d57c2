"""Phi-3 (``model_type: phi3``): Llama's layer with the query, key and value projections fused in one
``qkv_proj`` and the gate and up projections in one ``gate_up_proj`` (split on import, joined on export), no
biases, and one ``sliding_window`` for every layer when set.

Refused, naming the option: ``partial_rotary_factor`` below 1 (rope on part of each head, Phi-4-mini) and
``longrope`` scaling (Phi-3's 128k models): swapformer's rope turns whole heads with one set of frequencies.
``to_hf`` writes a Llama-shaped model as ``llama`` unless asked for ``model_type="phi3"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swapformer.config import ModelConfig
from swapformer.interop import llama
from swapformer.interop.core import Architecture, Link, Unsupported, norm_links, register, require
from swapformer.registry import split_spec

DEFAULTS = {"rms_norm_eps": 1e-5, "tie_word_embeddings": False}
"""Phi3Config's defaults that differ from Llama's, for a ``config.json`` that leaves them out."""


def config(hf: Mapping[str, Any]) -> dict[str, Any]:
    hf = {**DEFAULTS, **hf}
    fields = llama.config(hf)
    window = hf.get("sliding_window")
    return {
        **fields,
        # one dropout: Phi-3's residual one (resid_pdrop); attention_dropout and embd_pdrop are written the same
        "dropout": hf.get("resid_pdrop", fields["dropout"]),
        "attention": {"name": "sliding_window", "window": int(window)} if window else "sdpa",
    }


def links(cfg: ModelConfig) -> list[Link]:
    out = [Link(("embedding.token.weight",), "model.embed_tokens.weight")]
    for i in range(cfg.num_layers):
        ours, theirs = f"decoder.layers.{i}", f"model.layers.{i}"
        attention, ffn = f"{ours}.self_attention.sublayer", f"{ours}.feed_forward.sublayer"
        out += norm_links(f"{ours}.self_attention.norm", f"{theirs}.input_layernorm", bias=False)
        out += norm_links(f"{ours}.feed_forward.norm", f"{theirs}.post_attention_layernorm", bias=False)
        out += [
            Link(tuple(f"{attention}.{p}_proj.weight" for p in "qkv"), f"{theirs}.self_attn.qkv_proj.weight"),
            Link((f"{attention}.out_proj.weight",), f"{theirs}.self_attn.o_proj.weight"),
            # Phi3MLP chunks gate_up_proj's output in two: the gate first
            Link((f"{ffn}.gate_proj.weight", f"{ffn}.up_proj.weight"), f"{theirs}.mlp.gate_up_proj.weight"),
            Link((f"{ffn}.down_proj.weight",), f"{theirs}.mlp.down_proj.weight"),
        ]
    out += norm_links("decoder.final_norm", "model.norm", bias=False)
    if not cfg.tie_embeddings:
        out.append(Link(("lm_head.weight",), "lm_head.weight"))
    return out


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    hf, mlp_bias = llama.decoder_hf_config(cfg, cfg.positional, "phi3")
    attention, options = split_spec(cfg.attention)
    _, rope_options = split_spec(cfg.positional)
    require(
        [
            (attention in ("sdpa", "math", "sliding_window"), f"attention {cfg.attention!r}"),
            (not rope_options.get("scaling"), f"rope scaling {rope_options.get('scaling')!r}"),
            (not (cfg.bias or cfg.qkv_bias or mlp_bias), "biases (bias, qkv_bias or the ffn's)"),
        ],
        "phi3",
    )
    if hf["hidden_act"] != "silu":
        raise Unsupported(f"ffn {cfg.ffn!r} has no phi3 equivalent (Phi-3's gated FFN is swiglu)")
    del hf["rope_theta"]
    return {
        "model_type": "phi3",
        "architectures": ["Phi3ForCausalLM"],
        **hf,
        "rope_parameters": {**hf["rope_parameters"], "partial_rotary_factor": 1.0},
        "original_max_position_embeddings": cfg.max_seq_len,
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "sliding_window": options.get("window", 256) if attention == "sliding_window" else None,
    }


ARCHITECTURE = register(
    Architecture(
        model_types=("phi3",),
        kind="causal_lm",
        config=config,
        links=links,
        hf_config=hf_config,
        ignored=(".rotary_emb.inv_freq",),
    )
)
