"""q/k norms over the whole projection (OLMo 2) beside the per-head ones (Qwen3): the formula, the cache, and
the one-line refusals."""

from __future__ import annotations

import pytest
import torch

from swapformer import ConfigError, build_causal_lm, to_hf
from swapformer.models.causal_lm import CausalStep
from swapformer.nn.cache import KVCache

BASE = dict(vocab_size=40, d_model=32, num_heads=4, num_kv_heads=2, head_dim=12, num_layers=2, d_ff=48)


def test_projection_scope_normalizes_all_of_q_and_of_k_before_the_heads_split():
    torch.manual_seed(0)
    model = build_causal_lm({**BASE, "dropout": 0.0, "positional": "none", "qk_norm": "rmsnorm",
                             "qk_norm_scope": "projection"}).eval()  # fmt: skip
    attention = model.decoder.layers[0].self_attention.sublayer
    assert attention.q_norm.normalized_shape == (4 * 12,) and attention.k_norm.normalized_shape == (2 * 12,)
    with torch.no_grad():
        for norm in (attention.q_norm, attention.k_norm):
            norm.weight.normal_()
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        got = attention(x, is_causal=True)
        # OLMo 2's order: project, normalize each projection as a whole, then split into heads
        q = attention.q_norm(attention.q_proj(x)).view(2, 5, 4, 12).transpose(1, 2)
        k = attention.k_norm(attention.k_proj(x)).view(2, 5, 2, 12).transpose(1, 2)
        v = attention.v_proj(x).view(2, 5, 2, 12).transpose(1, 2)
        k, v = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
        weights = torch.softmax(
            (q @ k.transpose(-2, -1)) / 12**0.5 + torch.full((5, 5), float("-inf")).triu(1), -1
        )
        want = attention.out_proj((weights @ v).transpose(1, 2).reshape(2, 5, 48))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scope", ["head", "projection"])
def test_both_scopes_decode_with_the_cache_as_without(scope):
    torch.manual_seed(0)
    model = build_causal_lm({**BASE, "dropout": 0.0, "positional": "rope", "qk_norm": "rmsnorm",
                             "qk_norm_scope": scope}).eval()  # fmt: skip
    ids = torch.randint(3, 40, (2, 12))
    cache = KVCache(2, capacity=12)
    with torch.inference_mode():
        full = model(ids)
        steps = [model(ids[:, :5], cache=cache)[:, -1]]
        assert CausalStep(model, cache).plan() is not None
        steps += [model(ids[:, i : i + 1], cache=cache)[:, -1] for i in range(5, 12)]
    torch.testing.assert_close(torch.stack(steps, 1), full[:, 4:], atol=1e-5, rtol=1e-5)


def test_a_bad_scope_is_one_line_and_qwen3_refuses_the_projection_scope(tmp_path):
    with pytest.raises(ConfigError, match=r"qk_norm_scope='heads' must be 'head' .* or 'projection'"):
        build_causal_lm({**BASE, "qk_norm": "rmsnorm", "qk_norm_scope": "heads"})
    model = build_causal_lm({**BASE, "positional": "rope", "norm": "rmsnorm", "ffn": "swiglu", "bias": False,
                             "qk_norm": "rmsnorm", "qk_norm_scope": "projection"})  # fmt: skip
    refusal = (
        r"qwen3: qk_norm_scope 'projection' \(qwen3 normalizes each head: qk_norm_scope: head\) has no qwen3"
    )
    with pytest.raises(ConfigError, match=refusal):
        to_hf(model, tmp_path / "hf", model_type="qwen3")
