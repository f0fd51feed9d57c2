"""ModernBERT (``model_type: modernbert``, Warner et al., 2024): a bidirectional masked LM of pre-norm layers
without biases, GeGLU, LayerNorms without shifts, a global layer every few layers and local ones between them,
each type with a rope base of its own.

::

    ids ─▶ tok_embeddings ─▶ norm ─▶ [layer × N] ─▶ final_norm ─▶ head (dense, act, norm) ─▶ decoder ─▶ logits
                                     layer 0 has no attn_norm: the embedding norm has just normalized its input

Each piece and what it is here:

- the embedding norm: ``embedding_norm: true``; layer 0's missing attention norm: ``first_attention_norm: false``;
- the head: ``lm_head_transform: <classifier_activation>`` (its dense layer's bias is ``bias``, which is
  ``attention_bias`` and ``classifier_bias``: a config where those two differ is refused) and the decoder's bias ``lm_head_bias`` (``decoder_bias``), tied to the embedding as ``tie_word_embeddings`` says;
- ``layer_types`` (without them, layer i is global when ``i % global_attn_every_n_layers == 0``): the global
  layers are the uniform config, ``sdpa`` and the ``full_attention`` rope (``global_rope_theta``); the local
  ones override the kernel and the rope::

    local_attention: 8, rope_parameters: {full_attention: {rope_theta: 160000}, sliding_attention: {rope_theta: 1e4}}
    ->  positional: {name: rope, base: 160000.0}
        layers: {pattern: [full, sliding_positional, sliding_positional],
                 types: {full: {}, sliding_positional: {attention: {name: sliding_window, window: 5},
                                                        positional: {name: rope, base: 10000.0}}}}

  ``local_attention`` is the whole window, half of it on each side: key j is seen from query i when
  ``|i - j| <= local_attention // 2``, which is ``sliding_window``'s ``|i - j| < window`` for
  ``window = local_attention // 2 + 1``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swapformer.config import ModelConfig
from swapformer.interop.bert import HEAD_ACTIVATION
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
from swapformer.interop.layers import layers_of
from swapformer.layer_specs import resolve
from swapformer.registry import split_spec

DEFAULTS = {
    "vocab_size": 50368,
    "hidden_size": 768,
    "intermediate_size": 1152,
    "num_hidden_layers": 22,
    "num_attention_heads": 12,
    "hidden_activation": "gelu",
    "max_position_embeddings": 8192,
    "norm_eps": 1e-5,
    "norm_bias": False,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "mlp_bias": False,
    "local_attention": 128,
    "global_attn_every_n_layers": 3,
    "global_rope_theta": 160000.0,
    "local_rope_theta": 10000.0,
    "decoder_bias": True,
    "classifier_bias": False,
    "classifier_activation": "gelu",
    "tie_word_embeddings": True,
    "pad_token_id": 50283,
    "bos_token_id": 50281,
    "eos_token_id": 50282,
}
"""ModernBertConfig's defaults, for a ``config.json`` that leaves them out (``global_attn_every_n_layers`` and the
two rope thetas are the keys of configs before transformers 5)."""

TYPES = {"full_attention": "global_rope_theta", "sliding_attention": "local_rope_theta"}
"""ModernBERT's layer types and the key of each one's rope base in configs before transformers 5."""


def _ropes(hf: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    # transformers 5 writes rope_parameters per layer type; earlier configs global_rope_theta, local_rope_theta
    parameters = hf.get("rope_parameters") or {}
    ropes = {}
    for kind, old_key in TYPES.items():
        rope = {"rope_theta": hf[old_key], **(parameters.get(kind) or {})}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise Unsupported(
                f"rope_parameters.{kind}.rope_type {rope_type!r} is not read for ModernBERT: swapformer reads "
                "its unscaled rope (rope_type: default)"
            )
        ropes[kind] = {"name": "rope", "base": float(rope["rope_theta"])}
    return ropes


def _layer_types(hf: Mapping[str, Any]) -> list[str]:
    depth, every = hf["num_hidden_layers"], hf["global_attn_every_n_layers"]
    types = hf.get("layer_types") or [
        "sliding_attention" if i % every else "full_attention" for i in range(depth)
    ]
    if len(types) != depth:
        raise Unsupported(f"layer_types lists {len(types)} layers but num_hidden_layers is {depth}")
    for i, kind in enumerate(types):
        if kind not in TYPES:
            raise Unsupported(f"layer_types[{i}] {kind!r} has no swapformer equivalent")
    return list(types)


def config(hf: Mapping[str, Any]) -> dict[str, Any]:
    hf = {**DEFAULTS, **hf}
    head_activation = hf["classifier_activation"]
    if head_activation not in HEAD_ACTIVATION:
        raise Unsupported(
            f"classifier_activation {head_activation!r} has no swapformer equivalent; supported: "
            f"{', '.join(HEAD_ACTIVATION)}"
        )
    if bool(hf["classifier_bias"]) != bool(hf["attention_bias"]):
        raise Unsupported(
            f"classifier_bias={hf['classifier_bias']} beside attention_bias={hf['attention_bias']} has no "
            "swapformer equivalent: one switch, bias, gives both their biases"
        )
    ropes = _ropes(hf)
    local = {
        "attention": {"name": "sliding_window", "window": int(hf["local_attention"]) // 2 + 1},
        **(
            {"positional": ropes["sliding_attention"]}
            if ropes["sliding_attention"] != ropes["full_attention"]
            else {}
        ),
    }
    uniform, layers = layers_of([local if kind == "sliding_attention" else {} for kind in _layer_types(hf)])
    return {
        "vocab_size": hf["vocab_size"],
        "d_model": hf["hidden_size"],
        "num_heads": hf["num_attention_heads"],
        "num_layers": hf["num_hidden_layers"],
        "d_ff": hf["intermediate_size"],
        "max_seq_len": hf["max_position_embeddings"],
        "dropout": float(hf["attention_dropout"]),
        "attention": "sdpa",
        "positional": ropes["full_attention"],
        "norm": {"name": "layernorm", "eps": float(hf["norm_eps"]), "bias": bool(hf["norm_bias"])},
        "placement": "pre",
        "final_norm": True,
        "ffn": ffn_spec(hf["hidden_activation"], gated=True, bias=bool(hf["mlp_bias"])),
        "bias": bool(hf["attention_bias"]),
        "embedding_norm": True,
        "first_attention_norm": False,
        "lm_head_transform": HEAD_ACTIVATION[head_activation],
        "lm_head_bias": bool(hf["decoder_bias"]),
        "tie_embeddings": bool(hf["tie_word_embeddings"]),
        "pad_token_id": hf["pad_token_id"],
        "bos_token_id": hf["bos_token_id"],
        "eos_token_id": hf["eos_token_id"],
        **uniform,
        "layers": layers,
    }


def links(cfg: ModelConfig) -> list[Link]:
    _, _, mlp_bias = activation_of(cfg.ffn)
    norm_bias = split_spec(cfg.norm)[1].get("bias", True)
    out = [Link(("embedding.token.weight",), "model.embeddings.tok_embeddings.weight")]
    out += norm_links("embedding.norm", "model.embeddings.norm", bias=norm_bias)
    for i in range(cfg.num_layers):
        ours, theirs = f"encoder.layers.{i}", f"model.layers.{i}"
        attention, ffn = f"{ours}.self_attention.sublayer", f"{ours}.feed_forward.sublayer"
        if i > 0:  # layer 0's attention input is the embedding norm's output
            out += norm_links(f"{ours}.self_attention.norm", f"{theirs}.attn_norm", bias=norm_bias)
        for part in ("weight", "bias") if cfg.bias else ("weight",):  # one fused projection: q, k, v
            out.append(
                Link(tuple(f"{attention}.{p}_proj.{part}" for p in "qkv"), f"{theirs}.attn.Wqkv.{part}")
            )
        out += layer_links(f"{theirs}.attn", attention, [("out_proj", "Wo")], bias=cfg.bias)
        out += norm_links(f"{ours}.feed_forward.norm", f"{theirs}.mlp_norm", bias=norm_bias)
        for part in ("weight", "bias") if mlp_bias else ("weight",):  # Wi: the activated half, then the gate
            out.append(Link((f"{ffn}.gate_proj.{part}", f"{ffn}.up_proj.{part}"), f"{theirs}.mlp.Wi.{part}"))
        out += layer_links(f"{theirs}.mlp", ffn, [("down_proj", "Wo")], bias=mlp_bias)
    out += norm_links("encoder.final_norm", "model.final_norm", bias=norm_bias)
    out += layer_links("head", "head_transform", [("dense", "dense")], bias=cfg.bias)
    out += norm_links("head_transform.norm", "head.norm", bias=norm_bias)
    if not cfg.tie_embeddings:
        out.append(Link(("lm_head.weight",), "decoder.weight"))
    if cfg.lm_head_bias:
        out.append(Link(("lm_head.bias",), "decoder.bias"))
    return out


def _plain_rope(rope: Any) -> bool:
    name, options = split_spec(rope)
    return name == "rope" and set(options) <= {"base"}


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    specs = resolve(cfg, "encoder")
    types, ropes, windows = [], {}, set()
    for i, spec in enumerate(specs):
        name, options = split_spec(spec.attention)
        if name not in ("sdpa", "math", "sliding_window") or set(options) - {"window"}:
            raise Unsupported(f"attention {spec.attention!r} (layer {i})")
        kind = "sliding_attention" if name == "sliding_window" else "full_attention"
        if kind == "sliding_attention":
            windows.add(options.get("window", 256))
        types.append(kind)
        seen = ropes.setdefault(kind, spec.positional)
        if split_spec(seen) != split_spec(spec.positional):
            raise Unsupported(
                f"positional {spec.positional!r} of layer {i} beside {seen!r} on another {kind} layer "
                "(one rope per layer type)"
            )
    full = ropes.get("full_attention", cfg.positional)
    sliding = ropes.get("sliding_attention", full)
    window = min(windows, default=65)
    norm, norm_options = split_spec(cfg.norm)
    activation, gated, mlp_bias = activation_of(cfg.ffn)
    require(
        [
            (len(windows) <= 1, f"sliding windows of {sorted(windows)} in one model (one local_attention)"),
            (
                window >= 2,
                f"sliding_window window={window} (ModernBERT's local_attention sees 1 or more each side)",
            ),
            *[(_plain_rope(rope), f"positional {rope!r}") for rope in (full, sliding)],
            (norm == "layernorm" and set(norm_options) <= {"eps", "bias"}, f"norm {cfg.norm!r}"),
            placement_requirement(cfg, "pre"),
            (gated, f"ffn {cfg.ffn!r} (ModernBERT's is gated: geglu)"),
            (cfg.embedding_norm, "embedding_norm: false (ModernBERT normalizes the embeddings)"),
            (not cfg.first_attention_norm, "first_attention_norm: true (ModernBERT's first layer has none)"),
            (
                cfg.lm_head_transform is not None,
                "lm_head_transform: null (ModernBERT's head is dense, act, norm)",
            ),
            (cfg.qkv_bias in (None, cfg.bias), f"qkv_bias={cfg.qkv_bias} beside bias={cfg.bias}"),
            (cfg.kv_heads == cfg.num_heads, f"num_kv_heads={cfg.num_kv_heads}"),
            (cfg.resolved_head_dim * cfg.num_heads == cfg.d_model, f"head_dim={cfg.head_dim}"),
            (cfg.attention_scale is None, f"attention_scale={cfg.attention_scale}"),
            (not cfg.scale_embeddings, "scale_embeddings"),
        ],
        "modernbert",
    )
    theta = {
        kind: split_spec(rope)[1].get("base", 10000.0) for kind, rope in (("full", full), ("local", sliding))
    }
    head_activation = next(hf for hf, ours in HEAD_ACTIVATION.items() if ours == cfg.lm_head_transform)
    return {
        "model_type": "modernbert",
        "architectures": ["ModernBertForMaskedLM"],
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "hidden_activation": activation,
        "max_position_embeddings": cfg.max_seq_len,
        "norm_eps": norm_options.get("eps", 1e-5),
        "norm_bias": norm_options.get("bias", True),
        "attention_bias": cfg.bias,
        "mlp_bias": mlp_bias,
        "attention_dropout": cfg.dropout,
        "embedding_dropout": cfg.dropout,
        "mlp_dropout": cfg.dropout,
        "layer_types": types,
        "local_attention": 2 * (window - 1),
        "rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": theta["full"]},
            "sliding_attention": {"rope_type": "default", "rope_theta": theta["local"]},
        },
        "classifier_activation": head_activation,
        "classifier_bias": cfg.bias,
        "decoder_bias": cfg.lm_head_bias,
        "tie_word_embeddings": cfg.tie_embeddings,
        "pad_token_id": cfg.pad_token_id,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "cls_token_id": cfg.bos_token_id,
        "sep_token_id": cfg.eos_token_id,
    }


ARCHITECTURE = register(
    Architecture(
        model_types=("modernbert",),
        kind="masked_lm",
        config=config,
        links=links,
        hf_config=hf_config,
        ignored=("decoder.weight",),
        per_layer=("attention", "positional"),
    )
)
