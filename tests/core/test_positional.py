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


def llama_rotation(heads, head_dim, positions, dtype=torch.float32):
    """cos and sin of Hugging Face's LlamaRotaryEmbedding at ``positions`` (N, L), and its apply_rotary_pos_emb."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    config = LlamaConfig(hidden_size=heads * head_dim, num_attention_heads=heads, max_position_embeddings=64)
    x = torch.zeros(1, dtype=dtype)
    return (*LlamaRotaryEmbedding(config=config)(x, positions), apply_rotary_pos_emb)


@pytest.mark.parametrize(
    ("layout", "heads", "kv_heads", "length", "offset"),
    [
        ("attention", 4, 4, 12, 0),  # training: q and k as attention projects them, (N, L, H, E) in memory
        ("attention", 4, 2, 12, 5),  # grouped-query keys, prefill after a cached prefix
        ("attention", 4, 1, 1, 9),  # multi-query, decoding one token
        ("contiguous", 3, 3, 7, 2),
        ("attention", 2, 2, 6, "rows"),  # left-padded rows: per-row offsets, some negative (clamped to 0)
    ],
)
def test_rope_values_and_gradients_equal_llama_through_autograd(layout, heads, kv_heads, length, offset):
    # the rotation is a custom autograd node (backward = inverse rotation): pinned to autograd through HF's formula
    batch, head_dim = 2, 16
    offsets = torch.tensor([3, -2]) if offset == "rows" else offset
    rows = offsets if offset == "rows" else torch.full((batch,), offset)
    positions = (rows[:, None] + torch.arange(length)).clamp_min(0)
    cos, sin, apply_rotary_pos_emb = llama_rotation(heads, head_dim, positions)

    def projected(h):
        if layout == "attention":
            return torch.randn(batch, length, h * head_dim).view(batch, length, h, head_dim).transpose(1, 2)
        return torch.randn(batch, h, length, head_dim)

    rope = RotaryPositionalEncoding(head_dim=head_dim)
    q, k = projected(heads).requires_grad_(), projected(kv_heads).requires_grad_()
    q_grad, k_grad = torch.randn(q.shape), torch.randn(k.shape)
    ours = rope.rotate(q, k, offset=offsets)
    ours_grads = torch.autograd.grad(ours, (q, k), (q_grad, k_grad))
    ref = apply_rotary_pos_emb(q, k, cos, sin)
    ref_grads = torch.autograd.grad(ref, (q, k), (q_grad, k_grad))
    for got, want in zip((*ours, *ours_grads), (*ref, *ref_grads)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # the decoding path, without the autograd node
        for got, want in zip(rope.rotate(q, k, offset=offsets), ref):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_rope_is_twice_differentiable():
    rope = RotaryPositionalEncoding(head_dim=8).double()
    q = torch.randn(2, 5, 3, 8, dtype=torch.double, requires_grad=True)
    k = torch.randn(2, 5, 1, 8, dtype=torch.double, requires_grad=True)

    def rotate(q, k):
        return rope.rotate(q.transpose(1, 2), k.transpose(1, 2), offset=3)

    assert torch.autograd.gradcheck(rotate, (q, k)) and torch.autograd.gradgradcheck(rotate, (q, k))


def test_rope_tables_follow_the_input_dtype_and_growth():
    # cos/sin are cached per dtype and per length: a bfloat16 call after a float32 one, then a longer sequence
    rope = RotaryPositionalEncoding(head_dim=16)
    for dtype, length in ((torch.float32, 8), (torch.bfloat16, 8), (torch.float32, 200), (torch.bfloat16, 3)):
        positions = torch.arange(length)[None].expand(2, -1)
        cos, sin, apply_rotary_pos_emb = llama_rotation(4, 16, positions, dtype)
        q = torch.randn(2, length, 4, 16).to(dtype).transpose(1, 2)
        ours = rope.rotate(q, q)
        assert ours[0].dtype == dtype
        tolerance = 1e-5 if dtype == torch.float32 else 2e-2
        for got in ours:
            want = apply_rotary_pos_emb(q.float(), q.float(), cos.float(), sin.float())[0]
            torch.testing.assert_close(got.float(), want, atol=tolerance, rtol=tolerance)


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


@pytest.mark.parametrize("first_length", [16, 1])
def test_rope_tables_built_under_inference_mode_serve_a_training_step(first_length):
    # Lightning validates (sanity check, val loop) under torch.inference_mode: the tables grown or cached there
    # must not be inference tensors, which autograd refuses to save
    cfg = dict(
        vocab_size=50, d_model=32, num_heads=4, num_kv_heads=2, num_layers=1, d_ff=64, positional="rope"
    )
    model = build_causal_lm(cfg)
    with torch.inference_mode():
        model(torch.randint(50, (2, first_length)))
    model(torch.randint(50, (2, 16))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
