"""Kernels against each other and the multi-head layer against torch.nn.MultiheadAttention."""

import math

import pytest
import torch
import torch.nn.functional as F
from tests.core.torch_reference import copy_mha
from torch import nn

from swapformer import family
from swapformer.components.attention import MathAttention, SDPAttention, causal_mask
from swapformer.errors import ConfigError
from swapformer.nn import MultiHeadAttention

N, H, L, S, E = 3, 4, 7, 9, 8


def padding(lengths, total):
    return torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]  # (N, S) True = real


def loop_attention(q, k, v, mask):
    """The lecture's formulas with explicit loops over batch, head and query: an independent reference."""
    out = torch.zeros_like(q)
    for n in range(q.size(0)):
        for h in range(q.size(1)):
            for i in range(q.size(2)):
                allowed = [j for j in range(k.size(2)) if mask is None or mask[n, 0, i, j]]
                if not allowed:
                    continue
                e = torch.stack([q[n, h, i] @ k[n, h, j] / math.sqrt(q.size(-1)) for j in allowed])
                alpha = torch.softmax(e, dim=0)
                out[n, h, i] = sum(a * v[n, h, j] for a, j in zip(alpha, allowed))
    return out


def test_math_kernel_is_the_lecture_formula():
    q, k, v = torch.randn(2, 2, 4, E), torch.randn(2, 2, 5, E), torch.randn(2, 2, 5, E)
    mask = padding([5, 3], 5)[:, None, None, :].expand(2, 1, 4, 5)
    out, weights = MathAttention()(q, k, v, attn_mask=mask, need_weights=True)
    torch.testing.assert_close(out, loop_attention(q, k, v, mask), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 4))
    assert (weights[1, :, :, 3:] == 0).all()


def test_math_kernel_matches_torch_sdpa_math_backend():
    q, k, v = torch.randn(N, H, L, E), torch.randn(N, H, S, E), torch.randn(N, H, S, E)
    bias = torch.randn(H, L, S)
    out, _ = MathAttention()(q, k, v, attn_mask=bias)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rows", [L, 1], ids=["prompt", "step"])
def test_sdpa_with_a_score_bias_of_three_dims_equals_math(rows):
    # T5's and ALiBi's bias (H, L, S): sdpa views it as (1, H, L, S), which torch's CPU dispatch sends to the
    # fused kernel instead of its math fallback; the numbers stay the math kernel's
    q, k, v = torch.randn(N, H, rows, E), torch.randn(N, H, S, E), torch.randn(N, H, S, E)
    bias = torch.randn(H, rows, S)
    out_math, _ = MathAttention()(q, k, v, attn_mask=bias, scale=1.0)
    out_sdpa, _ = SDPAttention()(q, k, v, attn_mask=bias, scale=1.0)
    torch.testing.assert_close(out_sdpa, out_math, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_kv_heads", [H, 2, 1], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("padded", [False, True], ids=["nopad", "pad"])
@pytest.mark.parametrize("mask_kind", ["flag", "bool", "float"])
def test_math_and_sdpa_agree(num_kv_heads, causal, padded, mask_kind):
    length = source = L
    q = torch.randn(N, H, length, E)
    k, v = torch.randn(N, num_kv_heads, source, E), torch.randn(N, num_kv_heads, source, E)
    mask = padding([source, 4, 1], source)[:, None, None, :] if padded else None
    is_causal = causal
    if mask_kind != "flag" and (causal or padded):
        full = torch.ones(N, 1, length, source, dtype=torch.bool)
        if padded:
            full = full & mask
        if causal:
            full = full & causal_mask(length, source)
        mask, is_causal = full, False
        if mask_kind == "float":
            mask = torch.zeros(full.shape).masked_fill(~full, float("-inf")) + 0.1 * torch.randn(
                N, H, length, source
            )
    out_math, _ = MathAttention()(q, k, v, attn_mask=mask, is_causal=is_causal)
    out_sdpa, _ = SDPAttention()(q, k, v, attn_mask=mask, is_causal=is_causal)
    torch.testing.assert_close(out_sdpa, out_math, atol=1e-5, rtol=1e-5)


def test_gqa_equals_mha_with_repeated_kv_heads():
    q, k, v = torch.randn(N, H, L, E), torch.randn(N, 2, L, E), torch.randn(N, 2, L, E)
    for kernel in (MathAttention(), SDPAttention()):
        out, _ = kernel(q, k, v, is_causal=True)
        ref, _ = kernel(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), is_causal=True)
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("kernel_cls", [MathAttention, SDPAttention])
def test_row_with_nothing_to_attend_gives_zeros_and_finite_gradients(kernel_cls):
    q = torch.randn(2, H, L, E, requires_grad=True)
    k, v = torch.randn(2, H, L, E, requires_grad=True), torch.randn(2, H, L, E, requires_grad=True)
    mask = padding([L, 0], L)[:, None, None, :]  # second sequence is all padding
    bias = torch.zeros(2, H, L, L).masked_fill(~mask, float("-inf"))
    for m in (mask, bias):
        out, _ = kernel_cls()(q, k, v, attn_mask=m, is_causal=True)
        assert torch.equal(out[1], torch.zeros_like(out[1]))
        assert torch.isfinite(out).all()
        out.sum().backward()
        assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_sdpa_kernel_returns_weights_through_math():
    q, k, v = torch.randn(N, H, L, E), torch.randn(N, H, S, E), torch.randn(N, H, S, E)
    out, weights = SDPAttention()(q, k, v, need_weights=True)
    ref_out, ref_weights = MathAttention()(q, k, v, need_weights=True)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(weights, ref_weights)


