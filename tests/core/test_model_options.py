"""The model options real checkpoints need (head_dim, attention_scale, qkv_bias, embedding_norm, lm_head_bias,
learned offset, sinusoidal halves, rope llama3, silu), each against a live reference: torch's functional
attention, or the Hugging Face module that defines the convention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from swapformer import ModelConfig, build_causal_lm, build_seq2seq
from swapformer.components.attention import MathAttention, SDPAttention
from swapformer.components.positional import (
    LearnedPositionalEncoding,
    ScaledRotaryPositionalEncoding,
    SinusoidalPositionalEncoding,
)
from swapformer.errors import ConfigError
from swapformer.models.saving import load_pretrained
from swapformer.nn import MultiHeadAttention
from swapformer.registry import FFN

transformers = pytest.importorskip("transformers", reason="the references are Hugging Face modules")


@pytest.mark.parametrize("kernel", [MathAttention, SDPAttention])
@pytest.mark.parametrize(("head_dim", "scale", "kv_heads"), [(6, None, 4), (6, 1.0, 2), (None, 0.3, 1)])
def test_head_dim_and_scale_against_functional_attention(kernel, head_dim, scale, kv_heads):
    torch.manual_seed(0)
    mha = MultiHeadAttention(
        d_model=16, num_heads=4, num_kv_heads=kv_heads, head_dim=head_dim, scale=scale, kernel=kernel()
    )
    x = torch.randn(2, 5, 16)
    e = head_dim or 4
    q = (x @ mha.q_proj.weight.T + mha.q_proj.bias).view(2, 5, 4, e).transpose(1, 2)
    k = (x @ mha.k_proj.weight.T + mha.k_proj.bias).view(2, 5, kv_heads, e).transpose(1, 2)
    v = (x @ mha.v_proj.weight.T + mha.v_proj.bias).view(2, 5, kv_heads, e).transpose(1, 2)
    k, v = k.repeat_interleave(4 // kv_heads, 1), v.repeat_interleave(4 // kv_heads, 1)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    expected = mha.out_proj(expected.transpose(1, 2).reshape(2, 5, 4 * e))
    torch.testing.assert_close(mha(x, is_causal=True), expected, rtol=1e-5, atol=1e-5)
    assert mha.q_proj.weight.shape == (4 * e, 16) and mha.out_proj.weight.shape == (16, 4 * e)


def test_qkv_bias_without_an_output_bias():
    mha = MultiHeadAttention(d_model=16, num_heads=4, bias=False, qkv_bias=True, kernel=SDPAttention())
    assert [p.bias is not None for p in (mha.q_proj, mha.k_proj, mha.v_proj, mha.out_proj)] == [1, 1, 1, 0]


def test_head_dim_frees_d_model_from_num_heads():
    config = ModelConfig(vocab_size=20, d_model=30, num_heads=4, head_dim=8)
    assert config.resolved_head_dim == 8
    with pytest.raises(ConfigError, match=r"d_model=30 is not divisible by num_heads=4; .* or set head_dim"):
        ModelConfig(vocab_size=20, d_model=30, num_heads=4)
    model = build_causal_lm(dict(vocab_size=20, d_model=30, num_heads=4, head_dim=8, num_layers=1, d_ff=16))
    assert model(torch.randint(20, (2, 3))).shape == (2, 3, 20)


def test_embedding_norm_and_lm_head_bias():
    torch.manual_seed(0)
    model = build_causal_lm(
        dict(
            vocab_size=20,
            d_model=16,
            num_heads=2,
            num_layers=1,
            d_ff=32,
            dropout=0.0,
            positional="learned",
            embedding_norm=True,
            lm_head_bias=True,
            tie_embeddings=False,
        )
    ).eval()
    with torch.no_grad():
        model.lm_head.bias.normal_()
        model.embedding.norm.weight.normal_()
    ids = torch.randint(20, (2, 6))
    embedded = model.embedding.token(ids) + model.positional.table.weight[:6]
    expected = F.layer_norm(embedded, (16,), model.embedding.norm.weight, model.embedding.norm.bias)
    torch.testing.assert_close(model.embedding(ids), expected)
    hidden = model.hidden_states(ids)
    torch.testing.assert_close(model(ids), hidden @ model.lm_head.weight.T + model.lm_head.bias)


def test_learned_offset_equals_bart_positions():
    from transformers.models.bart.modeling_bart import BartLearnedPositionalEmbedding

    theirs = BartLearnedPositionalEmbedding(10, 8)  # 10 positions, table of 12 rows
    ours = LearnedPositionalEncoding(d_model=8, max_seq_len=10, offset=2)
    with torch.no_grad():
        ours.table.weight.copy_(theirs.weight)
    x = torch.zeros(1, 4, 8)
    torch.testing.assert_close(ours.embed(x, offset=3), theirs(torch.zeros(1, 4), cache_length=3))
    per_row = ours.embed(torch.zeros(2, 4, 8), offset=torch.tensor([0, 3]))
    torch.testing.assert_close(per_row[1], ours.embed(x, offset=3)[0])
    with pytest.raises(ValueError, match="position 10 is beyond"):
        ours.embed(torch.zeros(1, 11, 8))
    with pytest.raises(ConfigError, match="offset=-1 must be a non-negative integer"):
        LearnedPositionalEncoding(d_model=8, max_seq_len=10, offset=-1)


@pytest.mark.parametrize("d_model", [8, 12])
def test_sinusoidal_halves_equals_marian_positions(d_model):
    from transformers.models.marian.modeling_marian import MarianSinusoidalPositionalEmbedding

    theirs = MarianSinusoidalPositionalEmbedding(40, d_model).create_weight()
    ours = SinusoidalPositionalEncoding(d_model=d_model, layout="halves")
    torch.testing.assert_close(ours.embed(torch.zeros(1, 40, d_model))[0], theirs, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="layout='rows' is not one of interleaved, halves"):
        SinusoidalPositionalEncoding(d_model=8, layout="rows")


@pytest.mark.parametrize("factor", [8.0, 32.0])
def test_rope_llama3_frequencies_equal_transformers(factor):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    band = dict(low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=64)
    config = transformers.LlamaConfig(
        hidden_size=256,
        num_attention_heads=4,
        max_position_embeddings=512,
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=factor, **band),
    )
    theirs, attention_factor = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    ours = ScaledRotaryPositionalEncoding(
        head_dim=64,
        base=500000.0,
        scaling="llama3",
        factor=factor,
        low_freq_factor=1.0,
        high_freq_factor=4.0,
        original_max_seq_len=64,
    )
    assert attention_factor == 1.0
    torch.testing.assert_close(ours.inv_freq, theirs)
    assert not torch.equal(ours.inv_freq, ScaledRotaryPositionalEncoding(head_dim=64, base=500000.0).inv_freq)
    with pytest.raises(ConfigError, match="rope options low_freq_factor belong to scaling: llama3"):
        ScaledRotaryPositionalEncoding(head_dim=64, scaling="linear", factor=2, low_freq_factor=1.0)


def test_silu_ffn_is_marians_swish_mlp():
    torch.manual_seed(0)
    ffn = FFN.build("silu", d_model=8, d_ff=16)
    x = torch.randn(2, 3, 8)
    expected = nn.functional.linear(
        transformers.activations.ACT2FN["swish"](ffn.linear1(x)), ffn.linear2.weight, ffn.linear2.bias
    )
    torch.testing.assert_close(ffn(x), expected)


def test_special_token_ids_are_checked_against_the_vocabulary():
    with pytest.raises(ConfigError, match=r"eos_token_id=40 is outside the vocabulary \(vocab_size=40\)"):
        ModelConfig(vocab_size=40, eos_token_id=40)
    with pytest.raises(
        ConfigError, match=r"decoder_start_token_id=-1 must be a non-negative integer or null"
    ):
        ModelConfig(vocab_size=40, decoder_start_token_id=-1)
    assert ModelConfig(vocab_size=40).start_token_id == 1
    assert ModelConfig(vocab_size=40, decoder_start_token_id=0).start_token_id == 0
    with pytest.raises(ConfigError, match=r"attention_scale=0 must be a positive number or null"):
        ModelConfig(vocab_size=40, attention_scale=0)


def test_seq2seq_with_head_dim_and_scale_runs_and_is_consistent():
    torch.manual_seed(0)
    model = build_seq2seq(
        dict(
            vocab_size=30,
            d_model=16,
            num_heads=2,
            head_dim=12,
            attention_scale=1.0,
            num_layers=1,
            d_ff=16,
            dropout=0.0,
        )
    ).eval()
    src, tgt = torch.randint(4, 30, (2, 5)), torch.randint(4, 30, (2, 4))
    logits = model(src, tgt)
    step = model.generate(src, max_new_tokens=3, eos_token_id=[])
    assert logits.shape == (2, 4, 30) and step.shape == (2, 4)
    assert math.isclose(model.decoder.layers[0].self_attention.sublayer.scale, 1.0)


def test_share_embeddings_gives_both_sides_one_table(tmp_path):
    options = dict(vocab_size=30, d_model=16, num_heads=2, num_layers=1, d_ff=16, dropout=0.0)
    torch.manual_seed(0)
    shared = build_seq2seq(
        dict(options, share_embeddings=True, positional="learned", embedding_norm=True)
    ).eval()
    assert shared.src_embedding.token.weight is shared.tgt_embedding.token.weight is shared.lm_head.weight
    assert shared.src_positional is not shared.tgt_positional and shared.src_embedding.norm is not None
    assert shared.src_embedding.norm is not shared.tgt_embedding.norm
    # the reference: an unshared model holding the same table twice
    separate = build_seq2seq(dict(options, positional="learned", embedding_norm=True)).eval()
    separate.load_state_dict(shared.state_dict())
    assert separate.src_embedding.token.weight is not separate.tgt_embedding.token.weight
    src, tgt = torch.randint(30, (2, 5)), torch.randint(30, (2, 4))
    torch.testing.assert_close(shared(src, tgt), separate(src, tgt))
    with torch.no_grad():  # a step on one side moves the other: one parameter
        shared.src_embedding.token.weight[7] += 1.0
    assert torch.equal(shared.tgt_embedding.token.weight[7], shared.src_embedding.token.weight[7])
    assert sum(p.numel() for p in shared.parameters()) < sum(p.numel() for p in separate.parameters())
    loaded = load_pretrained(shared.save_pretrained(tmp_path / "shared"))
    assert loaded.src_embedding.token.weight is loaded.tgt_embedding.token.weight
    torch.testing.assert_close(loaded(src, tgt), shared(src, tgt))
    untied = build_seq2seq(dict(options, share_embeddings=True, tie_embeddings=False))
    assert untied.src_embedding.token.weight is untied.tgt_embedding.token.weight
    assert untied.lm_head.weight is not untied.tgt_embedding.token.weight
    with pytest.raises(
        ConfigError, match=r"share_embeddings=true needs one vocabulary, but src_vocab_size=40"
    ):
        ModelConfig(vocab_size=30, src_vocab_size=40, share_embeddings=True)
    with pytest.raises(ConfigError, match=r"share_embeddings='yes' must be true or false"):
        ModelConfig(vocab_size=30, share_embeddings="yes")
    assert ModelConfig(vocab_size=30, src_vocab_size=30, share_embeddings=True).share_embeddings
