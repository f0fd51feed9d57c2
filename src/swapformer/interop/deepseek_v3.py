"""DeepSeek-V3 (``model_type: deepseek_v3``): Llama's pre-norm RMSNorm decoder with multi-head latent attention
(our ``mla``, DeepSeek's parameter names) and a sigmoid-routed mixture of experts with shared experts (our
``moe``) after ``first_k_dense_replace`` dense SwiGLU layers::

    self_attn.{q_proj | q_a_proj, q_a_layernorm, q_b_proj}   ->  self_attention.sublayer.<the same names>
    self_attn.{kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj} ->  self_attention.sublayer.<the same names>
    self_attn.o_proj                                          ->  self_attention.sublayer.out_proj
    mlp.gate.weight (E, D)                 ->  feed_forward.sublayer.router.weight       (router: sigmoid)
    mlp.gate.e_score_correction_bias (E,)  ->  feed_forward.sublayer.selection_bias      (chooses, never weighs)
    mlp.experts.gate_up_proj, down_proj    ->  feed_forward.sublayer.gate_up_proj, down_proj (stored per expert)
    mlp.shared_experts.{gate,up,down}_proj ->  feed_forward.sublayer.shared.<the same>   (width S x F)

Sizes: each routed expert is ``moe_intermediate_size`` (F) wide, the shared experts are one SwiGLU of width
``n_shared_experts * F`` (our ``shared_experts`` counts experts of width ``d_ff`` = F, so the same), and the dense
layers are ``intermediate_size`` wide (``layers`` overrides, as Qwen3-MoE's ``mlp_only_layers``). The router
picks ``num_experts_per_tok`` experts within the ``topk_group`` best of ``n_group`` groups, renormalizes their
sigmoid scores when ``norm_topk_prob`` and scales them by ``routed_scaling_factor``.

Rope turns the last ``qk_rope_head_dim`` features of each query and of the one shared rope key; with
``rope_interleave`` (DeepSeek's checkpoints) they lie in pairs, which ``mla: {rope_interleave: true}`` regroups
before the rotation. YaRN reads as Llama's (its ``attention_factor`` from ``mscale / mscale_all_dim``); on top,
transformers scales the whole softmax by ``yarn_mscale(factor, mscale_all_dim) ** 2`` (DeepSeek's reference
code), which is ``mla``'s ``mscale``.

What transformers does not read is not read either: the multi-token-prediction layers a checkpoint may hold past
the last layer (``num_nextn_predict_layers``; ``model.layers.61`` of DeepSeek-V3) are ignored on import, and an
export writes ``num_nextn_predict_layers: 0``. transformers has no balance loss for this router: an import sets
``aux_loss: 0`` and ``z_loss: 0`` and leaves ``balance_rate`` at 0 (DeepSeek's bias update speed was 0 for the
last 500B tokens of pretraining); set it to fine-tune with loss-free balancing. An export leaves these training
settings out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from swapformer.components.positional.rope_scaling import yarn_mscale
from swapformer.config import ModelConfig
from swapformer.interop import llama, mixtral, qwen3_moe
from swapformer.interop.core import (
    LACKS_A_FEATURE,
    Architecture,
    Link,
    Unsupported,
    layer_links,
    norm_links,
    register,
    require,
)
from swapformer.interop.layers import decoder_specs, layers_of
from swapformer.layer_specs import LayerSpec
from swapformer.registry import ATTENTION, split_spec

DEFAULTS = {
    "vocab_size": 129280,
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "moe_intermediate_size": 2048,
    "num_hidden_layers": 61,
    "num_attention_heads": 128,
    "n_shared_experts": 1,
    "n_routed_experts": 256,
    "routed_scaling_factor": 2.5,
    "kv_lora_rank": 512,
    "q_lora_rank": 1536,
    "qk_rope_head_dim": 64,
    "v_head_dim": 128,
    "qk_nope_head_dim": 128,
    "n_group": 8,
    "topk_group": 4,
    "num_experts_per_tok": 8,
    "first_k_dense_replace": 3,
    "norm_topk_prob": True,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "tie_word_embeddings": False,
    "rope_interleave": True,
    "attention_bias": False,
}
"""DeepseekV3Config's defaults that differ from Llama's, for a ``config.json`` that leaves them out."""

MLA_SIZES = ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
"""``mla``'s sizes, named as DeepSeek-V3's ``config.json`` names them."""


def num_experts(hf: Mapping[str, Any]) -> int:
    """``n_routed_experts`` of a ``config.json`` (transformers' alias: ``num_local_experts``; default 256)."""
    return int(hf.get("n_routed_experts", hf.get("num_local_experts", DEFAULTS["n_routed_experts"])))


def _rope_parameters(hf: Mapping[str, Any]) -> dict[str, Any]:
    return dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})


