"""Llama, Mistral and Qwen2 (``model_type: llama | mistral | qwen2``): rope, pre-norm RMSNorm, SwiGLU, no biases
(Qwen2: q/k/v biases), grouped-query attention; Mistral's sliding window on every layer, Qwen2's on the layers
``layer_types`` names (as Qwen3's: :func:`qwen_layer_types`); Llama 3.1's and YaRN's rope scaling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swapformer.components.positional.rope_scaling import yarn_attention_factor
from swapformer.config import ModelConfig
from swapformer.interop.core import (
    Architecture,
    Link,
    Unsupported,
    activation_of,
    ffn_spec,
    layer_links,
    norm_links,
    placement_requirement,
    register,
    require,
)
from swapformer.interop.layers import decoder_specs, layers_of
from swapformer.layer_specs import LayerSpec
from swapformer.registry import split_spec

ROPE_TYPES = ("default", "linear", "llama3", "yarn")

YARN_KEYS = {"beta_fast": "beta_fast", "beta_slow": "beta_slow", "attention_factor": "attention_factor"}
"""YaRN's ``rope_parameters`` keys and our rope options of the same meaning (besides factor and the original
context)."""


def _original_context(hf: Mapping[str, Any], parameters: Mapping[str, Any], default: int) -> int:
    # as transformers 5 standardizes it: a top-level original_max_position_embeddings (Phi-3's) wins, then the
    # rope parameters', then max_position_embeddings
    found = hf.get("original_max_position_embeddings") or parameters.get("original_max_position_embeddings")
    return int(found or hf.get("max_position_embeddings", default))


def _yarn(hf: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Our ``yarn`` rope options of Hugging Face's YaRN parameters, read as ``_compute_yarn_parameters`` reads
    them: a null factor is the ratio of the contexts; a null ``attention_factor`` is derived from ``mscale`` and
    ``mscale_all_dim`` when both are set (DeepSeek's form), else left to the factor's default; falsy betas are
    the defaults, 32 and 1."""
    original = _original_context(hf, parameters, 2048)
    factor = parameters.get("factor") or hf.get("max_position_embeddings", 2048) / original
    spec: dict[str, Any] = {"scaling": "yarn", "factor": float(factor), "original_max_seq_len": original}
    attention_factor = parameters.get("attention_factor")
    if attention_factor is None and parameters.get("mscale") and parameters.get("mscale_all_dim"):
        attention_factor = yarn_attention_factor(
            float(factor), parameters["mscale"], parameters["mscale_all_dim"]
        )
    if attention_factor is not None:
        spec["attention_factor"] = float(attention_factor)
    for key in ("beta_fast", "beta_slow"):
        if parameters.get(key):
            spec[key] = float(parameters[key])
    if parameters.get("truncate", True) is False:
        spec["truncate"] = False
    return spec


