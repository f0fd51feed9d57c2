"""T5 (``model_type: t5``), v1.0 and v1.1: a relative position bias per stack (``t5_relative``, in layer 0 of
Hugging Face's stacks), no 1/sqrt(E) scaling, pre-norm RMSNorm with a final norm per stack, no biases, heads of
``d_kv`` independent of D / H, a ReLU MLP (v1.0) or gated GELU (v1.1), one embedding for both sides.

transformers 5 forces ``tie_word_embeddings: true`` and keeps what the config said in ``scale_decoder_outputs``
(the decoder output times D^-0.5 before the LM head, as T5 v1.0 did); that scale is folded into the decoder's final
norm, which directly precedes the head. An output layer of its own is read from the checkpoint (v1.1), as
transformers 5 does.
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
    placement_requirement,
    register,
    require,
    seq2seq_sides,
)
from swapformer.registry import split_spec


def _ffn(feed_forward_proj: str) -> dict[str, Any]:
    gated, _, activation = feed_forward_proj.rpartition("-")
    if gated not in ("", "gated"):
        raise Unsupported(f"feed_forward_proj {feed_forward_proj!r} is not 'ACT' or 'gated-ACT'")
    if feed_forward_proj == "gated-gelu":  # transformers' alias for T5 v1.1: the tanh GELU
        activation = "gelu_new"
    return ffn_spec(activation, gated=bool(gated), bias=False)


def scales_decoder_outputs(hf: Mapping[str, Any]) -> bool:
    """Whether the decoder output is multiplied by D^-0.5 before the LM head: transformers 5's
    ``scale_decoder_outputs``, else (a config written before it) the tie flag it is derived from."""
    return bool(hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True) is not False))


def config(hf: Mapping[str, Any]) -> dict[str, Any]:
    d_model, heads, d_kv = hf.get("d_model", 512), hf.get("num_heads", 8), hf.get("d_kv", 64)
    layers = hf.get("num_layers", 6)
    decoder_layers = hf.get("num_decoder_layers") or layers
    return {
        "vocab_size": hf.get("vocab_size", 32128),
        "d_model": d_model,
        "num_heads": heads,
        "head_dim": None if d_kv * heads == d_model else d_kv,
        "num_layers": layers,
        "num_decoder_layers": None if decoder_layers == layers else decoder_layers,
        "d_ff": hf.get("d_ff", 2048),
        "dropout": hf.get("dropout_rate", 0.1),
        "attention": "sdpa",
        "positional": {
            "name": "t5_relative",
            "num_buckets": hf.get("relative_attention_num_buckets", 32),
            "max_distance": hf.get("relative_attention_max_distance", 128),
        },
        "norm": {"name": "rmsnorm", "eps": hf.get("layer_norm_epsilon", 1e-6)},
        "placement": "pre",
        "final_norm": True,
        "ffn": _ffn(hf.get("feed_forward_proj", "relu")),
        "bias": False,
        "attention_scale": 1.0,
        "share_embeddings": True,
        "tie_embeddings": True,  # transformers 5 forces it; a checkpoint with its own lm_head unties (core)
        "pad_token_id": hf.get("pad_token_id", 0),
        "bos_token_id": hf.get("bos_token_id"),
        "eos_token_id": _first(hf.get("eos_token_id", 1)),
        "decoder_start_token_id": hf.get("decoder_start_token_id"),
    }


def _first(value: Any) -> int | None:
    return value[0] if isinstance(value, list) and value else value


def _attention(prefix: str, ours: str) -> list[Link]:
    return layer_links(
        prefix, ours, [("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v"), ("out_proj", "o")], bias=False
    )


def links(cfg: ModelConfig, hf: Mapping[str, Any]) -> list[Link]:
    _, gated, _ = activation_of(cfg.ffn)
    ffn_pairs = (
        [("gate_proj", "wi_0"), ("up_proj", "wi_1"), ("down_proj", "wo")]
        if gated
        else [("linear1", "wi"), ("linear2", "wo")]
    )
    out = [
        Link(("tgt_embedding.token.weight",), "shared.weight"),
        Link(
            ("src_positional.table.weight",),
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        ),
        Link(
            ("tgt_positional.table.weight",),
            "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        ),
    ]
    for side, depth, cross in seq2seq_sides(cfg):
        for i in range(depth):
            ours, theirs = f"{side}.layers.{i}", f"{side}.block.{i}.layer"
            steps = [("self_attention", f"{theirs}.0")]
            if cross:
                steps.append(("cross_attention", f"{theirs}.1"))
            for step, layer in steps:
                name = "EncDecAttention" if step == "cross_attention" else "SelfAttention"
                out += _attention(f"{layer}.{name}", f"{ours}.{step}.sublayer")
                out.append(Link((f"{ours}.{step}.norm.weight",), f"{layer}.layer_norm.weight"))
            ffn = f"{theirs}.{len(steps)}"
            out += layer_links(
                f"{ffn}.DenseReluDense", f"{ours}.feed_forward.sublayer", ffn_pairs, bias=False
            )
            out.append(Link((f"{ours}.feed_forward.norm.weight",), f"{ffn}.layer_norm.weight"))
    out.append(Link(("encoder.final_norm.weight",), "encoder.final_layer_norm.weight"))
    # the decoder output's D^-0.5 before the head, folded into the norm just before it
    scale = cfg.d_model**-0.5 if scales_decoder_outputs(hf) else 1.0
    out.append(Link(("decoder.final_norm.weight",), "decoder.final_layer_norm.weight", scale=scale))
    if not cfg.tie_embeddings:
        out.append(Link(("lm_head.weight",), "lm_head.weight"))
    return out


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    positional, positional_options = split_spec(cfg.positional)
    norm, norm_options = split_spec(cfg.norm)
    checks = [
        (
            positional == "t5_relative" and "bidirectional" not in positional_options,
            f"positional {cfg.positional!r} (T5 has t5_relative, bidirectional in the encoder only)",
        ),
        (norm == "rmsnorm" and set(norm_options) <= {"eps"}, f"norm {cfg.norm!r} (T5 has rmsnorm)"),
        placement_requirement(cfg, "pre"),
        (cfg.component_name("attention") in ("sdpa", "math"), f"attention {cfg.attention!r}"),
        (
            cfg.kv_heads == cfg.num_heads,
            f"num_kv_heads={cfg.num_kv_heads} (T5 has no grouped-query attention)",
        ),
        (cfg.attention_scale == 1.0, f"attention_scale={cfg.attention_scale} (T5 has 1.0)"),
        (not cfg.bias and not cfg.qkv_bias, "attention biases"),
        (
            not (cfg.embedding_norm or cfg.scale_embeddings or cfg.lm_head_bias),
            "embedding_norm, scale_embeddings or lm_head_bias",
        ),
        (cfg.share_embeddings, "share_embeddings: false (T5 has one embedding for both sides)"),
    ]
    require(checks, "T5")
    activation, gated, bias = activation_of(cfg.ffn)
    if bias:
        raise Unsupported(f"ffn {cfg.ffn!r} with biases has no T5 equivalent")
    if gated and activation == "gelu":  # "gated-gelu" is transformers' alias of the tanh form
        raise Unsupported(
            f"ffn {cfg.ffn!r} (a gated exact GELU) has no T5 equivalent; T5 v1.1 has the tanh GELU"
        )
    feed_forward_proj = (
        activation if not gated else "gated-gelu" if activation == "gelu_new" else f"gated-{activation}"
    )
    return {
        "model_type": "t5",
        "architectures": ["T5ForConditionalGeneration"],
        "vocab_size": cfg.vocab_size,
        "d_model": cfg.d_model,
        "d_kv": cfg.resolved_head_dim,
        "d_ff": cfg.d_ff,
        "num_heads": cfg.num_heads,
        "num_layers": cfg.encoder_layers,
        "num_decoder_layers": cfg.decoder_layers,
        "relative_attention_num_buckets": positional_options.get("num_buckets", 32),
        "relative_attention_max_distance": positional_options.get("max_distance", 128),
        "dropout_rate": cfg.dropout,
        "layer_norm_epsilon": norm_options.get("eps", 1e-6),
        "feed_forward_proj": feed_forward_proj,
        "is_encoder_decoder": True,
        # transformers 4 scales the decoder output when tied and 5 when scale_decoder_outputs: say both alike
        "tie_word_embeddings": cfg.tie_embeddings,
        "scale_decoder_outputs": cfg.tie_embeddings,
        "pad_token_id": cfg.pad_token_id,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "decoder_start_token_id": cfg.start_token_id,
    }


ARCHITECTURE = register(
    Architecture(
        model_types=("t5",),
        kind="seq2seq",
        config=config,
        links=links,
        hf_config=hf_config,
        # tied copies of shared.weight, and a cross-attention table old checkpoints carry but never use
        ignored=(
            "encoder.embed_tokens.weight",
            "decoder.embed_tokens.weight",
            "EncDecAttention.relative_attention_bias.weight",
        ),
        links_read_hf=True,
    )
)
