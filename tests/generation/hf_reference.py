"""A Hugging Face GPT-2 built from a config (no download) with a swapformer DecoderOnly's weights.

The tests prove this copy exact (equal logits and tokens); ``benchmarks/generate.py`` times against the same one.
"""

from __future__ import annotations

from typing import Any

import torch
from tests.weights import spread_weights

from swapformer import build_causal_lm

GPT2_LIKE = dict(
    d_model=32,
    num_heads=4,
    num_layers=2,
    d_ff=128,
    max_seq_len=64,
    positional="learned",
    placement="pre",
    ffn={"name": "gelu", "approximate": "tanh"},  # GPT-2's gelu_new
    dropout=0.0,
)


def hugging_face_gpt2(ours, config: dict[str, Any], **special_ids: int | None):
    """GPT2LMHeadModel from a ``GPT2Config`` matching ``config`` (a GPT-2-style swapformer config: learned
    positions, pre-norm, GELU-tanh, tied, biases), holding ``ours``'s weights; ``special_ids`` (``bos_token_id``,
    ``eos_token_id``, ``pad_token_id``) go to the config."""
    from transformers import GPT2Config, GPT2LMHeadModel

    theirs = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=config["vocab_size"],
            n_positions=config["max_seq_len"],
            n_embd=config["d_model"],
            n_layer=config["num_layers"],
            n_head=config["num_heads"],
            n_inner=config["d_ff"],
            activation_function="gelu_new",
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            layer_norm_epsilon=1e-5,
            tie_word_embeddings=True,
            **special_ids,
        )
    ).eval()
    with torch.no_grad():
        hf = theirs.transformer
        hf.wte.weight.copy_(ours.embedding.token.weight)
        hf.wpe.weight.copy_(ours.positional.table.weight)
        for block, layer in zip(hf.h, ours.decoder.layers):
            attention, ffn = layer.self_attention, layer.feed_forward
            block.ln_1.load_state_dict(attention.norm.state_dict())
            block.ln_2.load_state_dict(ffn.norm.state_dict())
            mha = attention.sublayer
            # HF's Conv1D stores (in, out): the transpose of nn.Linear
            block.attn.c_attn.weight.copy_(
                torch.cat([mha.q_proj.weight, mha.k_proj.weight, mha.v_proj.weight]).T
            )
            block.attn.c_attn.bias.copy_(torch.cat([mha.q_proj.bias, mha.k_proj.bias, mha.v_proj.bias]))
            block.attn.c_proj.weight.copy_(mha.out_proj.weight.T)
            block.attn.c_proj.bias.copy_(mha.out_proj.bias)
            block.mlp.c_fc.weight.copy_(ffn.sublayer.linear1.weight.T)
            block.mlp.c_fc.bias.copy_(ffn.sublayer.linear1.bias)
            block.mlp.c_proj.weight.copy_(ffn.sublayer.linear2.weight.T)
            block.mlp.c_proj.bias.copy_(ffn.sublayer.linear2.bias)
        hf.ln_f.load_state_dict(ours.decoder.final_norm.state_dict())
    return theirs


def gpt2_pair(vocab_size: int = 40, seed: int = 0):
    """``(ours, theirs)``: a swapformer GPT-2-style DecoderOnly and HF's GPT2LMHeadModel with equal weights."""
    torch.manual_seed(seed)
    config = dict(GPT2_LIKE, vocab_size=vocab_size)
    ours = build_causal_lm(config).eval()
    # gain 2: logits of a few units, with which the tests' eos ids end rows and beams at different steps
    spread_weights(ours, gain=2.0)
    return ours, hugging_face_gpt2(ours, config, bos_token_id=1, eos_token_id=2, pad_token_id=0)