def _rope(hf: Mapping[str, Any]) -> dict[str, Any]:
    # transformers 5 writes rope_parameters; earlier versions rope_theta and rope_scaling
    parameters = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    base = parameters.get("rope_theta", hf.get("rope_theta", 10000.0))
    rope_type = parameters.get("rope_type", parameters.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise Unsupported(
            f"rope_type {rope_type!r} has no swapformer equivalent; supported: {', '.join(ROPE_TYPES)}"
        )
    partial = parameters.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if partial != 1.0:
        raise Unsupported(
            f"partial_rotary_factor={partial} (rope on part of each head) has no swapformer equivalent: "
            "swapformer's rope turns every feature of a head"
        )
    spec: dict[str, Any] = {"name": "rope", "base": float(base)}
    if rope_type == "yarn":
        return {**spec, **_yarn(hf, parameters)}
    if rope_type != "default":
        spec.update(scaling=rope_type, factor=float(parameters["factor"]))
    if rope_type == "llama3":
        spec.update(
            low_freq_factor=float(parameters["low_freq_factor"]),
            high_freq_factor=float(parameters["high_freq_factor"]),
            original_max_seq_len=_original_context(hf, parameters, 8192),
        )
    return spec


def config(hf: Mapping[str, Any]) -> dict[str, Any]:
    model_type = hf["model_type"]
    d_model, heads = hf.get("hidden_size", 4096), hf.get("num_attention_heads", 32)
    head_dim = hf.get("head_dim") or d_model // heads
    attention: Any = "sdpa"
    window = hf.get("sliding_window")
    if model_type == "mistral" and window:
        attention = {"name": "sliding_window", "window": int(window)}
    bias = bool(hf.get("attention_bias", False))
    fields = {
        "vocab_size": hf.get("vocab_size", 32000),
        "d_model": d_model,
        "num_heads": heads,
        "num_kv_heads": hf.get("num_key_value_heads") or heads,
        "head_dim": None if head_dim * heads == d_model else head_dim,
        "num_layers": hf.get("num_hidden_layers", 32),
        "d_ff": hf.get("intermediate_size", 11008),
        "max_seq_len": hf.get("max_position_embeddings", 2048),
        "dropout": hf.get("attention_dropout", 0.0),
        "attention": attention,
        "positional": _rope(hf),
        "norm": {"name": "rmsnorm", "eps": hf.get("rms_norm_eps", 1e-6)},
        "placement": "pre",
        "final_norm": True,
        "ffn": ffn_spec(hf.get("hidden_act", "silu"), gated=True, bias=bool(hf.get("mlp_bias", False))),
        "bias": bias,
        "qkv_bias": True if model_type == "qwen2" else None,
        "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
        "pad_token_id": hf.get("pad_token_id"),
        "bos_token_id": hf.get("bos_token_id"),
        "eos_token_id": _first(hf.get("eos_token_id")),
    }
    if model_type == "qwen2":
        hf = {**QWEN_WINDOWS, **hf}
        types, window = qwen_layer_types(hf)
        uniform, layers = layers_of(sliding_changes(types, window, "qwen2", fix=qwen_window_fix(hf, "qwen2")))
        fields.update(uniform, layers=layers)
    return fields


QWEN_WINDOWS = {"use_sliding_window": False, "sliding_window": 4096, "max_window_layers": 28}
"""The window keys of ``Qwen2Config`` and ``Qwen3Config`` and their defaults, for a ``config.json`` that leaves
them out."""


def qwen_layer_types(hf: Mapping[str, Any]) -> tuple[list[str], int | None]:
    """Each layer's type and the window of the sliding ones, as ``Qwen2Config`` and ``Qwen3Config`` derive them:
    ``layer_types`` when the config has it; otherwise every layer from ``max_window_layers`` on when
    ``use_sliding_window`` is true (``sliding_window`` is null when it is false)."""
    window = hf["sliding_window"] if hf["use_sliding_window"] else None
    depth = hf.get("num_hidden_layers", 32)
    types = hf.get("layer_types") or [
        "sliding_attention" if window is not None and i >= hf["max_window_layers"] else "full_attention"
        for i in range(depth)
    ]
    if len(types) != depth:
        raise Unsupported(f"layer_types lists {len(types)} layers but num_hidden_layers is {depth}")
    return list(types), window


def qwen_window_fix(hf: Mapping[str, Any], family: str) -> str:
    """What gives sliding layers their window: Qwen2 and Qwen3 keep ``sliding_window`` only with
    ``use_sliding_window: true``."""
    if hf["use_sliding_window"]:
        return "set sliding_window"
    if hf["sliding_window"]:
        return (
            f"set use_sliding_window: true ({family} reads sliding_window {hf['sliding_window']} only then)"
        )
    return "set sliding_window, and use_sliding_window: true"


def _first(value: Any) -> int | None:
    # Llama 3 lists several end ids; the config keeps the first (generate(eos_token_id=[...]) takes them all)
    return value[0] if isinstance(value, list) and value else value


def sliding_changes(
    types: list[str], window: int | None, family: str, *, fix: str = "set sliding_window"
) -> list[dict[str, Any]]:
    """Each layer's overrides of a full-attention config for Hugging Face ``layer_types``: a
    ``sliding_window`` kernel of ``window`` on each ``sliding_attention`` layer.

    Args:
        types: ``layer_types``, one a layer.
        window: the sliding layers' window as the family reads it (None or 0: none).
        family: the ``model_type``, for the message.
        fix: what gives the family's config a window, for the message: ``sliding_window`` alone in most
            families; Qwen3 also reads ``use_sliding_window``.

    Raises:
        Unsupported: a layer type other than full or sliding attention, or sliding layers without a window.
    """
    changes = []
    for i, kind in enumerate(types):
        if kind not in ("full_attention", "sliding_attention"):
            raise Unsupported(f"layer_types[{i}] {kind!r} has no swapformer equivalent")
        if kind == "sliding_attention" and not window:
            raise Unsupported(f"layer_types[{i}] is 'sliding_attention' but {family} has no window: {fix}")
        sliding = kind == "sliding_attention"
        changes.append({"attention": {"name": "sliding_window", "window": int(window)}} if sliding else {})
    return changes


def layer_windows(specs: list[LayerSpec]) -> tuple[list[str], int | None]:
    """Hugging Face ``layer_types`` and the one ``sliding_window`` of layers whose kernel is ``sdpa`` or
    ``math`` (full) or ``sliding_window`` (sliding).

    Raises:
        Unsupported: another kernel, or sliding layers of different windows.
    """
    types, windows = [], set()
    for i, spec in enumerate(specs):
        name, options = split_spec(spec.attention)
        if name not in ("sdpa", "math", "sliding_window"):
            raise Unsupported(f"attention {spec.attention!r} (layer {i})")
        types.append("sliding_attention" if name == "sliding_window" else "full_attention")
        if name == "sliding_window":
            windows.add(options.get("window", 256))
    if len(windows) > 1:
        raise Unsupported(f"sliding windows of {sorted(windows)} in one model (one sliding_window)")
    return types, next(iter(windows), None)


def links(cfg: ModelConfig) -> list[Link]:
    _, _, mlp_bias = activation_of(cfg.ffn)
    return (
        [Link(("embedding.token.weight",), "model.embed_tokens.weight")]
        + [
            link
            for i in range(cfg.num_layers)
            for link in attention_links(cfg, i) + mlp_links(i, ffn_bias=mlp_bias)
        ]
        + final_links(cfg)
    )


def attention_links(cfg: ModelConfig, layer: int) -> list[Link]:
    """Decoder layer ``layer``'s two norms and attention projections, as every Llama-shaped family names them."""
    qkv_bias = cfg.bias if cfg.qkv_bias is None else cfg.qkv_bias
    ours, theirs = f"decoder.layers.{layer}", f"model.layers.{layer}"
    attention = f"{ours}.self_attention.sublayer"
    out = norm_links(f"{ours}.self_attention.norm", f"{theirs}.input_layernorm", bias=False)
    out += norm_links(f"{ours}.feed_forward.norm", f"{theirs}.post_attention_layernorm", bias=False)
    out += layer_links(
        f"{theirs}.self_attn", attention, [(f"{p}_proj", f"{p}_proj") for p in "qkv"], bias=qkv_bias
    )
    return out + layer_links(f"{theirs}.self_attn", attention, [("out_proj", "o_proj")], bias=cfg.bias)


def mlp_links(layer: int, *, ffn_bias: bool) -> list[Link]:
    """Decoder layer ``layer``'s gated FFN (``mlp.gate_proj``, ``up_proj``, ``down_proj``)."""
    pairs = [(name, name) for name in ("gate_proj", "up_proj", "down_proj")]
    ours, theirs = f"decoder.layers.{layer}.feed_forward.sublayer", f"model.layers.{layer}.mlp"
    return layer_links(theirs, ours, pairs, bias=ffn_bias)


def final_links(cfg: ModelConfig) -> list[Link]:
    """The final norm, and the output layer when it is not tied to the embedding."""
    out = norm_links("decoder.final_norm", "model.norm", bias=False)
    return out + ([] if cfg.tie_embeddings else [Link(("lm_head.weight",), "lm_head.weight")])


def rope_parameters(positional: Any) -> dict[str, Any]:
    """``rope_parameters`` of a ``rope`` spec (its scaling included)."""
    _, options = split_spec(positional)
    parameters: dict[str, Any] = {
        "rope_type": options.get("scaling") or "default",
        "rope_theta": options.get("base", 10000.0),
    }
    if "factor" in options:
        parameters["factor"] = options["factor"]
    if options.get("scaling") == "llama3":
        parameters.update(
            low_freq_factor=options.get("low_freq_factor", 1.0),
            high_freq_factor=options.get("high_freq_factor", 4.0),
            original_max_position_embeddings=options.get("original_max_seq_len", 8192),
        )
    if options.get("scaling") == "yarn":
        parameters["original_max_position_embeddings"] = options.get("original_max_seq_len", 8192)
        parameters["factor"] = options.get("factor", 1.0)
        parameters.update({theirs: options[ours] for theirs, ours in YARN_KEYS.items() if ours in options})
        if options.get("truncate") is False:
            parameters["truncate"] = False
    return parameters


def decoder_checks(cfg: ModelConfig, positional: Any) -> list[tuple[bool, str]]:
    """What every Llama-shaped family needs besides its attention: ``positional`` (the rope every rotating
    layer uses) a ``rope``, RMSNorm before each sublayer and at the end, the plain 1 / sqrt(E) scale."""
    rope, rope_options = split_spec(positional)
    norm, norm_options = split_spec(cfg.norm)
    return [
        (
            rope == "rope" and rope_options.get("scaling") in (None, "linear", "llama3", "yarn"),
            f"positional {positional!r}",
        ),
        (norm == "rmsnorm" and set(norm_options) <= {"eps"}, f"norm {cfg.norm!r}"),
        placement_requirement(cfg, "pre"),
        (cfg.attention_scale is None, f"attention_scale={cfg.attention_scale}"),
        (
            not (cfg.embedding_norm or cfg.scale_embeddings or cfg.lm_head_bias),
            "embedding_norm, scale_embeddings or lm_head_bias",
        ),
    ]


def decoder_hf_config(cfg: ModelConfig, positional: Any, family: str) -> tuple[dict[str, Any], bool]:
    """The ``config.json`` keys every Llama-shaped family writes (sizes, rope, norm, special ids), and whether
    the FFN has biases; ``positional`` is the rope the rotating layers use.

    Raises:
        Unsupported: what ``family`` cannot express among :func:`decoder_checks` and the FFN.
    """
    require(decoder_checks(cfg, positional), family)
    _, gated, mlp_bias = activation_of(cfg.ffn)
    if not gated:
        raise Unsupported(f"ffn {cfg.ffn!r} has no {family} equivalent (a gated FFN: swiglu or geglu)")
    return decoder_keys(cfg, positional), mlp_bias


def decoder_keys(cfg: ModelConfig, positional: Any, activation: str | None = None) -> dict[str, Any]:
    """The ``config.json`` keys every Llama-shaped family writes (sizes, rope, activation, norm eps, special
    ids), unchecked: :func:`decoder_hf_config` checks the components first, a family of other norms its own.
    ``activation``: the Hugging Face activation, when the FFN is not one of ours it names (an MoE's experts')."""
    activation = activation or activation_of(cfg.ffn)[0]
    _, norm_options = split_spec(cfg.norm)
    parameters = rope_parameters(positional)
    return {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.resolved_head_dim,
        "num_hidden_layers": cfg.num_layers,
        "intermediate_size": cfg.d_ff,
        "max_position_embeddings": cfg.max_seq_len,
        "hidden_act": activation,
        "rms_norm_eps": norm_options.get("eps", 1e-6),
        "rope_parameters": parameters,
        "rope_theta": parameters["rope_theta"],
        "attention_dropout": cfg.dropout,
        "tie_word_embeddings": cfg.tie_embeddings,
        "pad_token_id": cfg.pad_token_id,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
    }


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    qkv_bias = cfg.bias if cfg.qkv_bias is None else cfg.qkv_bias
    family = "Llama, Mistral or Qwen2"
    require(decoder_checks(cfg, cfg.positional)[:3], family)  # the components first, as before
    attention = split_spec(cfg.attention)[0]
    require([(attention in ("sdpa", "math", "sliding_window"), f"attention {cfg.attention!r}")], family)
    types, window = layer_windows(decoder_specs(cfg))
    sliding = [i for i, kind in enumerate(types) if kind == "sliding_attention"]
    # Qwen2 (q/k/v biases alone) slides the layers layer_types names; Mistral every layer, Llama none
    model_type = "qwen2" if qkv_bias and not cfg.bias else "mistral" if sliding else "llama"
    require(
        [
            (not (model_type == "mistral" and cfg.bias), "attention biases with a sliding window"),
            (
                model_type == "qwen2" or len(sliding) in (0, cfg.num_layers),
                f"a sliding window on layers {sliding} only (Mistral slides every layer; Qwen2 with q/k/v "
                "biases alone, or SmolLM3, some)",
            ),
        ],
        family,
    )
    hf, mlp_bias = decoder_hf_config(cfg, cfg.positional, family)
    hf = {
        "model_type": model_type,
        "architectures": [
            {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}[
                model_type
            ]
        ],
        **hf,
    }
    if model_type == "llama":
        hf.update(attention_bias=cfg.bias, mlp_bias=mlp_bias)
    elif mlp_bias:
        raise Unsupported(f"ffn biases have no {model_type} equivalent")
    if model_type == "mistral":
        hf["sliding_window"] = window
    if model_type == "qwen2":
        hf.update(
            use_sliding_window=bool(sliding),
            sliding_window=window,
            max_window_layers=sliding[0] if sliding else cfg.num_layers,
            layer_types=types,
        )
    return hf


ARCHITECTURE = register(
    Architecture(
        model_types=("llama", "mistral", "qwen2"),
        kind="causal_lm",
        config=config,
        links=links,
        hf_config=hf_config,
        ignored=(".rotary_emb.inv_freq",),
        per_layer=("attention",),
    )
)
