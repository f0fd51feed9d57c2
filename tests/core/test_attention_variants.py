"""sliding_window against math with a banded mask; linear against its own quadratic form; GQA in every kernel."""

import pytest
import torch
import torch.nn.functional as F

from swapformer import available, family
from swapformer.compat import capabilities
from swapformer.components.attention import (
    LinearAttention,
    MathAttention,
    SlidingWindowAttention,
    band_mask,
    causal_mask,
    repeat_kv,
)
from swapformer.components.positional import ALiBiPositionalEncoding
from swapformer.errors import ConfigError

N, H, E = 3, 4, 8


def padding(lengths, total):
    return torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]  # (N, S) True = real


def qkv(length, source_length, kv_heads=H):
    return (
        torch.randn(N, H, length, E),
        torch.randn(N, kv_heads, source_length, E),
        torch.randn(N, kv_heads, source_length, E),
    )


def test_band_mask_is_the_window_around_each_query():
    band = band_mask(
        3, 8, window=3
    )  # queries at positions 5, 6, 7 of 8 (bottom-right, as in cached decoding)
    for i in range(3):
        for j in range(8):
            assert band[i, j] == (abs(5 + i - j) < 3)


@pytest.mark.parametrize("window", [1, 3, 50])
@pytest.mark.parametrize("kv_heads", [H, 2, 1], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("case", ["causal", "causal-padded", "bidirectional-padded", "alibi", "cached"])
def test_sliding_window_equals_math_with_a_banded_mask(window, kv_heads, case):
    length = source_length = 9
    if case == "cached":  # 3 new queries at positions 6..8 against 9 cached keys, causality in the mask
        length = 3
    q, k, v = qkv(length, source_length, kv_heads)
    pad = padding([9, 5, 1], source_length)[:, None, None, :]  # (N, 1, 1, S)
    offset = source_length - length
    causal = causal_mask(length, source_length, offset=offset)
    kwargs = {
        "causal": {"is_causal": True},
        "causal-padded": {"attn_mask": pad & causal},
        "bidirectional-padded": {"attn_mask": pad},
        "alibi": {
            "attn_mask": ALiBiPositionalEncoding(num_heads=H).bias(length, source_length),
            "is_causal": True,
        },
        "cached": {"attn_mask": pad & causal},
    }[case]
    band = band_mask(length, source_length, window=window)
    mask = kwargs.get("attn_mask")
    if case == "alibi":
        reference_mask = mask.masked_fill(~(band & causal), float("-inf"))
    else:
        reference_mask = (
            band & (causal if kwargs.get("is_causal") else True) & (True if mask is None else mask)
        )
    ours, weights = SlidingWindowAttention(window=window)(q, k, v, need_weights=True, **kwargs)
    expected, expected_weights = MathAttention()(q, k, v, attn_mask=reference_mask, need_weights=True)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, expected_weights)
    fused, _ = SlidingWindowAttention(window=window)(q, k, v, **kwargs)  # the sdpa path
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=1e-5)


def test_sliding_window_refuses_a_window_below_one():
    with pytest.raises(
        ConfigError, match=r"sliding_window needs a window of at least 1 position, got window=0"
    ):
        family("attention").build({"name": "sliding_window", "window": 0})


def quadratic_linear_attention(q, k, v, mask):
    """The quadratic form of linear attention: weights phi(q_i).phi(k_j) over the allowed keys, normalized."""
    k, v = repeat_kv(k, v, q.size(1))
    scores = (F.elu(q) + 1) @ (F.elu(k) + 1).transpose(-2, -1)  # (N, H, L, S)
    scores = scores * mask
    total = scores.sum(-1, keepdim=True)
    weights = torch.where(total > 0, scores / total.clamp_min(1e-30), 0.0)
    return weights @ v, weights


@pytest.mark.parametrize("kv_heads", [H, 2, 1], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("case", ["full", "padded", "causal", "causal-padded", "cached-padded", "empty-rows"])
def test_linear_attention_equals_its_quadratic_form(kv_heads, case):
    length = source_length = 7
    if case == "cached-padded":
        length = 2
    q, k, v = qkv(length, source_length, kv_heads)
    lengths = [0, 0, 3] if case == "empty-rows" else [7, 4, 1]
    pad = padding(lengths, source_length)[:, None, None, :]
    causal = causal_mask(length, source_length, offset=source_length - length)
    kwargs, mask = {
        "full": ({}, torch.ones(length, source_length, dtype=torch.bool)),
        "padded": ({"attn_mask": pad}, pad),
        "causal": ({"is_causal": True}, causal),
        "causal-padded": ({"attn_mask": pad & causal}, pad & causal),
        "cached-padded": ({"attn_mask": pad & causal}, pad & causal),
        "empty-rows": ({"attn_mask": pad & causal}, pad & causal),
    }[case]
    expected, expected_weights = quadratic_linear_attention(q, k, v, mask)
    ours, weights = LinearAttention()(q, k, v, need_weights=True, **kwargs)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=1e-5)


def test_linear_attention_gives_finite_gradients_for_rows_with_nothing_to_attend():
    q, k, v = (t.requires_grad_() for t in qkv(5, 5))
    mask = padding([5, 0, 2], 5)[:, None, None, :] & causal_mask(5, 5)
    out, _ = LinearAttention()(q, k, v, attn_mask=mask)
    assert (out[1] == 0).all()
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_linear_attention_refuses_masks_it_cannot_apply():
    q, k, v = qkv(4, 4)
    with pytest.raises(ValueError, match=r"'linear' cannot add a float score bias .* use attention 'sdpa'"):
        LinearAttention()(q, k, v, attn_mask=torch.zeros(4, 4))
    band = band_mask(4, 4, window=2)  # a key hidden in the middle of a query's range is not a prefix
    with pytest.raises(ValueError, match=r"needs each query to see a prefix of the real keys"):
        LinearAttention()(q, k, v, attn_mask=band)


# softmax kernels; a whole attention layer (mla) has no key/value heads to share (its own tests cover its cache)
KERNELS = [name for name in available("attention") if not capabilities("attention", name).layer]


@pytest.mark.parametrize("attention", KERNELS)
@pytest.mark.parametrize("kv_heads", [2, 1], ids=["gqa", "mqa"])
def test_every_kernel_shares_key_value_heads_like_repeated_heads(attention, kv_heads):
    kernel = family("attention").build(attention)
    q, k, v = qkv(6, 6, kv_heads)
    mask = padding([6, 3, 4], 6)[:, None, None, :] & causal_mask(6, 6)
    grouped, _ = kernel(q, k, v, attn_mask=mask)
    repeated, _ = kernel(q, *repeat_kv(k, v, H), attn_mask=mask)
    torch.testing.assert_close(grouped, repeated, atol=1e-6, rtol=1e-5)