def config(hf: Mapping[str, Any]) -> dict[str, Any]:
    experts = num_experts(hf)  # before the defaults: the alias counts too
    hf = {**DEFAULTS, **hf}
    heads = hf["num_attention_heads"]
    kv_heads = hf.get("num_key_value_heads") or heads
    if kv_heads != heads:
        raise Unsupported(
            f"num_key_value_heads={kv_heads} beside num_attention_heads={heads} has no swapformer equivalent "
            "(latent attention expands keys and values for every head); set num_key_value_heads to "
            "num_attention_heads"
        )
    shared = hf["n_shared_experts"]
    if not shared:
        raise Unsupported(
            f"n_shared_experts={shared!r} has no swapformer equivalent (DeepSeek-V3's MoE layers run at least "
            "one shared expert)"
        )
    layers, dense_count = hf["num_hidden_layers"], hf["first_k_dense_replace"] or 0
    sparse = [i >= dense_count for i in range(layers)]
    fields = llama.config(
        {
            **hf,
            "intermediate_size": hf["moe_intermediate_size"],
            "num_key_value_heads": heads,
            "head_dim": None,
        }
    )
    moe = {
        **mixtral.moe_spec(hf, experts=experts, norm_topk=bool(hf["norm_topk_prob"]), moe_layers=1),
        "router": "sigmoid",
        "shared_experts": int(shared),
        "routed_scaling": float(hf["routed_scaling_factor"]),
        "groups": int(hf["n_group"] or 1),
        "topk_groups": int(hf["topk_group"] or 1),
        "aux_loss": 0.0,
    }
    dense = {"ffn": fields["ffn"], "d_ff": hf["intermediate_size"]}
    uniform, per_layer = layers_of([{} if is_sparse else dense for is_sparse in sparse])
    return {
        **fields,
        "num_kv_heads": None,
        "attention": attention_spec(hf, fields["positional"]),
        "ffn": moe,
        **uniform,
        "qkv_bias": None,
        "layers": per_layer,
    }


def attention_spec(hf: Mapping[str, Any], positional: Mapping[str, Any]) -> dict[str, Any]:
    """Our ``mla`` spec of DeepSeek-V3's sizes; ``positional``: the rope read, whose factor the softmax's mscale
    takes (as ``yarn_apply_mscale`` takes it, for any rope type but the default one)."""
    spec: dict[str, Any] = {"name": "mla", **{key: hf[key] for key in MLA_SIZES}}
    spec["rope_interleave"] = bool(hf["rope_interleave"])
    mscale_all_dim = _rope_parameters(hf).get("mscale_all_dim")
    if mscale_all_dim and "scaling" in positional:
        mscale = yarn_mscale(positional["factor"], mscale_all_dim)
        if mscale != 1.0:
            spec["mscale"] = mscale
    return spec


def links(cfg: ModelConfig) -> list[Link]:
    out = [Link(("embedding.token.weight",), "model.embed_tokens.weight")]
    for i, spec in enumerate(decoder_specs(cfg)):
        out += attention_links(cfg, i, spec.attention)
        out += moe_links(i) if split_spec(spec.ffn)[0] == "moe" else llama.mlp_links(i, ffn_bias=False)
    return out + llama.final_links(cfg)


