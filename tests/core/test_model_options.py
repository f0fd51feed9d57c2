"""The model options real checkpoints need (head_dim, attention_scale, qkv_bias, embedding_norm, lm_head_bias,
learned offset, sinusoidal halves, rope llama3, silu), each against a live reference: torch's functional
attention, or the Hugging Face module that defines the convention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tests.core.torch_reference import copy_encoder_layer
from tests.interop.hf_models import hf_model  # skips the module without transformers
from torch import nn

import swapformer
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


def test_embedding_norm_and_lm_head_bias_against_a_torch_reference():
    """embedding_norm: a LayerNorm of token + position before the first layer; lm_head_bias: the head's bias; in
    the forward and in cached decoding (whose plan has its own embedding and head). The reference is written
    with torch ops and ``nn.TransformerEncoderLayer`` on tensors drawn here, not with the model's modules."""
    torch.manual_seed(0)
    vocab, d_model, d_ff = 20, 16, 32
    model = build_causal_lm(
        dict(
            vocab_size=vocab,
            d_model=d_model,
            num_heads=2,
            num_layers=1,
            d_ff=d_ff,
            max_seq_len=16,
            dropout=0.0,
            positional="learned",
            embedding_norm=True,
            lm_head_bias=True,
            tie_embeddings=False,
        )
    ).eval()
    layer = nn.TransformerEncoderLayer(
        d_model, 2, d_ff, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    ).eval()
    with torch.no_grad():  # torch starts biases at 0 and norms at 1: make every one of them count
        for parameter in layer.parameters():
            if parameter.dim() == 1:
                parameter.add_(torch.randn_like(parameter) * 0.3)
    token, positions = torch.randn(vocab, d_model), torch.randn(16, d_model)
    embedding_norm = (1 + 0.3 * torch.randn(d_model), 0.3 * torch.randn(d_model))  # (weight, bias)
    final_norm = (1 + 0.3 * torch.randn(d_model), 0.3 * torch.randn(d_model))
    head_weight, head_bias = torch.randn(vocab, d_model) * d_model**-0.5, torch.randn(vocab)
    with torch.no_grad():
        model.embedding.token.weight.copy_(token)
        model.positional.table.weight.copy_(positions)
        model.embedding.norm.weight.copy_(embedding_norm[0])
        model.embedding.norm.bias.copy_(embedding_norm[1])
        model.decoder.final_norm.weight.copy_(final_norm[0])
        model.decoder.final_norm.bias.copy_(final_norm[1])
        model.lm_head.weight.copy_(head_weight)
        model.lm_head.bias.copy_(head_bias)
    copy_encoder_layer(model.decoder.layers[0], layer)

    def reference(ids):  # (N, L) -> (N, L, V)
        x = F.layer_norm(token[ids] + positions[: ids.size(1)], (d_model,), *embedding_norm)
        causal = nn.Transformer.generate_square_subsequent_mask(ids.size(1))
        x = F.layer_norm(layer(x, src_mask=causal, is_causal=True), (d_model,), *final_norm)
        return F.linear(x, head_weight, head_bias)

    ids = torch.randint(vocab, (2, 6))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), reference(ids), rtol=1e-5, atol=1e-5)
        expected = ids[:, :3]
        for _ in range(8):  # greedy decoding, each step a full forward of the reference
            expected = torch.cat([expected, reference(expected)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(model.generate(ids[:, :3], max_new_tokens=8, eos_token_id=[]), expected)


def test_embedding_norm_and_lm_head_bias_equal_barts_layernorm_embedding_and_final_logits_bias():
    """BART defines both options: ``layernorm_embedding`` on each side and ``final_logits_bias``. Its model,
    with those drawn large enough to matter, imported: the same logits and the same greedy tokens."""
    theirs = hf_model("bart-tied")
    with torch.no_grad():
        theirs.final_logits_bias.normal_(0.0, 1.0)
        for side in (theirs.model.encoder, theirs.model.decoder):
            side.layernorm_embedding.weight.normal_(1.0, 0.5)
            side.layernorm_embedding.bias.normal_(0.0, 0.5)
    ours = swapformer.from_hf(theirs)
    assert ours.config.embedding_norm and ours.config.lm_head_bias
    torch.manual_seed(1)
    src, tgt = torch.randint(4, 61, (3, 7)), torch.randint(4, 61, (3, 6))
    with torch.no_grad():
        expected = theirs(input_ids=src, decoder_input_ids=tgt).logits
        torch.testing.assert_close(ours(src, tgt), expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(ours.generate(src, max_new_tokens=8), _hf_greedy(theirs, src, 8))


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


@pytest.mark.parametrize(
    "parameters",
    [
        dict(factor=4.0, original_max_position_embeddings=16),  # the paper's defaults: betas 32 and 1
        dict(
            factor=8.0,
            original_max_position_embeddings=32,
            beta_fast=16.0,
            beta_slow=2.0,
            attention_factor=1.3,
        ),
        dict(factor=4.0, original_max_position_embeddings=16, mscale=0.707, mscale_all_dim=1.0),  # DeepSeek's
        dict(factor=3.0, original_max_position_embeddings=20, truncate=False),  # gpt-oss's
    ],
)
def test_rope_yarn_tables_equal_transformers(parameters):
    # transformers' rotary embedding returns cos and sin times the attention factor: q and k both carry it
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from swapformer.interop.llama import _rope

    rope_parameters = dict(rope_type="yarn", rope_theta=10000.0, **parameters)
    config = transformers.LlamaConfig(
        hidden_size=256, num_attention_heads=4, max_position_embeddings=64, rope_parameters=rope_parameters
    )
    theirs = LlamaRotaryEmbedding(config)
    options = _rope(config.to_dict())
    options.pop("name")
    ours = ScaledRotaryPositionalEncoding(head_dim=64, **options)
    torch.testing.assert_close(ours.inv_freq, theirs.inv_freq, rtol=0, atol=0)
    assert ours.table_scale == theirs.attention_scaling != 1.0
    ours.reserve(100, torch.device("cpu"))
    cos, sin = theirs(torch.zeros(1, 100, 64), torch.arange(100)[None])
    torch.testing.assert_close(ours.cos[:100], cos[0], rtol=0, atol=0)
    torch.testing.assert_close(ours.sin[:100], sin[0], rtol=0, atol=0)
    plain = ScaledRotaryPositionalEncoding(head_dim=64, scaling="linear", factor=parameters["factor"])
    assert not torch.allclose(ours.inv_freq, plain.inv_freq)  # neither interpolation alone nor extrapolation
    assert not torch.allclose(ours.inv_freq, ScaledRotaryPositionalEncoding(head_dim=64).inv_freq)


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


def test_seq2seq_head_dim_and_scale_equal_t5():
    """T5 is the encoder-decoder whose heads are not D / H wide (``d_kv``) and whose attention has no 1/sqrt(E)
    scale. Its model with D = 32 and 4 heads of 12, imported: head_dim 12 and attention_scale 1.0 in every
    attention (self, cross, cached decoding) give its logits and its greedy tokens."""
    theirs = hf_model("t5-v1_1-gated-gelu")
    assert theirs.config.d_kv * theirs.config.num_heads != theirs.config.d_model
    ours = swapformer.from_hf(theirs)
    assert (ours.config.head_dim, ours.config.attention_scale) == (12, 1.0)
    cross = ours.decoder.layers[0].cross_attention.sublayer
    assert cross.q_proj.weight.shape == (48, 32) and math.isclose(cross.scale, 1.0)
    torch.manual_seed(1)
    src, tgt = torch.randint(4, 61, (3, 7)), torch.randint(4, 61, (3, 6))
    with torch.no_grad():
        expected = theirs(input_ids=src, decoder_input_ids=tgt).logits
        torch.testing.assert_close(ours(src, tgt), expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(ours.generate(src, max_new_tokens=8), _hf_greedy(theirs, src, 8))


def _hf_greedy(model, src, max_new_tokens: int):
    """transformers' tokens with its generation defaults (BART's forced EOS at max_length among them), which the
    imported model carries too."""
    return model.generate(src, max_new_tokens=max_new_tokens)


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
