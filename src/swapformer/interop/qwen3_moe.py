"""Qwen3-MoE (``model_type: qwen3_moe``): Qwen3's layer (an RMSNorm on each query and key head) with Mixtral's
mixture of experts (:mod:`swapformer.interop.mixtral`: a softmax router, SwiGLU experts, the balance loss read
the same way), ``num_experts`` experts of width ``moe_intermediate_size``, the top-k weights renormalized only
when ``norm_topk_prob``; no shared expert.

Dense layers among the sparse ones: layer ``i`` runs the MoE unless it is in ``mlp_only_layers`` or ``i + 1`` is
not a multiple of ``decoder_sparse_step``; the others run a SwiGLU of width ``intermediate_size``. They become
``layers`` overrides of the MoE config (a pattern when they repeat)::

    decoder_sparse_step: 2, 4 layers  ->  layers: {pattern: [swiglu, full],
                                                   types: {swiglu: {ffn: {name: swiglu, ...}, d_ff: I}, full: {}}}

The window. transformers 5's Qwen3-MoE slides every layer when ``use_sliding_window`` (it reads neither
``max_window_layers`` nor ``layer_types``), and so does the import; a model whose layers attend differently is
refused on export.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swapformer.config import ModelConfig
from swapformer.interop import llama, mixtral
from swapformer.interop.core import (
    LACKS_A_FEATURE,
    Architecture,
    Link,
    Unsupported,
    qk_norm_links,
    register,
    require,
)
from swapformer.interop.experts import Stored
from swapformer.interop.layers import decoder_specs, layers_of
from swapformer.registry import split_spec

DEFAULTS = {
    "vocab_size": 151936,
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 24,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "use_sliding_window": False,
    "sliding_window": 4096,
    "decoder_sparse_step": 1,
    "moe_intermediate_size": 768,
    "num_experts_per_tok": 8,
    "norm_topk_prob": False,
    "router_aux_loss_coef": 0.001,
    "mlp_only_layers": [],
    "tie_word_embeddings": False,
}
"""Qwen3MoeConfig's defaults that differ from Llama's, for a ``config.json`` that leaves them out."""

STORED = (
    Stored(
        "mlp.experts.gate_up_proj", ("mlp.experts.{e}.gate_proj.weight", "mlp.experts.{e}.up_proj.weight")
    ),
    Stored("mlp.experts.down_proj", ("mlp.experts.{e}.down_proj.weight",)),
)
"""Qwen3-MoE checkpoints' per-expert names of transformers 5's stacked tensors (the router keeps its name)."""


def num_experts(hf: Mapping[str, Any]) -> int:
    """``num_experts``, which transformers 5 writes as ``num_local_experts`` (Mixtral's name); default 128."""
    return int(hf.get("num_experts", hf.get("num_local_experts", 128)))


def sparse_layers(hf: Mapping[str, Any]) -> list[bool]:
    """Whether each layer runs the MoE, as ``Qwen3MoeDecoderLayer`` decides."""
    step, dense = hf["decoder_sparse_step"] or 1, set(hf["mlp_only_layers"] or ())
    experts = num_experts(hf)
    return [i not in dense and experts > 0 and (i + 1) % step == 0 for i in range(hf["num_hidden_layers"])]


def config(hf: Mapping[str, Any]) -> dict[str, Any]:
    hf = {**DEFAULTS, **hf}
    experts = num_experts(hf)
    sparse = sparse_layers(hf)
    fields = llama.config({**hf, "intermediate_size": hf["moe_intermediate_size"]})
    window = hf["sliding_window"] if hf["use_sliding_window"] else None
    attention = {"name": "sliding_window", "window": int(window)} if window else "sdpa"
    moe = mixtral.moe_spec(hf, experts=experts, norm_topk=hf["norm_topk_prob"], moe_layers=sum(sparse))
    dense = {"ffn": fields["ffn"], "d_ff": hf["intermediate_size"]}
    uniform, layers = layers_of([{} if is_sparse else dense for is_sparse in sparse])
    return {
        **fields,
        "attention": attention,
        "ffn": moe,
        **uniform,
        "qk_norm": dict(fields["norm"]),
        "layers": layers,
    }


def links(cfg: ModelConfig) -> list[Link]:
    out = [Link(("embedding.token.weight",), "model.embed_tokens.weight")]
    for i, spec in enumerate(decoder_specs(cfg)):
        sparse = split_spec(spec.ffn)[0] == "moe"
        out += llama.attention_links(cfg, i) + qk_norm_links(i)
        out += mixtral.moe_links(i) if sparse else llama.mlp_links(i, ffn_bias=False)
    return out + llama.final_links(cfg)


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    specs = decoder_specs(cfg)
    sparse = [split_spec(spec.ffn)[0] == "moe" for spec in specs]
    if not any(sparse):
        # a dense model is closer to any dense family, even one that lacks a feature it uses
        raise Unsupported("ffn without moe layers has no qwen3_moe equivalent", misses=2 * LACKS_A_FEATURE)
    require(llama.decoder_checks(cfg, cfg.positional), "qwen3_moe")
    window = mixtral.window_of(cfg, "qwen3_moe")
    moes = {repr(spec.ffn) for spec, is_sparse in zip(specs, sparse, strict=True) if is_sparse}
    moe_widths = {spec.d_ff for spec, is_sparse in zip(specs, sparse, strict=True) if is_sparse}
    dense = [
        (i, spec) for i, (spec, is_sparse) in enumerate(zip(specs, sparse, strict=True)) if not is_sparse
    ]
    moe_spec = next(spec.ffn for spec, is_sparse in zip(specs, sparse, strict=True) if is_sparse)
    moe = mixtral.moe_keys(moe_spec, "qwen3_moe", moe_layers=sum(sparse))
    dense_widths = {spec.d_ff for _, spec in dense}
    qk_norm, qk_options = split_spec(cfg.qk_norm) if cfg.qk_norm is not None else (None, {})
    _, norm_options = split_spec(cfg.norm)
    require(
        [
            (len(moes) == 1, f"moe layers of {len(moes)} different moe specs (one num_experts, top_k, ...)"),
            (len(moe_widths) == 1, f"moe layers of widths {sorted(moe_widths)} (one moe_intermediate_size)"),
            (
                len(dense_widths) <= 1,
                f"dense layers of widths {sorted(dense_widths)} (one intermediate_size)",
            ),
            *[
                (
                    split_spec(spec.ffn)[0] == "swiglu" and not split_spec(spec.ffn)[1].get("bias"),
                    f"layers[{i}].ffn {spec.ffn!r} (a dense layer's is swiglu, no biases)",
                )
                for i, spec in dense
            ],
            (qk_norm == "rmsnorm" and set(qk_options) <= {"eps"}, f"qk_norm {cfg.qk_norm!r}"),
            (
                qk_options.get("eps", 1e-6) == norm_options.get("eps", 1e-6),
                f"qk_norm eps {qk_options.get('eps', 1e-6)} beside norm eps {norm_options.get('eps', 1e-6)} "
                "(one rms_norm_eps)",
            ),
        ],
        "qwen3_moe",
    )
    hf = llama.decoder_keys(cfg, cfg.positional, activation=moe["hidden_act"])
    return {
        "model_type": "qwen3_moe",
        "architectures": ["Qwen3MoeForCausalLM"],
        **hf,
        "intermediate_size": next(iter(dense_widths), next(iter(moe_widths))),
        "moe_intermediate_size": next(iter(moe_widths)),
        "num_experts": moe["experts"],
        "num_experts_per_tok": moe["num_experts_per_tok"],
        "norm_topk_prob": moe["norm_topk"],
        "router_aux_loss_coef": moe["router_aux_loss_coef"],
        "output_router_logits": False,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [i for i, _ in dense],
        "attention_bias": False,
        "use_sliding_window": window is not None,
        "sliding_window": window,
    }


ARCHITECTURE = register(
    Architecture(
        model_types=("qwen3_moe",),
        kind="causal_lm",
        config=config,
        links=links,
        hf_config=hf_config,
        ignored=(".rotary_emb.inv_freq",),
        per_layer=("ffn", "d_ff"),
        qk_norm="head",
        stored=STORED,
        unlinked=mixtral.UNLINKED,
    )
)
