"""AdamW groups and schedules, checked against the closed formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from swapformer.errors import ConfigError
from swapformer.tasks import CausalLMModule, Seq2SeqModule
from swapformer.training.optim import (
    SCHEDULES,
    fused_adamw_supported,
    inverse_sqrt,
    param_groups,
    schedule_fn,
    warmup_cosine,
)

TINY = dict(vocab_size=40, d_model=16, num_heads=2, num_layers=2, d_ff=32, max_seq_len=16)


def _groups_by_decay(module):
    groups = param_groups(module.model, weight_decay=0.1)
    return {g["weight_decay"]: set(g["names"]) for g in groups}


@pytest.mark.parametrize(
    "options",
    [
        dict(positional="learned", norm="layernorm", bias=True),
        dict(positional="rope", norm="rmsnorm", ffn="swiglu", bias=False, tie_embeddings=False),
    ],
)
def test_no_decay_on_norms_biases_embeddings(options):
    module = CausalLMModule(**TINY, **options)
    by_decay = _groups_by_decay(module)
    decayed, kept = by_decay[0.1], by_decay[0.0]
    modules = dict(module.model.named_modules())
    for name, param in module.model.named_parameters():
        owner = modules[name.rsplit(".", 1)[0]]
        expect_no_decay = param.ndim < 2 or isinstance(owner, nn.Embedding | nn.LayerNorm | nn.RMSNorm)
        assert (name in kept) == expect_no_decay, name
        assert (name in decayed) == (not expect_no_decay), name
    # every decayed parameter is a Linear weight matrix; every trainable parameter is in exactly one group
    assert all(isinstance(modules[n.rsplit(".", 1)[0]], nn.Linear) and n.endswith("weight") for n in decayed)
    assert len(decayed) + len(kept) == len(list(module.model.parameters()))
    if options["positional"] == "learned":
        assert "positional.table.weight" in kept  # the model owns its positional member


def test_tied_head_counted_once_and_not_decayed():
    module = CausalLMModule(**TINY, tie_embeddings=True)
    names = [n for g in param_groups(module.model, weight_decay=0.1) for n in g["names"]]
    assert "embedding.token.weight" in names and "lm_head.weight" not in names
    optimizer = module.configure_optimizers()["optimizer"]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    token = module.model.embedding.token.weight
    assert any(p is token for p in optimizer.param_groups[1]["params"])


def _lrs(module, steps):
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_cosine_matches_closed_formula():
    lr, warmup, total, floor = 3e-3, 10, 50, 0.1
    module = CausalLMModule(**TINY, lr=lr, warmup_steps=warmup, total_steps=total, min_lr_ratio=floor)
    lrs = _lrs(module, 60)
    for step, got in enumerate(lrs):
        if step < warmup:
            want = lr * (step + 1) / warmup
        else:
            progress = min(1.0, (step - warmup) / (total - warmup))
            want = lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
        assert got == pytest.approx(want, rel=1e-9), step
    assert max(lrs) == pytest.approx(lr) and lrs[-1] == pytest.approx(lr * floor)


def test_inverse_sqrt_is_the_paper_formula_with_lr_one():
    d_model, warmup = 512, 4000
    for step in (0, 1, 99, 3998, 3999, 4000, 10000, 100000):
        t = step + 1
        assert inverse_sqrt(step, warmup_steps=warmup, d_model=d_model) == pytest.approx(
            d_model**-0.5 * min(t**-0.5, t * warmup**-1.5), rel=1e-12
        )
    # peak at t = warmup: d^-0.5 * warmup^-0.5 (about 7.0e-4 for the base model)
    assert inverse_sqrt(warmup - 1, warmup_steps=warmup, d_model=d_model) == pytest.approx(
        (d_model * warmup) ** -0.5
    )
    module = Seq2SeqModule(**TINY, lr=2.0, schedule="inverse_sqrt", warmup_steps=5)
    lrs = _lrs(module, 20)
    for step, got in enumerate(lrs):
        t = step + 1
        assert got == pytest.approx(2.0 * 16**-0.5 * min(t**-0.5, t * 5**-1.5), rel=1e-9)


def test_warmup_cosine_helper_edges():
    assert warmup_cosine(0, warmup_steps=1, total_steps=1) == pytest.approx(1.0)
    assert warmup_cosine(10**6, warmup_steps=10, total_steps=100, min_lr_ratio=0.0) == pytest.approx(0.0)


def test_bad_schedule_and_smoothing_are_refused():
    with pytest.raises(ValueError, match="schedule='linear' is unknown; choose one of warmup_cosine"):
        CausalLMModule(**TINY, schedule="linear")
    with pytest.raises(ValueError, match=r"label_smoothing=1\.5"):
        CausalLMModule(**TINY, label_smoothing=1.5)


def test_a_schedule_added_to_the_registry_is_one_a_module_takes(monkeypatch):
    assert list(SCHEDULES) == ["warmup_cosine", "inverse_sqrt", "constant"]  # the default first
    monkeypatch.setattr(SCHEDULES, "_members", dict(SCHEDULES._members))  # undone after the test

    def halving(step: int, *, warmup_steps: int) -> float:
        """halves every warmup_steps steps"""
        return 0.5 ** (step // warmup_steps)

    SCHEDULES.add("halving", halving)  # what a plug-in's register function does
    module = CausalLMModule(**TINY, lr=1.0, schedule="halving", warmup_steps=2)
    assert _lrs(module, 5) == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25])
    with pytest.raises(
        ConfigError, match=r"schedule member 'constant' is already registered \(by swapformer\)"
    ):
        SCHEDULES.add("constant", halving)
    with pytest.raises(
        ConfigError,
        match=r"unknown schedule 'halfing' \(did you mean 'halving'\?\); available: warmup_cosine, inverse_sqrt",
    ):
        schedule_fn("halfing", warmup_steps=1, total_steps=2, d_model=8)


def test_optimizer_step_counts_match_lambda():
    module = CausalLMModule(**TINY, lr=1.0, schedule="constant", warmup_steps=4)
    assert _lrs(module, 6) == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_configured_adamw_is_fused_and_steps_like_the_reference_loop():
    """The module's optimizer is torch's fused AdamW (decoupled decay, groups kept); five steps of it give the
    same parameters as torch's per-tensor AdamW (``foreach=False``, the reference implementation)."""
    module = CausalLMModule(**TINY, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8)
    optimizer = module.configure_optimizers()["optimizer"]
    assert type(optimizer) is torch.optim.AdamW and optimizer.defaults["fused"] is True
    reference = [p.detach().clone().requires_grad_() for p in module.model.parameters()]
    start = [r.detach().clone() for r in reference]
    by_id = {id(p): r for p, r in zip(module.model.parameters(), reference)}
    ref_opt = torch.optim.AdamW(
        [
            {**{k: v for k, v in g.items() if k != "params"}, "params": [by_id[id(p)] for p in g["params"]]}
            for g in optimizer.param_groups
        ],
        foreach=False,
        fused=False,
    )
    assert [g["weight_decay"] for g in ref_opt.param_groups] == [0.1, 0.0]
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        for p, r in zip(module.model.parameters(), reference):
            grad = torch.randn(p.shape, generator=gen)
            p.grad, r.grad = grad, grad.clone()
        optimizer.step()
        ref_opt.step()
    for (name, p), r in zip(module.model.named_parameters(), reference):
        torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-5, atol=1e-6, msg=name)
    moved = [not torch.allclose(r.detach(), s0, atol=1e-4) for r, s0 in zip(reference, start)]
    assert all(moved)  # every parameter took real steps, so the comparison is not of untouched tensors


def test_fused_adamw_support_rule():
    cpu = [nn.Parameter(torch.zeros(2))]
    assert fused_adamw_supported(cpu)
    assert not fused_adamw_supported([])
    assert not fused_adamw_supported([nn.Parameter(torch.zeros(2, device="meta"))])
