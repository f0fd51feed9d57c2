"""Soft-capping (Gemma 2): attention scores capped by the kernel's ``softcap`` option, logits by the model's
``logit_softcap``; against transformers' Gemma 2 attention and the formula ``cap * tanh(x / cap)``."""

from __future__ import annotations

import re
import types

import pytest
import torch

from swapformer import ConfigError, build_causal_lm, build_masked_lm, build_seq2seq, family, to_hf
from swapformer.components.attention import MathAttention, band_mask
from swapformer.components.attention.scaled_dot_product import scaled_dot_product
from swapformer.components.softcap import soft_cap, soft_capped_scores
from swapformer.models.causal_lm import CausalStep
from swapformer.nn.cache import KVCache

gemma2 = pytest.importorskip(
    "transformers.models.gemma2.modeling_gemma2", reason="needs transformers' Gemma 2"
)


def _qkv(kv_heads: int, length: int = 7, source: int = 9, heads: int = 4, dim: int = 8):
    torch.manual_seed(kv_heads)
    # scores well beyond the cap, so capping changes them
    return (
        torch.randn(2, heads, length, dim) * 3,
        torch.randn(2, kv_heads, source, dim) * 3,
        torch.randn(2, kv_heads, source, dim),
    )


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
@pytest.mark.parametrize("masked", [False, True])
def test_math_softcap_is_gemma2_attention(kv_heads, masked):
    query, key, value = _qkv(kv_heads)
    mask = torch.rand(2, 1, 7, 9) > 0.3
    mask[..., 0] = True  # every query sees a key
    bias = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    module = types.SimpleNamespace(num_key_value_groups=4 // kv_heads, training=False, head_dim=8)
    want, want_weights = gemma2.eager_attention_forward(
        module, query, key, value, bias if masked else None, scaling=0.3, softcap=5.0
    )
    got, weights = MathAttention(softcap=5.0)(
        query, key, value, attn_mask=mask if masked else None, scale=0.3, need_weights=True
    )
    torch.testing.assert_close(got.transpose(1, 2), want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights, want_weights, atol=1e-6, rtol=1e-5)
    uncapped, _ = MathAttention()(query, key, value, attn_mask=mask if masked else None, scale=0.3)
    assert (uncapped - got).abs().max() > 1e-2  # the cap changed something: the comparison means something


@pytest.mark.parametrize("kv_heads", [4, 1])
@pytest.mark.parametrize("is_causal", [False, True])
def test_math_softcap_without_a_mask_is_gemma2_attention_and_its_gradients(kv_heads, is_causal):
    # no attn_mask and no weights asked for: the kernel's shorter path (soft_capped_attention)
    inputs = _qkv(kv_heads)
    ours = [t.clone().requires_grad_() for t in inputs]
    theirs = [t.clone().requires_grad_() for t in inputs]
    causal = torch.ones(7, 9, dtype=torch.bool).tril()  # top-left aligned, as SDPA's is_causal
    bias = torch.zeros(7, 9).masked_fill(~causal, float("-inf")) if is_causal else None
    module = types.SimpleNamespace(num_key_value_groups=4 // kv_heads, training=False, head_dim=8)
    want, _ = gemma2.eager_attention_forward(module, *theirs, bias, scaling=0.3, softcap=5.0)
    got, weights = MathAttention(softcap=5.0)(*ours, is_causal=is_causal, scale=0.3)
    assert weights is None
    torch.testing.assert_close(got.transpose(1, 2), want, atol=1e-6, rtol=1e-5)
    upstream = torch.randn(want.shape)
    got.transpose(1, 2).backward(upstream)
    want.backward(upstream)
    for mine, reference in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine.grad, reference.grad, atol=1e-5, rtol=1e-4)
    # and the kernel's general path (an all-True mask) gives the same numbers
    general, _ = MathAttention(softcap=5.0)(
        *inputs, attn_mask=torch.ones(7, 9, dtype=torch.bool), is_causal=is_causal, scale=0.3
    )
    torch.testing.assert_close(got.detach(), general, atol=1e-6, rtol=1e-5)


def test_capped_scores_with_the_scale_on_the_queries_are_the_formula_and_its_gradients():
    query, key, _ = _qkv(4)
    ours = [t.clone().requires_grad_() for t in (query, key)]
    plain = [t.clone().requires_grad_() for t in (query, key)]
    got = soft_capped_scores(*ours, 0.3, 5.0)
    want = 5.0 * torch.tanh(plain[0] @ plain[1].transpose(-2, -1) * 0.3 / 5.0)  # cap tanh(e / cap), e scaled
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    upstream = torch.randn(want.shape)
    got.backward(upstream)
    want.backward(upstream)
    for mine, reference in zip(ours, plain):
        torch.testing.assert_close(mine.grad, reference.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("is_causal", [True, False])
@pytest.mark.parametrize(("length", "source"), [(130, 130), (70, 90), (90, 70)])
@pytest.mark.parametrize(
    ("cap", "reach"),  # the largest |q k^T scale / cap|: within the series' range, at its edge, beyond it
    [(50.0, 0.1), (50.0, 0.34), (50.0, 0.6), (5.0, 2.0)],
)
def test_capped_training_path_is_the_math_kernel_and_its_gradients(is_causal, length, source, cap, reach):
    # SoftCappedAttention (blocks of queries, the series of tanh, a hand-written backward) against the general
    # path's operators under autograd: masked_fill of the scores, torch.tanh, softmax
    generator = torch.Generator().manual_seed(length + source)
    query, key = (torch.randn(2, 4, n, 16, generator=generator) for n in (length, source))
    value = torch.randn(2, 2, source, 16, generator=generator)  # grouped: 2 key/value heads for 4 query heads
    key = key[:, :2]
    x = query @ key.repeat_interleave(2, 1).transpose(-2, -1) / (4.0 * cap)  # q k^T scale / cap
    query = query * (reach / x.abs().max())
    ours = [t.clone().requires_grad_() for t in (query, key, value)]
    theirs = [t.clone().requires_grad_() for t in (query, key, value)]
    got, _ = MathAttention(softcap=cap)(*ours, is_causal=is_causal)
    assert type(got.grad_fn).__name__ == "SoftCappedAttentionBackward"  # the path under test
    want, _ = scaled_dot_product(*theirs, is_causal=is_causal, softcap=cap)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    upstream = torch.randn(want.shape, generator=generator)
    grads = torch.autograd.grad(got, ours, upstream, retain_graph=True)
    for mine, reference in zip(grads, torch.autograd.grad(want, theirs, upstream), strict=True):
        # to 1e-6 of the largest entry: the backward sums in its own order (the softmax's row sums over E, not
        # S), so an entry that is 0 by cancellation (a query that sees one key) comes out as float rounding
        torch.testing.assert_close(mine, reference, atol=1e-6 * reference.abs().max().item(), rtol=1e-5)
    again = torch.autograd.grad(got, ours, upstream)  # the backward leaves what it keeps as it was
    assert all(torch.equal(a, b) for a, b in zip(grads, again, strict=True))


@pytest.mark.parametrize("spread", [0.5, 10.0, 100.0])  # within the series' range (|x / 30| <= 0.35), beyond
def test_logit_softcap_training_path_is_the_formula_and_its_gradients(spread):
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 6, 129, generator=generator) * spread
    ours, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    got = soft_cap(ours, 30.0)
    assert type(got.grad_fn).__name__ == "SoftCapBackward"  # the path under test
    want = 30.0 * torch.tanh(theirs / 30.0)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    upstream = torch.randn(want.shape, generator=generator)
    got.backward(upstream)
    want.backward(upstream)
    torch.testing.assert_close(ours.grad, theirs.grad, atol=1e-6, rtol=1e-6)


def test_capped_kernel_takes_its_training_path_only_for_gradients_on_the_cpu_in_float32():
    query, key, value = _qkv(4)
    kernel = MathAttention(softcap=5.0)
    with torch.no_grad():
        assert kernel(query, key, value, is_causal=True)[0].grad_fn is None  # decoding: the operators
    for inputs in ([t.double().requires_grad_() for t in (query, key, value)], [query, key, value]):
        out, _ = kernel(*inputs, is_causal=True)
        assert out.grad_fn is None or type(out.grad_fn).__name__ != "SoftCappedAttentionBackward"
        want, _ = scaled_dot_product(*inputs, is_causal=True, softcap=5.0)
        torch.testing.assert_close(out, want, atol=1e-6, rtol=1e-5)


def test_sliding_window_softcap_is_math_softcap_on_the_band():
    query, key, value = _qkv(2, length=9, source=9)
    kernel = family("attention").build({"name": "sliding_window", "window": 3, "softcap": 5.0})
    got, _ = kernel(query, key, value, is_causal=True)
    band = band_mask(9, 9, window=3) & torch.ones(9, 9, dtype=torch.bool).tril()
    want, _ = MathAttention(softcap=5.0)(query, key, value, attn_mask=band)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


BASE = dict(vocab_size=40, d_model=32, num_heads=4, num_layers=2, d_ff=64, dropout=0.0)


@pytest.mark.parametrize("builder", [build_causal_lm, build_seq2seq, build_masked_lm])
def test_logit_softcap_caps_the_logits(builder):
    ids = torch.randint(3, 40, (2, 6))
    outputs = []
    for cap in (None, 0.1):  # a cap below the logits' size (std 0.02 weights): every logit moves
        torch.manual_seed(0)
        model = builder({**BASE, "logit_softcap": cap}).eval()
        args = (ids, ids) if builder is build_seq2seq else (ids,)
        with torch.no_grad():
            outputs.append(model(*args))
    uncapped, capped = outputs
    torch.testing.assert_close(capped, 0.1 * torch.tanh(uncapped / 0.1), atol=1e-6, rtol=1e-6)
    assert capped.abs().max() <= 0.1 < uncapped.abs().max()


def test_capped_models_decode_the_same_with_and_without_the_cache():
    config = {
        **BASE,
        "positional": "rope",
        "attention": {"name": "math", "softcap": 2.0},
        "logit_softcap": 3.0,
        "layers": {
            "pattern": ["local", "global"],
            "types": {
                "local": {"attention": {"name": "sliding_window", "window": 3, "softcap": 2.0}},
                "global": {},
            },
        },
    }
    torch.manual_seed(0)
    model = build_causal_lm(config).eval()
    ids = torch.randint(3, 40, (2, 5))
    cache = KVCache(2, capacity=16)
    with torch.inference_mode():
        model(ids, cache=cache)
        assert CausalStep(model, cache).plan() is not None  # the plan caps too
        cached = model.generate(ids, max_new_tokens=8, eos_token_id=[])
        uncached = model.generate(ids, max_new_tokens=8, eos_token_id=[], use_cache=False)
        full = model(cached)
    assert torch.equal(cached, uncached)
    assert torch.equal(
        full[:, 4:-1].argmax(-1), cached[:, 5:]
    )  # greedy: each new id is the full pass's argmax


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"attention": {"name": "sdpa", "softcap": 5.0}},
            r"'sdpa' takes no option 'softcap'.*flex, math, sliding_window take 'softcap'",
        ),
        ({"attention": {"name": "math", "softcap": 0}}, r"math: softcap=0 must be a number > 0"),
        (
            {"attention": {"name": "sliding_window", "window": 4, "softcap": -1.0}},
            r"softcap=-1.0 must be a number > 0",
        ),
        ({"logit_softcap": 0.0}, r"logit_softcap=0.0 must be a number > 0"),
        ({"logit_softcap": "30"}, r"logit_softcap='30' must be a number > 0"),
    ],
)
def test_a_bad_cap_is_one_line(changes, message):
    with pytest.raises(ConfigError, match=message):
        build_causal_lm({**BASE, **changes})


@pytest.mark.parametrize(
    "changes", [{"attention": {"name": "math", "softcap": 50.0}}, {"logit_softcap": 30.0}]
)
def test_families_without_soft_capping_refuse_to_export_it(changes, tmp_path):
    pytest.importorskip("transformers")
    model = build_causal_lm({**BASE, "positional": "rope", "norm": "rmsnorm", "ffn": "swiglu", **changes})
    with pytest.raises(ConfigError, match=r"cannot be exported to Hugging Face") as info:
        to_hf(model, tmp_path / "hf")
    for name in ("llama", "gpt2", "phi3", "qwen3", "smollm3"):  # each refuses the cap, in one line
        assert re.search(rf"{name}: (attention .*soft-capped|logit_softcap)", str(info.value)), name
    assert re.search(
        r"^norm 'rmsnorm' .* has no gemma2", str(info.value)
    )  # Gemma 2 caps, but has (1 + w) norms
