"""A Hugging Face GPT-2 built from a config (no download) with a swapformer DecoderOnly's weights."""

from __future__ import annotations

import torch

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


def gpt2_pair(vocab_size: int = 40, seed: int = 0):
    """``(ours, theirs)``: a swapformer GPT-2-style DecoderOnly and HF's GPT2LMHeadModel with equal weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    ours = build_causal_lm(dict(GPT2_LIKE, vocab_size=vocab_size)).eval()
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=GPT2_LIKE["max_seq_len"],
        n_embd=GPT2_LIKE["d_model"],
        n_layer=GPT2_LIKE["num_layers"],
        n_head=GPT2_LIKE["num_heads"],
        n_inner=GPT2_LIKE["d_ff"],
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    theirs = GPT2LMHeadModel(config).eval()
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
    return ours, theirs
