"""BERT and RoBERTa masked LMs (``model_type: bert | roberta``): post-norm LayerNorm, biases everywhere, learned
positions, a token-type table, a LayerNorm on the embedding sum and an MLM head of its own::

    ids ─▶ word + token type (row 0 unless given) + position ─▶ LayerNorm ─▶ [post-norm layer × N]
        ─▶ dense ─▶ activation ─▶ LayerNorm ─▶ decoder (tied to the words) + bias ─▶ logits

- BERT: positions from row 0 (``learned``); the head's activation is ``hidden_act``, the FFN's
  (``lm_head_transform``).
- RoBERTa: positions from row ``pad_token_id + 1`` (``learned`` with ``offset: pad_token_id + 1``, the table has
  ``max_position_embeddings`` rows, so ``max_seq_len`` is that less the offset); the head's activation is always
  exact GELU.

swapformer numbers a row's positions from its first real token; transformers numbers BERT's from the row's first
slot (they agree for right padding, BERT's own) and RoBERTa's by its ids that are not the padding id (they agree
for padding on either side, a padding id inside the real text aside).

Every ``layer_norm_eps`` is our ``norm``'s ``eps``; ``hidden_dropout_prob`` our ``dropout``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
from swapformer.registry import split_spec

HEAD_ACTIVATION = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
"""Hugging Face ``hidden_act`` -> our ``lm_head_transform`` (BERT's head uses the FFN's activation)."""
NAMES = {"bert": "BERT", "roberta": "RoBERTa"}
ATTENTION_PAIRS = [("q_proj", "attention.self.query"), ("k_proj", "attention.self.key")]
ATTENTION_PAIRS += [("v_proj", "attention.self.value"), ("out_proj", "attention.output.dense")]


def config(hf: Mapping[str, Any]) -> dict[str, Any]:
    model_type = hf["model_type"]
    for key, what in (("is_decoder", "a causal decoder"), ("add_cross_attention", "cross-attention")):
        if hf.get(key):
            raise Unsupported(f"{key}: true ({what}) has no swapformer masked_lm equivalent")
    position_type = hf.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise Unsupported(
            f"position_embedding_type {position_type!r} has no swapformer equivalent (only 'absolute')"
        )
    activation = hf.get("hidden_act", "gelu")
    if activation not in HEAD_ACTIVATION:
        raise Unsupported(
            f"hidden_act {activation!r} has no swapformer member (known: {', '.join(HEAD_ACTIVATION)})"
        )
    roberta = model_type == "roberta"
    pad = hf.get("pad_token_id", 1 if roberta else 0)
    offset = pad + 1 if roberta else 0
    positions = hf.get("max_position_embeddings", 514 if roberta else 512)
    if positions <= offset:
        raise Unsupported(
            f"max_position_embeddings={positions} leaves no position after RoBERTa's offset pad_token_id + 1"
        )
    eps = hf.get("layer_norm_eps", 1e-12)
    return {
        "vocab_size": hf.get("vocab_size", 50265 if roberta else 30522),
        "d_model": hf.get("hidden_size", 768),
        "num_heads": hf.get("num_attention_heads", 12),
        "num_layers": hf.get("num_hidden_layers", 12),
        "d_ff": hf.get("intermediate_size", 3072),
        "max_seq_len": positions - offset,
        "dropout": hf.get("hidden_dropout_prob", 0.1),
        "attention": "sdpa",
        "positional": {"name": "learned", "offset": offset} if offset else "learned",
        "norm": {"name": "layernorm", "eps": eps},
        "placement": "post",
        "final_norm": False,
        "ffn": ffn_spec(activation, gated=False, bias=True),
        "bias": True,
        "embedding_norm": True,
        "token_types": hf.get("type_vocab_size", 2),
        "lm_head_transform": "gelu" if roberta else HEAD_ACTIVATION[activation],
        "lm_head_bias": True,
        "tie_embeddings": hf.get("tie_word_embeddings", True),
        "pad_token_id": pad,
        "bos_token_id": hf.get("bos_token_id", 0 if roberta else None),
        "eos_token_id": _first(hf.get("eos_token_id", 2 if roberta else None)),
    }


def _first(value: Any) -> int | None:
    return value[0] if isinstance(value, list) and value else value


def _links(cfg: ModelConfig, model_type: str) -> list[Link]:
    base, embeddings = model_type, f"{model_type}.embeddings"
    out = [
        Link(("embedding.token.weight",), f"{embeddings}.word_embeddings.weight"),
        Link(("embedding.token_type.weight",), f"{embeddings}.token_type_embeddings.weight"),
        Link(("positional.table.weight",), f"{embeddings}.position_embeddings.weight"),
        *norm_links("embedding.norm", f"{embeddings}.LayerNorm", bias=True),
    ]
    for i in range(cfg.num_layers):
        ours, theirs = f"encoder.layers.{i}", f"{base}.encoder.layer.{i}"
        out += layer_links(theirs, f"{ours}.self_attention.sublayer", ATTENTION_PAIRS, bias=True)
        out += norm_links(f"{ours}.self_attention.norm", f"{theirs}.attention.output.LayerNorm", bias=True)
        ffn_pairs = [("linear1", "intermediate.dense"), ("linear2", "output.dense")]
        out += layer_links(theirs, f"{ours}.feed_forward.sublayer", ffn_pairs, bias=True)
        out += norm_links(f"{ours}.feed_forward.norm", f"{theirs}.output.LayerNorm", bias=True)
    if model_type == "bert":
        head, dense, norm = (
            "cls.predictions",
            "cls.predictions.transform.dense",
            "cls.predictions.transform.LayerNorm",
        )
    else:
        head, dense, norm = "lm_head", "lm_head.dense", "lm_head.layer_norm"
    out += [Link(("head_transform.dense.weight",), f"{dense}.weight")]
    out += [Link(("head_transform.dense.bias",), f"{dense}.bias")]
    out += norm_links("head_transform.norm", norm, bias=True)
    out.append(Link(("lm_head.bias",), f"{head}.bias"))
    if not cfg.tie_embeddings:  # transformers 5 then unties the decoder's bias too, and adds that one
        out.append(Link(("lm_head.weight",), f"{head}.decoder.weight"))
        out.append(Link(("lm_head.bias",), f"{head}.decoder.bias"))  # read last: it wins
    return out


def bert_links(cfg: ModelConfig) -> list[Link]:
    return _links(cfg, "bert")


def roberta_links(cfg: ModelConfig) -> list[Link]:
    return _links(cfg, "roberta")


def _hf_config(cfg: ModelConfig, model_type: str) -> dict[str, Any]:
    name = NAMES[model_type]
    roberta = model_type == "roberta"
    if roberta and cfg.pad_token_id is None:
        raise Unsupported(
            "pad_token_id: null has no RoBERTa equivalent (its positions start at pad_token_id + 1)"
        )
    offset = cfg.pad_token_id + 1 if roberta else 0
    norm, norm_options = split_spec(cfg.norm)
    positional, positional_options = split_spec(cfg.positional)
    at = positional_options.get("offset", 0)
    rows = f"from row pad_token_id + 1 = {offset}" if roberta else "from row 0"
    checks = [
        (
            positional == "learned" and at == offset,
            f"positional {cfg.positional!r} ({name} has learned positions {rows}: "
            f"{{name: learned, offset: {offset}}})"
            if roberta
            else f"positional {cfg.positional!r} ({name} has learned positions {rows})",
        ),
        (norm == "layernorm" and set(norm_options) <= {"eps"}, f"norm {cfg.norm!r} ({name} has layernorm)"),
        placement_requirement(cfg, "post"),
        (cfg.component_name("attention") in ("sdpa", "math"), f"attention {cfg.attention!r}"),
        (cfg.kv_heads == cfg.num_heads, f"num_kv_heads={cfg.num_kv_heads}"),
        (cfg.head_dim in (None, cfg.d_model // cfg.num_heads), f"head_dim={cfg.head_dim}"),
        (cfg.attention_scale is None, f"attention_scale={cfg.attention_scale}"),
        (cfg.bias and cfg.qkv_bias in (None, True), "attention without biases"),
        (cfg.embedding_norm, "embedding_norm: false (the LayerNorm on the embedding sum)"),
        (not cfg.scale_embeddings, "scale_embeddings: true"),
        (cfg.token_types >= 1, "token_types: 0 (the token-type table: token_types 1 or more)"),
        (cfg.lm_head_bias, "lm_head_bias: false (the MLM head's bias)"),
        (
            cfg.lm_head_transform is not None,
            "lm_head_transform: null (the MLM head's dense, activation, norm)",
        ),
    ]
    require(checks, name)
    activation, gated, bias = activation_of(cfg.ffn)
    if gated or not bias:
        raise Unsupported(f"ffn {cfg.ffn!r} has no {name} equivalent (two linear layers with biases)")
    head = "gelu" if roberta else HEAD_ACTIVATION.get(activation)
    if cfg.lm_head_transform != head:
        raise Unsupported(
            f"lm_head_transform {cfg.lm_head_transform!r} has no {name} equivalent ({name}'s head uses "
            + ("exact GELU: gelu)" if roberta else f"the FFN's activation: {head})")
        )
    return {
        "model_type": model_type,
        "architectures": ["RobertaForMaskedLM" if roberta else "BertForMaskedLM"],
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_attention_heads": cfg.num_heads,
        "num_hidden_layers": cfg.num_layers,
        "intermediate_size": cfg.d_ff,
        "hidden_act": activation,
        "max_position_embeddings": cfg.max_seq_len + at,
        "type_vocab_size": cfg.token_types,
        "layer_norm_eps": norm_options.get("eps", 1e-5),
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.dropout,
        "tie_word_embeddings": cfg.tie_embeddings,
        "pad_token_id": cfg.pad_token_id,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
    }


def bert_config(cfg: ModelConfig) -> dict[str, Any]:
    return _hf_config(cfg, "bert")


def roberta_config(cfg: ModelConfig) -> dict[str, Any]:
    return _hf_config(cfg, "roberta")


# the pooler and next-sentence head of a pre-training checkpoint (not a masked LM's), the decoder's tied copies,
# and the position-id and token-type-id buffers of older checkpoints
IGNORED = (
    "pooler.dense.weight",
    "pooler.dense.bias",
    "cls.seq_relationship.weight",
    "cls.seq_relationship.bias",
    "decoder.weight",
    "decoder.bias",
    "embeddings.position_ids",
    "embeddings.token_type_ids",
)
BERT = register(
    Architecture(
        model_types=("bert",),
        kind="masked_lm",
        config=config,
        links=bert_links,
        hf_config=bert_config,
        ignored=IGNORED,
    )
)
ROBERTA = register(
    Architecture(
        model_types=("roberta",),
        kind="masked_lm",
        config=config,
        links=roberta_links,
        hf_config=roberta_config,
        ignored=IGNORED,
    )
)
