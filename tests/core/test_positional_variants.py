"""ALiBi, T5 relative bias, RoPE scaling and NoPE against Hugging Face's implementations, built from configs."""

import math

import pytest
import torch

from swapformer import build_causal_lm, build_seq2seq, family
from swapformer.components.positional import (
    ALiBiPositionalEncoding,
    NoPositionalEncoding,
    RotaryPositionalEncoding,
    ScaledRotaryPositionalEncoding,
    T5RelativePositionBias,
    alibi_slopes,
    relative_position_bucket,
)
from swapformer.errors import ConfigError

HEAD_COUNTS = [1, 2, 3, 4, 5, 6, 8, 12, 16, 20, 24, 112]  # Bloom-176B has 112 heads


@pytest.mark.parametrize("heads", HEAD_COUNTS)
def test_alibi_equals_bloom_build_alibi_tensor(heads):
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    length = 9
    bloom = build_alibi_tensor(torch.ones(1, length), heads, torch.float32).view(heads, length)  # slope_h * j
    ours = ALiBiPositionalEncoding(num_heads=heads).bias(length, length)  # (H, L, S): -slope_h |i - j|
    # Bloom leaves out the per-row constant -slope_h * i (softmax ignores it); causal keys j <= i only
    for i in range(length):
        torch.testing.assert_close(ours[:, i, : i + 1], bloom[:, : i + 1] - bloom[:, i : i + 1])


@pytest.mark.parametrize("heads", HEAD_COUNTS)
def test_alibi_equals_mpt_bias_and_the_papers_slopes(heads):
    from transformers.models.mpt.modeling_mpt import build_mpt_alibi_tensor

    length = 7
    mpt = build_mpt_alibi_tensor(heads, length)  # (H, 1, S): the bias of the last query, -slope_h (S-1-j)
    torch.testing.assert_close(ALiBiPositionalEncoding(num_heads=heads).bias(length, length)[:, -1:], mpt)
    # Press et al.: a geometric sequence from 2^(-8/n), n the power of two at or below H, then the odd
    # powers of 2^(-8/2n) for the remaining heads
    n = 2 ** math.floor(math.log2(heads))
    expected = [2 ** (-8 * (i + 1) / n) for i in range(n)]
    expected += [2 ** (-8 * (2 * i + 1) / (2 * n)) for i in range(heads - n)]
    assert alibi_slopes(heads) == pytest.approx(expected, rel=1e-12)


def test_alibi_bias_with_an_offset_is_the_bottom_rows_of_the_full_bias():
    alibi = ALiBiPositionalEncoding(num_heads=4)
    full = alibi.bias(10, 10)
    torch.testing.assert_close(alibi.bias(3, 10, offset=7), full[:, 7:])
    # bidirectional (encoder) use sees the symmetric penalty
    torch.testing.assert_close(full, full.transpose(-2, -1))


def hf_t5_attention(*, heads, buckets, max_distance, is_decoder):
    from transformers import T5Config
    from transformers.models.t5.modeling_t5 import T5Attention

    config = T5Config(d_model=32, d_kv=8, num_heads=heads, relative_attention_num_buckets=buckets,
                      relative_attention_max_distance=max_distance, is_decoder=is_decoder)  # fmt: skip
    return T5Attention(config, has_relative_attention_bias=True).eval()


class ShiftedT5(T5RelativePositionBias):
    """Not relative any more (a bias that grows with the query's position), and it does not declare it."""

    def bias(self, length, source_length, *, offset=0, device=None):
        return super().bias(length, source_length, offset=offset, device=device) + offset


@pytest.mark.parametrize(
    "member",
    [
        ALiBiPositionalEncoding(num_heads=4),
        T5RelativePositionBias(num_heads=4, num_buckets=8, max_distance=6, bidirectional=False),
        T5RelativePositionBias(num_heads=4, num_buckets=8, max_distance=6, bidirectional=True),
        ShiftedT5(num_heads=4, num_buckets=8, max_distance=6, bidirectional=False),
    ],
    ids=["alibi", "t5", "t5-bidirectional", "not-relative-subclass"],
)
def test_a_decoding_steps_bias_is_the_bias_of_its_position_bit_for_bit(member):
    """step_bias: a relative member slices one row made once per generation; a subclass that does not declare
    relative (its bias is not) computes each step; past the capacity every member computes."""
    if isinstance(member, T5RelativePositionBias):  # buckets of distinct values
        torch.nn.init.normal_(member.table.weight)
    lookup = member.step_bias(7, torch.device("cpu"))
    for position in range(10):  # the capacity is 7
        want = member.bias(1, position + 1, offset=position)
        assert torch.equal(lookup(position), want), position


@pytest.mark.parametrize("bidirectional", [True, False], ids=["encoder", "decoder"])
@pytest.mark.parametrize(("buckets", "max_distance"), [(32, 128), (8, 20), (6, 9)])
def test_t5_bucket_function_equals_hugging_face(bidirectional, buckets, max_distance):
    from transformers.models.t5.modeling_t5 import T5Attention

    relative = torch.arange(-300, 301)
    expected = T5Attention._relative_position_bucket(
        relative, bidirectional=bidirectional, num_buckets=buckets, max_distance=max_distance
    )
    ours = relative_position_bucket(
        relative, bidirectional=bidirectional, num_buckets=buckets, max_distance=max_distance
    )
    assert torch.equal(ours, expected)