def attention_links(cfg: ModelConfig, layer: int, attention: Any) -> list[Link]:
    """Decoder layer ``layer``'s two norms and latent attention (DeepSeek's names on both sides, but W_o)."""
    ours, theirs = f"decoder.layers.{layer}", f"model.layers.{layer}"
    mine, hf = f"{ours}.self_attention.sublayer", f"{theirs}.self_attn"
    out = norm_links(f"{ours}.self_attention.norm", f"{theirs}.input_layernorm", bias=False)
    out += norm_links(f"{ours}.feed_forward.norm", f"{theirs}.post_attention_layernorm", bias=False)
    if split_spec(attention)[1].get("q_lora_rank") is None:
        out += layer_links(hf, mine, [("q_proj", "q_proj")], bias=False)
    else:
        out += layer_links(hf, mine, [("q_a_proj", "q_a_proj")], bias=cfg.bias)
        out += norm_links(f"{mine}.q_a_layernorm", f"{hf}.q_a_layernorm", bias=False)
        out += layer_links(hf, mine, [("q_b_proj", "q_b_proj")], bias=False)
    out += layer_links(hf, mine, [("kv_a_proj_with_mqa", "kv_a_proj_with_mqa")], bias=cfg.bias)
    out += norm_links(f"{mine}.kv_a_layernorm", f"{hf}.kv_a_layernorm", bias=False)
    out += layer_links(hf, mine, [("kv_b_proj", "kv_b_proj")], bias=False)
    return out + layer_links(hf, mine, [("out_proj", "o_proj")], bias=cfg.bias)


def moe_links(layer: int) -> list[Link]:
    """Mixtral's router and stacked experts, the selection bias and the shared experts of layer ``layer``."""
    ours, theirs = f"decoder.layers.{layer}.feed_forward.sublayer", f"model.layers.{layer}.mlp"
    shared = [(name, name) for name in ("gate_proj", "up_proj", "down_proj")]
    return [
        *mixtral.moe_links(layer),
        Link((f"{ours}.selection_bias",), f"{theirs}.gate.e_score_correction_bias"),
        *layer_links(f"{theirs}.shared_experts", f"{ours}.shared", shared, bias=False),
    ]


def _mla_sizes(cfg: ModelConfig) -> tuple[Any, dict[str, Any]]:
    """The ``mla`` layer ``cfg.attention`` builds (on the meta device: sizes only), and its options."""
    with torch.device("meta"):
        layer = ATTENTION.build(
            cfg.attention, d_model=cfg.d_model, num_heads=cfg.num_heads, head_dim=cfg.resolved_head_dim
        )
    return layer, split_spec(cfg.attention)[1]


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    specs = decoder_specs(cfg)
    if not any(split_spec(spec.ffn)[0] == "moe" for spec in specs):  # closer to any dense family
        raise Unsupported("ffn without moe layers has no deepseek_v3 equivalent", misses=2 * LACKS_A_FEATURE)
    if split_spec(cfg.attention)[0] != "mla":
        raise Unsupported(
            f"attention {cfg.attention!r} has no deepseek_v3 equivalent (latent attention: mla)",
            misses=LACKS_A_FEATURE,
        )
    layer, options = _mla_sizes(cfg)
    kernel, mscale = split_spec(options.get("kernel", "sdpa"))[0], options.get("mscale", 1.0)
    rope = split_spec(cfg.positional)[1]
    factor = rope.get("factor", 1.0) if rope.get("scaling") else 1.0
    checks, moe = _moe_keys(specs)
    require(
        [
            *llama.decoder_checks(cfg, cfg.positional),
            (kernel in ("sdpa", "math"), f"mla kernel {options.get('kernel')!r} (sdpa or math)"),
            (mscale == 1.0 or factor > 1, f"mla mscale {mscale} without a scaled rope (factor > 1)"),
            *checks,
        ],
        "deepseek_v3",
    )
    parameters = llama.rope_parameters(cfg.positional)
    if mscale != 1.0:  # mla's mscale = yarn_mscale(factor, mscale_all_dim); 12 digits read back as written
        parameters["mscale_all_dim"] = float(f"{(mscale - 1.0) / (0.1 * math.log(factor)):.12g}")
    return {
        "model_type": "deepseek_v3",
        "architectures": ["DeepseekV3ForCausalLM"],
        **llama.decoder_keys(cfg, cfg.positional, activation=moe.pop("hidden_act")),
        "rope_parameters": parameters,
        "num_key_value_heads": cfg.num_heads,
        "head_dim": layer.qk_rope_head_dim,  # transformers' rope width
        **moe,
        **{key: getattr(layer, key) for key in MLA_SIZES},
        "rope_interleave": layer.rope_interleave,
        "attention_bias": cfg.bias,
        "num_nextn_predict_layers": 0,
        "output_router_logits": False,
    }


