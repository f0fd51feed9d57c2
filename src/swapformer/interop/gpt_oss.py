"""GPT-OSS (``model_type: gpt_oss``): a Llama-shaped layer (rope, pre-norm RMSNorm, grouped-query attention) with
attention sinks, biases on q, k, v and o, sliding windows on the layers ``layer_types`` names (every other one,
from the first, by default), YaRN rope, and a mixture of experts of its own: a biased router whose top-k logits
are softmaxed, and biased experts whose SwiGLU is clamped. Every piece is a member's option::

    self_attn.sinks (H,)                     ->  attention {name: sdpa | sliding_window, sinks: true}
    attention_bias                           ->  bias
    mlp.router.weight, .bias                 ->  ffn {name: moe, router: topk_softmax, router_bias: true}
    mlp.experts.gate_up_proj (E, D, 2F)      ->  ffn {expert: clamped_swiglu, expert_bias: true}: gate_up_proj
                                                 (E, 2F, D), transposed, gate and up columns de-interleaved
    mlp.experts.down_proj (E, F, D)          ->  down_proj (E, D, F), transposed

transformers keeps the experts' gate and up columns interleaved (``gate_up[..., ::2]``, ``gate_up[..., 1::2]``)
in memory and in ``save_pretrained``'s files alike; ours are ``[gate; up]`` rows as Mixtral's (a link's
``interleaved``). ``swiglu_alpha`` and ``swiglu_limit`` are ``clamped_swiglu``'s constants (1.702 and 7.0), and
another value is refused. ``hidden_act`` is read by no GPT-OSS module. The balance loss reads as Mixtral's
(:mod:`swapformer.interop.mixtral`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swapformer.components.ffn.moe import CLAMPED_SWIGLU_ALPHA, CLAMPED_SWIGLU_LIMIT
from swapformer.config import ModelConfig
from swapformer.interop import gemma2, llama, mixtral
from swapformer.interop.core import LACKS_A_FEATURE, Architecture, Link, Unsupported, register, require
from swapformer.interop.layers import decoder_specs, layers_of
from swapformer.layer_specs import LayerSpec
from swapformer.registry import split_spec

DEFAULTS = {
    "vocab_size": 201088,
    "hidden_size": 2880,
    "intermediate_size": 2880,
    "head_dim": 64,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "num_hidden_layers": 36,
    "num_local_experts": 128,
    "num_experts_per_tok": 4,
    "sliding_window": 128,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_theta": 150000.0,
    "router_aux_loss_coef": 0.001,
    "swiglu_alpha": CLAMPED_SWIGLU_ALPHA,
    "swiglu_limit": CLAMPED_SWIGLU_LIMIT,
    "attention_bias": True,
    "tie_word_embeddings": False,
}
"""GptOssConfig's defaults that differ from Llama's, for a ``config.json`` that leaves them out."""

ROPE = {
    "rope_type": "yarn",
    "factor": 32.0,
    "beta_fast": 32.0,
    "beta_slow": 1.0,
    "truncate": False,
    "original_max_position_embeddings": 4096,
}
"""GptOssConfig's ``rope_parameters`` when a ``config.json`` has none (the base is ``rope_theta``, 150000)."""


def config(hf: Mapping[str, Any]) -> dict[str, Any]:
    hf = {**DEFAULTS, **hf}
    if not (hf.get("rope_parameters") or hf.get("rope_scaling")):  # transformers 4 wrote rope_scaling
        hf["rope_parameters"] = ROPE
    for key, ours in (("swiglu_alpha", CLAMPED_SWIGLU_ALPHA), ("swiglu_limit", CLAMPED_SWIGLU_LIMIT)):
        if hf[key] != ours:
            raise Unsupported(
                f"{key}={hf[key]} has no swapformer equivalent: the moe expert clamped_swiglu is GPT-OSS's with "
                f"swiglu_alpha {CLAMPED_SWIGLU_ALPHA} and swiglu_limit {CLAMPED_SWIGLU_LIMIT}"
            )
    fields = llama.config(hf)
    layers = hf["num_hidden_layers"]
    changes = llama.sliding_changes(gemma2.layer_types(hf), hf.get("sliding_window"), "gpt_oss")
    for change in changes:
        if "attention" in change:
            change["attention"]["sinks"] = True
    uniform, per_layer = layers_of(changes)
    moe = {
        "name": "moe",
        "experts": int(hf["num_local_experts"]),
        "top_k": int(hf["num_experts_per_tok"]),
        "expert": "clamped_swiglu",
        "router": "topk_softmax",
        "router_bias": True,
        "expert_bias": True,
        "aux_loss": float(hf.get("router_aux_loss_coef") or 0.0) / max(layers, 1),
        "z_loss": 0.0,
    }
    attention = {"name": "sdpa", "sinks": True}
    return {**fields, "attention": attention, "ffn": moe, "qkv_bias": None, **uniform, "layers": per_layer}