@pytest.mark.parametrize("is_decoder", [False, True], ids=["encoder", "decoder"])
@pytest.mark.parametrize(("length", "source_length", "offset"), [(9, 9, 0), (1, 40, 39), (4, 150, 146)])
def test_t5_bias_equals_hugging_face_compute_bias(is_decoder, length, source_length, offset):
    heads = 4
    hf = hf_t5_attention(heads=heads, buckets=32, max_distance=128, is_decoder=is_decoder)
    ours = T5RelativePositionBias(num_heads=heads, bidirectional=not is_decoder)
    ours.table.weight.data.copy_(hf.relative_attention_bias.weight.data)
    expected = hf.compute_bias(length, source_length, past_seen_tokens=offset)[0]  # (H, L, S)
    torch.testing.assert_close(ours.bias(length, source_length, offset=offset), expected)


def test_builders_make_t5_bias_bidirectional_in_encoders_only_and_an_option_wins():
    cfg = dict(vocab_size=20, d_model=16, num_heads=4, num_layers=1, d_ff=24, positional="t5_relative")
    seq2seq = build_seq2seq(cfg)
    assert seq2seq.src_embedding.positional.bidirectional is True
    assert seq2seq.tgt_embedding.positional.bidirectional is False
    assert build_causal_lm(cfg).positional.bidirectional is False
    forced = build_causal_lm({**cfg, "positional": {"name": "t5_relative", "bidirectional": True}})
    assert forced.positional.bidirectional is True
    with pytest.raises(ConfigError, match=r"t5_relative needs num_buckets >= 4"):
        T5RelativePositionBias(num_heads=2, num_buckets=2)


def hf_llama_rotary(rope_type, factor, head_dim, max_positions):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = LlamaConfig(hidden_size=4 * head_dim, num_attention_heads=4, max_position_embeddings=max_positions,
                         rope_parameters={"rope_type": rope_type, "factor": factor, "rope_theta": 10000.0})  # fmt: skip
    return config, LlamaRotaryEmbedding(config=config)


@pytest.mark.parametrize("factor", [2.0, 4.0])
def test_rope_linear_scaling_equals_hugging_face_linear_rope_type(factor):
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    head_dim, length = 16, 20
    _, hf = hf_llama_rotary("linear", factor, head_dim, 64)
    q, k = torch.randn(2, 4, length, head_dim), torch.randn(2, 2, length, head_dim)
    cos, sin = hf(q, torch.arange(3, 3 + length)[None])
    rope = family("positional").build(
        {"name": "rope", "scaling": "linear", "factor": factor}, head_dim=head_dim
    )
    for ours, expected in zip(rope.rotate(q, k, offset=3), apply_rotary_pos_emb(q, k, cos, sin)):
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    # position interpolation: position p of the scaled rope is position p / factor of plain rope
    plain = RotaryPositionalEncoding(head_dim=head_dim)
    torch.testing.assert_close(rope.inv_freq, plain.inv_freq / factor)


@pytest.mark.parametrize("factor", [2.0, 4.0])
def test_rope_ntk_scaling_equals_hugging_face_dynamic_type_where_its_factor_is_reached(factor):
    from transformers.modeling_rope_utils import _compute_dynamic_ntk_parameters

    head_dim, original = 16, 64
    config, _ = hf_llama_rotary("dynamic", factor, head_dim, original)
    # HF's dynamic type raises the base by ((factor * L / original) - (factor - 1))^(E / (E - 2)) at length L: at
    # L = original * (2 factor - 1) / factor the ratio is `factor`, the static NTK-aware base change
    length = original * (2 * factor - 1) / factor
    expected, _ = _compute_dynamic_ntk_parameters(config, seq_len=length)
    rope = ScaledRotaryPositionalEncoding(head_dim=head_dim, scaling="ntk", factor=factor)
    torch.testing.assert_close(rope.inv_freq, expected)
    base = 10000.0 * factor ** (head_dim / (head_dim - 2))
    torch.testing.assert_close(rope.inv_freq, 1.0 / base ** (torch.arange(0, head_dim, 2) / head_dim))
    assert rope.inv_freq[0] == 1.0  # the highest frequency never moves


def test_rope_scaling_options_are_checked():
    with pytest.raises(ConfigError, match=r"rope scaling 'dynamic' is not one of linear, ntk, llama3, yarn"):
        ScaledRotaryPositionalEncoding(head_dim=8, scaling="dynamic", factor=2)
    with pytest.raises(
        ConfigError, match=r"rope options beta_fast belong to scaling: yarn, not scaling: llama3"
    ):
        ScaledRotaryPositionalEncoding(head_dim=8, scaling="llama3", factor=2, beta_fast=16.0)
    with pytest.raises(ConfigError, match=r"rope yarn needs beta_fast above beta_slow"):
        ScaledRotaryPositionalEncoding(head_dim=8, scaling="yarn", factor=2, beta_fast=1.0, beta_slow=2.0)
    with pytest.raises(ConfigError, match=r"rope attention_factor=0 must be a number > 0"):
        ScaledRotaryPositionalEncoding(head_dim=8, scaling="yarn", factor=2, attention_factor=0)
    with pytest.raises(ConfigError, match=r"factor=0.5 must be a number >= 1"):
        ScaledRotaryPositionalEncoding(head_dim=8, scaling="linear", factor=0.5)
    with pytest.raises(ConfigError, match=r"factor=2 needs a scaling"):
        ScaledRotaryPositionalEncoding(head_dim=8, factor=2)
    plain = ScaledRotaryPositionalEncoding(head_dim=8)
    torch.testing.assert_close(plain.inv_freq, RotaryPositionalEncoding(head_dim=8).inv_freq)


def test_nope_is_an_alias_of_none():
    assert family("positional").get("nope").factory is family("positional").get("none").factory
    assert isinstance(family("positional").build("nope"), NoPositionalEncoding)
