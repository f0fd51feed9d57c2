"""Positional members against their closed formulas and Hugging Face's implementations."""

import math

import pytest
import torch

from swapformer import build_causal_lm, build_seq2seq, family
from swapformer.components.positional import (
    LearnedPositionalEncoding,
    RotaryPositionalEncoding,
    SinusoidalPositionalEncoding,
)
from swapformer.errors import ConfigError


def test_sinusoidal_equals_the_closed_formula():
    d_model, length = 16, 50
    pe = SinusoidalPositionalEncoding(d_model=d_model)
    table = pe.embed(torch.zeros(1, length, d_model))[0]
    for pos in range(length):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=2e-5)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=2e-5)


def test_sinusoidal_offset_continues_the_sequence():
    pe = SinusoidalPositionalEncoding(d_model=8)
    full = pe.embed(torch.zeros(1, 10, 8))
    torch.testing.assert_close(pe.embed(torch.zeros(1, 4, 8), offset=6), full[:, 6:])


def test_sinusoidal_model_runs_on_sequences_longer_than_any_seen():
    cfg = dict(vocab_size=20, d_model=16, num_heads=2, num_layers=1, d_ff=32, max_seq_len=8, placement="pre")
    model = build_causal_lm({**cfg, "positional": "sinusoidal"}).eval()
    short = torch.randint(20, (1, 8))
    model(short)
    long = torch.cat([short, torch.randint(20, (1, 1992))], dim=1)  # 250x the max_seq_len it was built with
    logits = model(long)
    assert logits.shape == (1, 2000, 20) and torch.isfinite(logits).all()
    torch.testing.assert_close(logits[:, :8], model(short), atol=1e-5, rtol=1e-5)  # causal: prefix unchanged


def test_learned_table_refuses_a_longer_sequence_saying_how_to_fix_it():
    model = build_causal_lm(dict(vocab_size=20, d_model=16, num_heads=2, num_layers=1, d_ff=32, max_seq_len=8,
                                 positional="learned"))  # fmt: skip
    model(torch.randint(20, (1, 8)))
    with pytest.raises(ValueError, match=r"max_seq_len=8 .*raise max_seq_len in the model config"):
        model(torch.randint(20, (1, 9)))
    with pytest.raises(
        ValueError, match=r"position 10 is beyond the learned positional table of size max_seq_len=8"
    ):
        LearnedPositionalEncoding(d_model=4, max_seq_len=8).embed(torch.zeros(1, 3, 4), offset=8)


def test_rope_equals_hugging_face_llama_rotary_embedding():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    heads, head_dim, length = 4, 16, 12
    config = LlamaConfig(hidden_size=heads * head_dim, num_attention_heads=heads, rope_theta=500000.0,
                         max_position_embeddings=64)  # fmt: skip
    q, k = torch.randn(2, heads, length, head_dim), torch.randn(2, 2, length, head_dim)
    hf = LlamaRotaryEmbedding(config=config)
    positions = torch.arange(5, 5 + length)[None].expand(2, -1)
    cos, sin = hf(q, positions)
    ref_q, ref_k = apply_rotary_pos_emb(q, k, cos, sin)
    ours_q, ours_k = RotaryPositionalEncoding(head_dim=head_dim, base=500000.0).rotate(q, k, offset=5)
    torch.testing.assert_close(ours_q, ref_q, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours_k, ref_k, atol=1e-5, rtol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    rope = RotaryPositionalEncoding(head_dim=8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    scores = []
    for shift in (0, 7, 100):  # q at position shift + 3, k at position shift
        q_rot, _ = rope.rotate(q, q, offset=shift + 3)
        _, k_rot = rope.rotate(k, k, offset=shift)
        scores.append((q_rot * k_rot).sum().item())
    assert scores[0] == pytest.approx(scores[1], abs=1e-4) and scores[0] == pytest.approx(scores[2], abs=1e-4)


def test_rope_rejects_odd_head_dim():
    with pytest.raises(ConfigError, match=r"rope needs an even head dimension, got d_model / num_heads = 3"):
        build_causal_lm(dict(vocab_size=10, d_model=12, num_heads=4, positional="rope"))


@pytest.mark.parametrize("positional", family("positional").available())
def test_every_positional_member_builds_both_model_kinds(positional):
    cfg = dict(
        vocab_size=30, d_model=16, num_heads=2, num_layers=1, d_ff=32, max_seq_len=16, positional=positional
    )
    src, tgt = torch.randint(30, (2, 9)), torch.randint(30, (2, 5))
    assert build_causal_lm(cfg)(src).shape == (2, 9, 30)
    assert build_seq2seq(cfg)(src, tgt).shape == (2, 5, 30)
