"""Attention sinks (GPT-OSS) against transformers' GptOssAttention, and the fused path against the math kernel."""

import pytest
import torch

from swapformer import family
from swapformer.components.attention.sinks import sink_key, softmax_with_sinks
from swapformer.components.declarations import tensor_parallel_plan
from swapformer.components.positional import RotaryPositionalEncoding
from swapformer.errors import ConfigError
from swapformer.nn import MultiHeadAttention

D, H, HKV, E, WINDOW, L = 32, 4, 2, 8, 4, 9


def gpt_oss(layer_type: str):
    from transformers import GptOssConfig
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssAttention, GptOssRotaryEmbedding

    config = GptOssConfig(
        hidden_size=D, num_attention_heads=H, num_key_value_heads=HKV, head_dim=E, sliding_window=WINDOW,
        layer_types=[layer_type], num_hidden_layers=1, attention_bias=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )  # fmt: skip
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    theirs = GptOssAttention(config, layer_idx=0).eval()
    with torch.no_grad():  # weights large enough that attention is far from uniform, sinks of both signs
        for parameter in theirs.parameters():
            parameter.normal_(std=0.5)
        theirs.sinks.copy_(torch.tensor([2.0, -1.0, 0.5, -3.0]))
    return theirs, GptOssRotaryEmbedding(config)


def ours_from(theirs, kernel):
    rope = RotaryPositionalEncoding(head_dim=E)
    ours = MultiHeadAttention(
        d_model=D,
        num_heads=H,
        num_kv_heads=HKV,
        head_dim=E,
        kernel=kernel,
        positional=rope,
        owns_positional=True,
    ).eval()
    with torch.no_grad():
        for name in ("q_proj", "k_proj", "v_proj"):
            getattr(ours, name).load_state_dict(getattr(theirs, name).state_dict())
        ours.out_proj.load_state_dict(theirs.o_proj.state_dict())
        sinks = kernel.sinks if hasattr(kernel, "sinks") else kernel.kernel.sinks
        sinks.copy_(theirs.sinks)
    return ours


def additive_mask(window: int | None) -> torch.Tensor:
    query, key = torch.arange(L)[:, None], torch.arange(L)[None, :]
    allowed = key <= query
    if window is not None:  # GPT-OSS's sliding layers: the key within `window` positions, itself included
        allowed &= query - key < window
    return torch.zeros(L, L).masked_fill(~allowed, float("-inf"))[None, None]


@pytest.mark.parametrize(
    ("layer_type", "spec"),
    [
        ("full_attention", {"name": "math", "sinks": True}),
        ("full_attention", {"name": "sdpa", "sinks": True}),
        ("sliding_attention", {"name": "sliding_window", "window": WINDOW, "sinks": True}),
        ("sliding_attention", {"name": "sliding_window", "window": WINDOW, "sinks": True, "softcap": 1e9}),
    ],
)
def test_sinks_equal_gpt_oss_attention(layer_type, spec):
    theirs, rotary = gpt_oss(layer_type)
    ours = ours_from(theirs, family("attention").build(spec, num_heads=H))
    x = torch.randn(2, L, D)
    cos, sin = rotary(x, torch.arange(L)[None])
    window = WINDOW if layer_type == "sliding_attention" else None
    with torch.no_grad():
        expected, _ = theirs(x, (cos, sin), additive_mask(window))
        got = ours(x, is_causal=True)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # the sinks matter: without them the output moves
    with torch.no_grad():
        (ours.kernel.sinks if hasattr(ours.kernel, "sinks") else ours.kernel.kernel.sinks).fill_(-1e4)
        assert (ours(x, is_causal=True) - expected).abs().max() > 1e-2


def test_the_fused_path_equals_math_with_masks_and_carries_gradients_to_the_sinks():
    generator = torch.Generator().manual_seed(3)
    q = torch.randn(2, H, 5, E, generator=generator)
    k, v = (torch.randn(2, HKV, 7, E, generator=generator) for _ in range(2))
    padding = (
        torch.arange(7)[None, None, None, :] < torch.tensor([7, 0])[:, None, None, None]
    )  # row 1: no key
    math, sdpa = (
        family("attention").build({"name": n, "sinks": True}, num_heads=H) for n in ("math", "sdpa")
    )
    with torch.no_grad():
        math.sinks.copy_(torch.randn(H, generator=generator))
        sdpa.sinks.copy_(math.sinks)
    for args in ({}, {"is_causal": True}, {"attn_mask": padding}, {"attn_mask": padding, "is_causal": True}):
        expected, weights = math(q, k, v, need_weights=True, **args)
        got, _ = sdpa(q, k, v, **args)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        assert (weights.sum(-1) < 1).all()  # the sink takes its share of every row
    assert torch.equal(
        sdpa(q, k, v, attn_mask=padding)[0][1], torch.zeros(H, 5, E)
    )  # nothing to attend: zeros
    sdpa(q, k, v, is_causal=True)[0].square().sum().backward()
    math(q, k, v, is_causal=True)[0].square().sum().backward()
    torch.testing.assert_close(sdpa.sinks.grad, math.sinks.grad, atol=1e-5, rtol=1e-5)
    assert sdpa.sinks.grad.ne(0).all()


def test_sink_helpers_are_the_formula():
    scores, sinks = torch.randn(2, H, 3, 5), torch.randn(H)
    expected = scores.exp() / (scores.exp().sum(-1, keepdim=True) + sinks.exp()[None, :, None, None])
    torch.testing.assert_close(softmax_with_sinks(scores, sinks), expected)
    key, value, mask = sink_key(torch.randn(2, HKV, 5, E), torch.randn(2, HKV, 5, E), sinks, length=3,
                                attn_mask=None, is_causal=False)  # fmt: skip
    assert key.shape == value.shape == (2, HKV, 6, E) and mask.shape == (1, H, 3, 6)
    assert key[:, :, -1].eq(0).all() and value[:, :, -1].eq(0).all()
    torch.testing.assert_close(mask[0, :, 0, -1], sinks)


def test_sinks_are_refused_by_a_kernel_without_them_and_must_be_a_bool():
    with pytest.raises(
        ConfigError,
        match=r"attention 'linear' takes no option 'sinks'.*math, sdpa, sliding_window take 'sinks'",
    ):
        family("attention").build({"name": "linear", "sinks": True})
    with pytest.raises(ConfigError, match=r"sdpa: sinks='yes' must be true or false"):
        family("attention").build({"name": "sdpa", "sinks": "yes"}, num_heads=H)


@pytest.mark.parametrize("kernel", ["math", "sdpa", "sliding_window"])
def test_sink_logits_split_by_heads_under_tensor_parallelism(kernel):
    # (TP = 2 against one process, sinks included: tests/lightning/tensor_parallel_probe.py)
    plain = family("attention").build(kernel, num_heads=4)
    assert tensor_parallel_plan(plain, 2) == {}  # the same kernel without sinks runs on the local heads
    with_sinks = family("attention").build(kernel, sinks=True, num_heads=4)
    holder = with_sinks.kernel if kernel == "sliding_window" else with_sinks
    assert str(tensor_parallel_plan(holder, 2)) == "{'': sinks split by heads}"
    if holder is not with_sinks:  # the window leaves them to the kernel inside
        assert tensor_parallel_plan(with_sinks, 2) == {}