def sinks_key(spec: LayerSpec, layer: int) -> str:
    """Our sink logits of decoder layer ``layer``: the kernel's, or the inner kernel's of a ``sliding_window``."""
    kernel = "kernel.kernel" if split_spec(spec.attention)[0] == "sliding_window" else "kernel"
    return f"decoder.layers.{layer}.self_attention.sublayer.{kernel}.sinks"


def expert_links(layer: int) -> list[Link]:
    """The biased router and experts of decoder layer ``layer``, as transformers' ``GptOssMLP`` names them."""
    ours, theirs = f"decoder.layers.{layer}.feed_forward.sublayer", f"model.layers.{layer}.mlp"
    return [
        Link((f"{ours}.router.weight",), f"{theirs}.router.weight"),
        Link((f"{ours}.router.bias",), f"{theirs}.router.bias"),
        Link((f"{ours}.gate_up_proj",), f"{theirs}.experts.gate_up_proj", transpose=True, interleaved=True),
        Link((f"{ours}.gate_up_bias",), f"{theirs}.experts.gate_up_proj_bias", interleaved=True),
        Link((f"{ours}.down_proj",), f"{theirs}.experts.down_proj", transpose=True),
        Link((f"{ours}.down_bias",), f"{theirs}.experts.down_proj_bias"),
    ]


def links(cfg: ModelConfig) -> list[Link]:
    out = [Link(("embedding.token.weight",), "model.embed_tokens.weight")]
    for i, spec in enumerate(decoder_specs(cfg)):
        out += llama.attention_links(cfg, i)
        out += [Link((sinks_key(spec, i),), f"model.layers.{i}.self_attn.sinks"), *expert_links(i)]
    return out + llama.final_links(cfg)


def moe_keys(ffn: Any, *, layers: int) -> dict[str, Any]:
    """``num_local_experts``, ``num_experts_per_tok`` and ``router_aux_loss_coef`` of our ``moe`` spec ``ffn``.

    Raises:
        Unsupported: the first option GPT-OSS's mixture cannot express.
    """
    name, options = split_spec(ffn)
    if name != "moe":
        raise Unsupported(
            f"ffn {ffn!r} has no gpt_oss equivalent (a mixture of experts: moe)", 2 * LACKS_A_FEATURE
        )
    router, expert = options.get("router", "softmax"), options.get("expert", "swiglu")
    require(
        [
            (expert == "clamped_swiglu", f"moe expert {expert!r} (clamped_swiglu)"),
            (router == "topk_softmax", f"moe router {router!r} (topk_softmax)"),
            (
                options.get("router_bias") in (None, True),
                "moe router_bias: false (GPT-OSS's router is biased)",
            ),
            (options.get("expert_bias") is True, "moe expert_bias: false (GPT-OSS's experts are biased)"),
            (not options.get("shared_experts", 0), "moe shared_experts"),
            (options.get("routed_scaling", 1.0) == 1.0, "moe routed_scaling"),
            (options.get("groups", 1) == 1, "moe groups"),
            (not options.get("balance_rate", 0.0), "moe balance_rate (a selection bias)"),
        ],
        "gpt_oss",
    )
    return {
        "num_local_experts": options.get("experts", 8),
        "num_experts_per_tok": options.get("top_k", 2),
        # 12 digits: the coefficient an import divided by the layers comes back as written
        "router_aux_loss_coef": float(f"{options.get('aux_loss', 0.01) * layers:.12g}"),
    }


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    moe = moe_keys(cfg.ffn, layers=cfg.num_layers)  # first: a dense model is far from gpt_oss
    require(llama.decoder_checks(cfg, cfg.positional), "gpt_oss")
    specs = decoder_specs(cfg)
    types, window = llama.layer_windows(specs)
    qkv_bias = cfg.bias if cfg.qkv_bias is None else cfg.qkv_bias
    require(
        [
            *[
                (
                    split_spec(spec.attention)[1].get("sinks") is True,
                    f"attention {spec.attention!r} of layer {i} without sinks (GPT-OSS attends with sinks on "
                    "every layer: sinks: true)",
                )
                for i, spec in enumerate(specs)
            ],
            (qkv_bias == cfg.bias, f"qkv_bias={cfg.qkv_bias} beside bias={cfg.bias} (one attention_bias)"),
        ],
        "gpt_oss",
    )
    return {
        "model_type": "gpt_oss",
        "architectures": ["GptOssForCausalLM"],
        **llama.decoder_keys(cfg, cfg.positional, activation="silu"),
        **moe,
        "output_router_logits": False,
        "swiglu_alpha": CLAMPED_SWIGLU_ALPHA,
        "swiglu_limit": CLAMPED_SWIGLU_LIMIT,
        "attention_bias": cfg.bias,
        "layer_types": types,
        "sliding_window": window,
    }


ARCHITECTURE = register(
    Architecture(
        model_types=("gpt_oss",),
        kind="causal_lm",
        config=config,
        links=links,
        hf_config=hf_config,
        ignored=(".rotary_emb.inv_freq",),
        per_layer=("attention",),
        sinks=True,
        unlinked=mixtral.UNLINKED,
    )
)
