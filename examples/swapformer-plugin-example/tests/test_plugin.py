"""The plug-in's own tests: it is found by name, and its kernel agrees with swapformer's `math` kernel."""

import torch

import swapformer
from swapformer import family


def test_members_are_registered_by_name():
    assert "softcap" in swapformer.available("attention")
    assert "reglu" in swapformer.available("ffn")


def test_a_large_cap_gives_back_plain_attention():
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    mask = torch.rand(2, 1, 5, 7) > 0.3
    capped, weights = family("attention").build({"name": "softcap", "cap": 1e6})(
        q, k, v, attn_mask=mask, need_weights=True
    )
    reference, expected = family("attention").build("math")(q, k, v, attn_mask=mask, need_weights=True)
    torch.testing.assert_close(capped, reference)
    torch.testing.assert_close(weights, expected)


def test_a_model_trains_with_the_plugin_members():
    model = swapformer.build_causal_lm(
        {
            "vocab_size": 50,
            "d_model": 32,
            "num_heads": 4,
            "num_layers": 2,
            "d_ff": 64,
            "attention": {"name": "softcap", "cap": 30.0},
            "ffn": "reglu",
            "placement": "pre",
        }
    )
    ids = torch.randint(50, (2, 12))
    loss = torch.nn.functional.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    assert torch.isfinite(loss)
