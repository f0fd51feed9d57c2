"""Members today's dense families are made of, against transformers' own modules where they exist: Gemma's
``(1 + w)`` RMSNorm, OLMo 2's norm inside the residual branch (``res_post``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from swapformer import ConfigError, build_causal_lm, family
from swapformer.models import init_weights
from swapformer.training import param_groups

gemma2 = pytest.importorskip(
    "transformers.models.gemma2.modeling_gemma2", reason="needs transformers' Gemma 2"
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_unit_offset_rmsnorm_is_gemmas(dtype):
    torch.manual_seed(0)
    ours = family("norm").build({"name": "rmsnorm", "unit_offset": True, "eps": 1e-6}, d_model=16)
    theirs = gemma2.Gemma2RMSNorm(16, eps=1e-6)
    assert torch.equal(ours.weight, theirs.weight)  # both start at zero: a gain of exactly 1
    with torch.no_grad():
        weight = torch.randn(16)
        ours.weight.copy_(weight)
        theirs.weight.copy_(weight)
    ours, theirs = ours.to(dtype), theirs.to(dtype)
    x = (torch.randn(3, 5, 16) * 4).to(dtype)
    assert torch.equal(ours(x), theirs(x))
    plain = family("norm").build("rmsnorm", d_model=16)
    with torch.no_grad():
        plain.weight.copy_(1 + weight)
    assert (plain.float()(x.float()) - ours(x).float()).abs().max() < 0.05  # the same map, stored otherwise


def test_unit_offset_rmsnorm_keeps_its_zero_start_and_takes_no_decay():
    model = build_causal_lm(
        dict(
            vocab_size=30,
            d_model=16,
            num_heads=2,
            num_layers=2,
            norm={"name": "rmsnorm", "unit_offset": True},
        )
    )
    init_weights(model, std=0.02, num_layers=2)
    norms = [m for m in model.modules() if type(m).__name__ == "UnitOffsetRMSNorm"]
    assert len(norms) == 5 and all(torch.equal(m.weight, torch.zeros(16)) for m in norms)
    no_decay = {
        n for g in param_groups(model, weight_decay=0.1) if g["weight_decay"] == 0 for n in g["names"]
    }
    assert {n for n, p in model.named_parameters() if n.endswith("norm.weight")} <= no_decay
    with pytest.raises(ConfigError, match=r"unit_offset='yes' must be true or false"):
        family("norm").build({"name": "rmsnorm", "unit_offset": "yes"}, d_model=16)


def test_res_post_normalizes_each_branch_inside_the_residual():
    torch.manual_seed(0)
    sublayer, norm = nn.Linear(8, 8), nn.RMSNorm(8)
    step = family("placement").build("res_post", sublayer=sublayer, norm=norm).eval()
    x = torch.randn(2, 3, 8) * 5
    with torch.no_grad():
        assert torch.equal(step(x), x + norm(sublayer(x)))  # OLMo 2: h = x + norm(f(x)); no norm on x itself
    model = build_causal_lm(dict(vocab_size=30, d_model=16, num_heads=2, num_layers=2, placement="res_post"))
    assert (
        model.decoder.final_norm is not None
    )  # the residual stream is never normalized: the stack ends with one