def _moe_keys(specs: list[LayerSpec]) -> tuple[list[tuple[bool, str]], dict[str, Any]]:
    """What DeepSeek-V3's feed-forward layers need of ``specs`` (dense layers first, then one sigmoid-routed
    ``moe`` with shared experts), and their ``config.json`` keys (``hidden_act`` included)."""
    sparse = [split_spec(spec.ffn)[0] == "moe" for spec in specs]
    moes = [spec for spec, is_sparse in zip(specs, sparse, strict=True) if is_sparse]
    dense = [
        (i, spec) for i, (spec, is_sparse) in enumerate(zip(specs, sparse, strict=True)) if not is_sparse
    ]
    _, moe = split_spec(moes[0].ffn)
    expert, router = moe.get("expert", "swiglu"), moe.get("router", "softmax")
    moe_widths, dense_widths = {spec.d_ff for spec in moes}, {spec.d_ff for _, spec in dense}
    checks = [
        (router == "sigmoid", f"moe router {router!r} (sigmoid)"),
        (moe.get("shared_experts", 0) >= 1, "moe without shared_experts (at least one)"),
        (expert in mixtral.EXPERT_ACTIVATIONS, f"moe expert {expert!r} (swiglu or geglu)"),
        (not moe.get("router_bias") and not moe.get("expert_bias"), "moe biases"),
        (
            len({repr(spec.ffn) for spec in moes}) == 1,
            "moe layers of different moe specs (one n_routed_experts, num_experts_per_tok, ...)",
        ),
        (len(moe_widths) == 1, f"moe layers of widths {sorted(moe_widths)} (one moe_intermediate_size)"),
        (len(dense_widths) <= 1, f"dense layers of widths {sorted(dense_widths)} (one intermediate_size)"),
        (
            [i for i, _ in dense] == list(range(len(dense))),
            f"dense layers {[i for i, _ in dense]} (DeepSeek-V3's are the first_k_dense_replace first ones)",
        ),
        *[
            (
                _unbiased(spec.ffn, expert),
                f"layers[{i}].ffn {spec.ffn!r} (a dense layer's is {expert}, no biases)",
            )
            for i, spec in dense
        ],
    ]
    return checks, {
        "hidden_act": mixtral.EXPERT_ACTIVATIONS.get(expert, "silu"),
        "intermediate_size": next(iter(dense_widths), moes[0].d_ff),
        "moe_intermediate_size": moes[0].d_ff,
        "first_k_dense_replace": len(dense),
        "n_routed_experts": moe.get("experts", 8),
        "n_shared_experts": moe.get("shared_experts", 0),
        "num_experts_per_tok": moe.get("top_k", 2),
        "n_group": moe.get("groups", 1),
        "topk_group": moe.get("topk_groups", 1),
        "norm_topk_prob": moe.get("norm_topk", True),
        "routed_scaling_factor": moe.get("routed_scaling", 1.0),
    }


def _unbiased(ffn: Any, name: str) -> bool:
    member, options = split_spec(ffn)
    return member == name and set(options) <= {"bias"} and not options.get("bias")


ARCHITECTURE = register(
    Architecture(
        model_types=("deepseek_v3",),
        kind="causal_lm",
        config=config,
        links=links,
        hf_config=hf_config,
        ignored=(".rotary_emb.inv_freq",),
        per_layer=("ffn", "d_ff"),
        stored=qwen3_moe.STORED,
        unlinked=("feed_forward.sublayer.load",),
        beyond_depth="model.layers",
    )
)
