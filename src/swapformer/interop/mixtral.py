"""Mixtral (``model_type: mixtral``): Mistral's layer (rope, pre-norm RMSNorm, grouped-query attention, a sliding
window when ``sliding_window`` is set) with a mixture of experts in place of the FFN: our ``moe`` member with
``num_local_experts`` SwiGLU experts of width ``intermediate_size`` and a softmax router whose
``num_experts_per_tok`` best weights are renormalized to sum to one::

    mlp.gate.weight (E, D)             ->  feed_forward.sublayer.router.weight
    mlp.experts.gate_up_proj (E, 2F, D) ->  feed_forward.sublayer.gate_up_proj      (stored per expert: w1, w3)
    mlp.experts.down_proj (E, D, F)     ->  feed_forward.sublayer.down_proj         (stored per expert: w2)

The balance loss. transformers adds ``router_aux_loss_coef`` times one balance loss of every layer's router
statistics pooled, and only when ``output_router_logits`` is true (false in Mixtral's and Qwen3-MoE's configs: their
fine-tuning has none by default). Ours is on in training, as the model was pretrained, and each MoE layer adds its
own loss: an import weighs each by ``router_aux_loss_coef / (MoE layers)``, so the sum is the size of the pooled
loss and each router's gradient as strong as there; an export writes ``aux_loss x (MoE layers)``. transformers
has no z-loss: an import sets ``z_loss: 0``, and an export leaves a model's z-loss (a training setting) out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swapformer.config import ModelConfig
from swapformer.interop import llama
from swapformer.interop.core import (
    LACKS_A_FEATURE,
    Architecture,
    Link,
    Unsupported,
    ffn_spec,
    register,
    require,
)
from swapformer.interop.experts import Stored
from swapformer.registry import split_spec

DEFAULTS = {
    "intermediate_size": 14336,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-5,
    "rope_theta": 1e6,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "router_aux_loss_coef": 0.001,
    "router_jitter_noise": 0.0,
    "sliding_window": None,
    "tie_word_embeddings": False,
}
"""MixtralConfig's defaults that differ from Llama's, for a ``config.json`` that leaves them out."""

STORED = (
    Stored("mlp.gate.weight", ("block_sparse_moe.gate.weight",)),
    Stored(
        "mlp.experts.gate_up_proj",
        ("block_sparse_moe.experts.{e}.w1.weight", "block_sparse_moe.experts.{e}.w3.weight"),
    ),
    Stored("mlp.experts.down_proj", ("block_sparse_moe.experts.{e}.w2.weight",)),
)
"""Mixtral checkpoints' names (``block_sparse_moe``, experts one by one) of transformers 5's stacked tensors."""

UNLINKED = ("feed_forward.sublayer.selection_bias", "feed_forward.sublayer.load")
"""The ``moe`` member's state no Hugging Face tensor holds: a selection bias (zero: these routers have none)
and the load counts of training."""

EXPERT_ACTIVATIONS = {"swiglu": "silu", "geglu": "gelu"}
"""Our gated expert kinds and the Hugging Face activation of their gate."""


def moe_spec(hf: Mapping[str, Any], *, experts: int, norm_topk: bool, moe_layers: int) -> dict[str, Any]:
    """Our ``moe`` spec of a Hugging Face softmax-routed MoE of gated experts (Mixtral's, Qwen3-MoE's).

    Raises:
        Unsupported: an activation our experts do not offer, or router jitter.
    """
    activation = hf.get("hidden_act", "silu")
    expert = ffn_spec(activation, gated=True, bias=False)
    if expert["name"] not in EXPERT_ACTIVATIONS or set(expert) != {"name", "bias"}:
        raise Unsupported(
            f"hidden_act {activation!r} in the experts has no swapformer equivalent (moe experts: silu or gelu gates)"
        )
    jitter = hf.get("router_jitter_noise") or 0.0
    if jitter:
        raise Unsupported(
            f"router_jitter_noise={jitter} (noise on the router's input in training) has no swapformer "
            "equivalent; set it to 0"
        )
    return {
        "name": "moe",
        "experts": int(experts),
        "top_k": int(hf["num_experts_per_tok"]),
        "expert": expert["name"],
        "router": "softmax",
        "norm_topk": bool(norm_topk),
        "aux_loss": float(hf.get("router_aux_loss_coef") or 0.0) / max(moe_layers, 1),
        "z_loss": 0.0,
    }


def moe_keys(ffn: Any, family: str, *, moe_layers: int) -> dict[str, Any]:
    """``num_experts_per_tok``, ``router_aux_loss_coef``, ``hidden_act`` and the moe options a family reads
    (``experts``, ``norm_topk``) of our ``moe`` spec ``ffn``: the inverse of :func:`moe_spec`.

    Raises:
        Unsupported: the first option ``family``'s MoE cannot express.
    """
    name, options = split_spec(ffn)
    if name != "moe":
        raise Unsupported(
            f"ffn {ffn!r} has no {family} equivalent (a mixture of experts: moe)", 2 * LACKS_A_FEATURE
        )
    expert = options.get("expert", "swiglu")
    require(
        [
            (expert in EXPERT_ACTIVATIONS, f"moe expert {expert!r} (swiglu or geglu)"),
            (
                options.get("router", "softmax") == "softmax",
                f"moe router {options.get('router')!r} (softmax)",
            ),
            (not options.get("shared_experts", 0), "moe shared_experts"),
            (options.get("routed_scaling", 1.0) == 1.0, "moe routed_scaling"),
            (options.get("groups", 1) == 1, "moe groups"),
            (not options.get("router_bias") and not options.get("expert_bias"), "moe biases"),
            (not options.get("balance_rate", 0.0), "moe balance_rate (a selection bias)"),
        ],
        family,
    )
    return {
        "experts": options.get("experts", 8),
        "norm_topk": options.get("norm_topk", True),
        "num_experts_per_tok": options.get("top_k", 2),
        # 12 digits: the coefficient an import divided by the layers comes back as written (0.001, not 0.0010000000000000002)
        "router_aux_loss_coef": float(f"{options.get('aux_loss', 0.01) * moe_layers:.12g}"),
        "hidden_act": EXPERT_ACTIVATIONS[expert],
    }


def moe_links(layer: int) -> list[Link]:
    """The router and stacked experts of decoder layer ``layer``, as transformers 5 names them."""
    ours, theirs = f"decoder.layers.{layer}.feed_forward.sublayer", f"model.layers.{layer}.mlp"
    return [
        Link((f"{ours}.router.weight",), f"{theirs}.gate.weight"),
        Link((f"{ours}.gate_up_proj",), f"{theirs}.experts.gate_up_proj"),
        Link((f"{ours}.down_proj",), f"{theirs}.experts.down_proj"),
    ]


def window_of(cfg: ModelConfig, family: str) -> int | None:
    """The one ``sliding_window`` of a model whose every layer attends with ``sdpa`` / ``math`` (None) or one
    ``sliding_window`` kernel.

    Raises:
        Unsupported: another kernel, or attention biases."""
    attention, options = split_spec(cfg.attention)
    qkv_bias = cfg.bias if cfg.qkv_bias is None else cfg.qkv_bias
    require(
        [
            (attention in ("sdpa", "math", "sliding_window"), f"attention {cfg.attention!r}"),
            (not (cfg.bias or qkv_bias), "attention biases"),
        ],
        family,
    )
    return options.get("window", 256) if attention == "sliding_window" else None


def config(hf: Mapping[str, Any]) -> dict[str, Any]:
    hf = {**DEFAULTS, **hf}
    fields = llama.config(hf)
    window = hf.get("sliding_window")
    attention = {"name": "sliding_window", "window": int(window)} if window else "sdpa"
    layers = hf.get("num_hidden_layers", 32)
    ffn = moe_spec(hf, experts=hf["num_local_experts"], norm_topk=True, moe_layers=layers)
    return {**fields, "attention": attention, "ffn": ffn, "bias": False, "qkv_bias": None}


def links(cfg: ModelConfig) -> list[Link]:
    layers = [link for i in range(cfg.num_layers) for link in llama.attention_links(cfg, i) + moe_links(i)]
    return [Link(("embedding.token.weight",), "model.embed_tokens.weight"), *layers, *llama.final_links(cfg)]


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    moe = moe_keys(cfg.ffn, "mixtral", moe_layers=cfg.num_layers)  # first: a dense model is far from mixtral
    require(llama.decoder_checks(cfg, cfg.positional), "mixtral")
    window = window_of(cfg, "mixtral")
    if not moe["norm_topk"]:
        raise Unsupported(
            "moe norm_topk: false has no mixtral equivalent (Mixtral renormalizes the top-k weights)"
        )
    return {
        "model_type": "mixtral",
        "architectures": ["MixtralForCausalLM"],
        **llama.decoder_keys(cfg, cfg.positional, activation=moe["hidden_act"]),
        "num_local_experts": moe["experts"],
        "num_experts_per_tok": moe["num_experts_per_tok"],
        "router_aux_loss_coef": moe["router_aux_loss_coef"],
        "router_jitter_noise": 0.0,
        "output_router_logits": False,
        "sliding_window": window,
    }


ARCHITECTURE = register(
    Architecture(
        model_types=("mixtral",),
        kind="causal_lm",
        config=config,
        links=links,
        hf_config=hf_config,
        ignored=(".rotary_emb.inv_freq",),
        stored=STORED,
        unlinked=UNLINKED,
    )
)