def _pair(kernel, d_model=32, num_heads=4):
    ref = nn.MultiheadAttention(d_model, num_heads, batch_first=True).eval()
    ours = MultiHeadAttention(
        d_model=d_model, num_heads=num_heads, kernel=family("attention").build(kernel)
    ).eval()
    copy_mha(ours, ref)
    return ours, ref


@pytest.mark.parametrize("kernel", ["math", "sdpa"])
def test_self_attention_equals_nn_multihead_attention(kernel):
    ours, ref = _pair(kernel)
    x = torch.randn(N, L, 32)
    key_mask = padding([L, 5, 2], L)
    causal = causal_mask(L, L)
    cases = [
        ({}, {}),
        ({"attn_mask": key_mask[:, None, None, :]}, {"key_padding_mask": ~key_mask}),
        ({"is_causal": True}, {"attn_mask": ~causal}),
        (
            {"attn_mask": key_mask[:, None, None, :] & causal},
            {"attn_mask": ~causal, "key_padding_mask": ~key_mask},
        ),
    ]
    for our_kwargs, ref_kwargs in cases:
        ref_out, ref_weights = ref(x, x, x, need_weights=True, average_attn_weights=False, **ref_kwargs)
        out, weights = ours(x, need_weights=True, **our_kwargs)
        torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(weights, ref_weights, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(ours(x, **our_kwargs), ref_out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel", ["math", "sdpa"])
def test_cross_attention_equals_nn_multihead_attention(kernel):
    ours, ref = _pair(kernel)
    x, memory = torch.randn(N, L, 32), torch.randn(N, S, 32)
    key_mask = padding([S, 6, 1], S)
    ref_out, _ = ref(x, memory, memory, key_padding_mask=~key_mask)
    out = ours(x, memory, attn_mask=key_mask[:, None, None, :])
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)


def test_gqa_layer_equals_mha_layer_with_shared_kv_weights():
    gqa = MultiHeadAttention(d_model=32, num_heads=4, num_kv_heads=2, kernel=SDPAttention())
    mha = MultiHeadAttention(d_model=32, num_heads=4, kernel=MathAttention())
    with torch.no_grad():
        mha.q_proj.load_state_dict(gqa.q_proj.state_dict())
        mha.out_proj.load_state_dict(gqa.out_proj.state_dict())
        for name in ("k_proj", "v_proj"):  # each kv head serves two query heads
            src, dst = getattr(gqa, name), getattr(mha, name)
            dst.weight.copy_(src.weight.view(2, 8, 32).repeat_interleave(2, 0).reshape(32, 32))
            dst.bias.copy_(src.bias.view(2, 8).repeat_interleave(2, 0).reshape(32))
    x = torch.randn(N, L, 32)
    torch.testing.assert_close(gqa(x, is_causal=True), mha(x, is_causal=True), atol=1e-5, rtol=1e-5)
    assert gqa.k_proj.weight.shape == (16, 32)


def test_layer_rejects_bad_head_counts():
    with pytest.raises(ConfigError, match=r"d_model=30 is not divisible by num_heads=4"):
        MultiHeadAttention(d_model=30, num_heads=4, kernel=MathAttention())
    with pytest.raises(ConfigError, match=r"num_heads=4 is not divisible by num_kv_heads=3"):
        MultiHeadAttention(d_model=32, num_heads=4, num_kv_heads=3, kernel=MathAttention())
