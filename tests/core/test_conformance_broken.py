"""Broken members, one per property of :mod:`swapformer.conformance`: each must fail the check of that property,
with a message naming the property and the member, while the built-in members pass.

Each member is registered through the registry's API, as a plug-in would, and removed after its test.
"""

from __future__ import annotations

import re
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from swapformer import conformance
from swapformer.cli import run
from swapformer.compat import Capabilities
from swapformer.components.attention import MathAttention
from swapformer.components.ffn import MixtureOfExperts, relu
from swapformer.components.positional.rope_scaling import ScaledRotaryPositionalEncoding
from swapformer.components.positional.sinusoidal import SinusoidalPositionalEncoding
from swapformer.conformance import Combination
from swapformer.nn import MultiHeadAttention
from swapformer.registry import FAMILIES


@pytest.fixture(autouse=True)
def _registries(monkeypatch):
    """The registries as they are; what a test adds to them is gone afterwards."""
    for family in FAMILIES.values():
        monkeypatch.setattr(family, "_members", dict(family._members))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ZeroAttention(MathAttention):
    """Returns zeros: every output is 'finite', causal and padding-invariant, and useless."""

    def forward(self, query, key, value, **kwargs):
        output, weights = super().forward(query, key, value, **kwargs)
        return torch.zeros_like(output), weights


class CausalOnlyInEvalAttention(MathAttention):
    """Forgets the causal mask while training (as a fast training path that drops ``is_causal`` would)."""

    def forward(self, query, key, value, *, is_causal=False, **kwargs):
        return super().forward(query, key, value, is_causal=is_causal and not self.training, **kwargs)


class CountingRope(ScaledRotaryPositionalEncoding):
    """Counts positions across calls instead of reading ``offset``: right with one layer, wrong with two (both
    layers' calls advance the one counter)."""

    def rotate(self, q, k, *, offset=0):
        if not isinstance(offset, int):
            return super().rotate(q, k, offset=offset)
        if offset == 0:
            self.seen = 0
        start, self.seen = self.seen, self.seen + q.size(-2)
        return super().rotate(q, k, offset=start)


class DetachedNorm(nn.LayerNorm):
    """Layer norm whose output is cut from the graph: nothing before it ever learns."""

    def __init__(self, *, d_model: int) -> None:
        super().__init__(d_model)

    def forward(self, x):
        return super().forward(x).detach()


def zero_ffn(*, d_model: int, d_ff: int) -> nn.Module:
    """A ReLU feed-forward whose output is multiplied by zero."""
    ffn = relu(d_model=d_model, d_ff=d_ff)
    ffn.register_forward_hook(lambda module, args, output: output * 0)
    return ffn


class MixedGroupsAttention(MathAttention):
    """Shares key/value heads across query heads in the wrong order (``repeat`` instead of
    ``repeat_interleave``): query head h reads key/value head h % Hkv instead of h // (H / Hkv)."""

    def forward(self, query, key, value, **kwargs):
        groups = query.size(1) // key.size(1)
        return super().forward(query, key.repeat(1, groups, 1, 1), value.repeat(1, groups, 1, 1), **kwargs)


class FirstHeadOnlyAttention(MathAttention):
    """Reads only the first key/value head: the other heads' W_k and W_v rows never get a gradient."""

    def forward(self, query, key, value, **kwargs):
        key, value = key[:, :1].expand_as(key), value[:, :1].expand_as(value)
        return super().forward(query, key, value, **kwargs)


class NoisyAttention(MathAttention):
    """Adds fresh noise to its output even in eval mode."""

    def forward(self, query, key, value, **kwargs):
        output, weights = super().forward(query, key, value, **kwargs)
        return output + 1e-3 * torch.randn_like(output), weights


class WrongScaleAttention(MathAttention):
    """Declares exact softmax attention but scales the scores by 1 / E instead of 1 / sqrt(E)."""

    capabilities: ClassVar[Capabilities] = Capabilities(exact_softmax=True)

    def forward(self, query, key, value, *, scale=None, **kwargs):
        return super().forward(
            query, key, value, scale=1.0 / query.size(-1) if scale is None else scale, **kwargs
        )


class AbsoluteCalledRelative(SinusoidalPositionalEncoding):
    """Absolute sinusoidal positions that declare themselves relative."""

    capabilities: ClassVar[Capabilities] = Capabilities(relative=True)


class _Reversed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


class GradientAscentNorm(nn.LayerNorm):
    """A correct layer norm in the forward pass whose backward pass flips the gradient's sign: every output
    check passes, every parameter gets a gradient, and training climbs the loss."""

    def __init__(self, *, d_model: int) -> None:
        super().__init__(d_model)

    def forward(self, x):
        return super().forward(_Reversed.apply(x))


class CapacityMixture(MixtureOfExperts):
    """A mixture of experts with a capacity of two tokens per expert, as token-dropping MoEs have: the tokens
    after the second of an expert lose it, so a token's output depends on the tokens before it in the batch."""

    def route(self, logits):
        weights, chosen = super().route(logits)
        one_hot = F.one_hot(chosen.reshape(-1), self.num_experts)  # (T k, E)
        rank = ((one_hot.cumsum(0) - 1) * one_hot).sum(-1).view_as(chosen)  # place in the expert's queue
        return weights * (rank < 2), chosen


class UniformBalanceMixture(MixtureOfExperts):
    """A mixture of experts whose balance loss weighs a uniform router instead of its own probabilities: the
    loss is then the constant k, which no gradient lowers."""

    def probabilities(self, logits):
        return torch.full_like(logits, 1.0 / self.num_experts)


def _failures(family: str, name: str, factory, kinds=("causal_lm",)) -> dict[str, str]:
    """Register ``factory`` as ``name`` in ``family`` and run ``swapformer check`` on the default combination of
    each kind with it: the failing checks and their messages."""
    FAMILIES[family].add(name, factory, source="my_plugin")
    failures: dict[str, str] = {}
    for kind_name in kinds:
        names = {**conformance.default_members(kind_name), family: name}
        result = conformance.run_combination(Combination(kind_name, *names.values()))
        failures.update({c.name: f"{result.combination.id}: {c.message}" for c in result.failures})
    return failures


BROKEN = [
    # (family, name, factory, kinds, failing check, message pattern)
    (
        "attention",
        "zeros",
        ZeroAttention,
        ("causal_lm",),
        "gradient_flow",
        r"no gradient reaches .*q_proj\.weight",
    ),
    (
        "attention",
        "eval_causal",
        CausalOnlyInEvalAttention,
        ("causal_lm",),
        "causality",
        r"in training mode, logits before position 1 changed",
    ),
    ("positional", "counting_rope", CountingRope, ("causal_lm",), "cached_decoding", r"KV cache differ"),
    (
        "norm",
        "detached",
        DetachedNorm,
        ("causal_lm",),
        "gradient_flow",
        r"no gradient reaches decoder\.layers\.0\.",
    ),
    ("ffn", "zero_ffn", zero_ffn, ("causal_lm",), "gradient_flow", r"no gradient reaches .*feed_forward"),
    (
        "attention",
        "mixed_groups",
        MixedGroupsAttention,
        ("causal_lm",),
        "head_layout",
        r"attention 'mixed_groups' .* with 2 key/value heads for 4 query heads differs",
    ),
    (
        "attention",
        "first_head",
        FirstHeadOnlyAttention,
        ("causal_lm",),
        "gradient_flow",
        r"k_proj\.weight \(key/value head 1 of 2\)",
    ),
    ("attention", "noisy", NoisyAttention, ("causal_lm",), "determinism", r"two eval-mode forward passes"),
    (
        "attention",
        "wrong_scale",
        WrongScaleAttention,
        ("causal_lm",),
        "reference",
        r"attention 'wrong_scale' .* declares exact_softmax but differs from the 'math' kernel",
    ),
    (
        "positional",
        "absolute_relative",
        AbsoluteCalledRelative,
        ("causal_lm",),
        "reference",
        r"positional 'absolute_relative' declares relative but its attention scores",
    ),
    ("norm", "ascent", GradientAscentNorm, ("causal_lm",), "train", r"did not memorize one batch"),
    (
        "ffn",
        "capacity_moe",
        CapacityMixture,
        ("causal_lm",),
        "mixture",
        r"row 1 alone differs from in the batch",
    ),
    (
        "ffn",
        "uniform_balance_moe",
        UniformBalanceMixture,
        ("causal_lm",),
        "mixture",
        r"moe_aux_loss differs from E sum_i f_i P_i",
    ),
]


@pytest.mark.parametrize(
    ("family", "name", "factory", "kinds", "check", "pattern"), BROKEN, ids=[b[1] for b in BROKEN]
)
def test_a_broken_member_fails_the_check_of_its_property(family, name, factory, kinds, check, pattern):
    failures = _failures(family, name, factory, kinds)
    assert check in failures, f"{name} passed {check}; failures: {failures}"
    assert name in failures[check]  # the member, through the combination's id or the message
    assert re.search(pattern, failures[check]), failures[check]


def test_the_check_command_names_the_property_and_the_member(capsys):
    FAMILIES["attention"].add("eval_causal", CausalOnlyInEvalAttention, source="my_plugin")
    with pytest.raises(SystemExit) as exit_info:
        run(["check", "eval_causal", "--quick", "--kind", "causal_lm"])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert (
        "causal_lm-eval_causal-sinusoidal-layernorm-pre-gelu: causality: in training mode, logits before "
        in out
    )
    # --quick does not train (32, 18 -mixed twins, the 2 moe variants, 4 option variants)
    assert re.search(r"\n  train\s+0\s+0\s+56\n", out)


def test_the_masked_kind_inverts_causality_for_a_kernel_forced_causal_in_training():
    class CausalWhileTraining(MathAttention):
        def forward(self, query, key, value, *, is_causal=False, **kwargs):
            return super().forward(query, key, value, is_causal=is_causal or self.training, **kwargs)

    failures = _failures("attention", "train_causal", CausalWhileTraining, kinds=("masked_lm",))
    assert "in training mode, logits before position 1 did not change" in failures["causality"]


def test_the_matrix_shows_the_declarations_the_reference_check_reads(capsys):
    FAMILIES["attention"].add("wrong_scale", WrongScaleAttention, source="my_plugin")
    run(["components", "--matrix"])
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.split()[:1] == ["attention"] and "exact_softmax" in line)
    column = header.split().index("exact_softmax")
    after = lines[lines.index(header) + 1 :]
    table = after[
        : next((i for i, line in enumerate(after) if not line.strip()), len(after))
    ]  # up to a blank
    rows = {line.split()[0]: line.split()[column] for line in table}
    assert rows["math"] == rows["sdpa"] == rows["wrong_scale"] == "yes" and rows["linear"] == "no"
    positional = next(line for line in lines if line.split()[:1] == ["positional"] and "relative" in line)
    assert positional.split().index("relative") > 0


def test_cached_decoding_runs_the_cross_attention_step_of_a_source_without_a_mask(monkeypatch):
    # a one-token cross-attention step that is wrong only where the source has no mask (its kernel function's
    # path): the check once decoded only a padded source, and passed it
    make = MultiHeadAttention.memory_decoding_function

    def halved_without_a_mask(self, cache):
        step = make(self, cache)
        if step is None:
            return None
        return lambda x, attn_mask=None: step(x, attn_mask) * (1.0 if attn_mask is not None else 0.5)

    combination = Combination("seq2seq", *conformance.default_members("seq2seq").values())
    conformance.check_cached_decoding(conformance.build(combination))  # the library's step passes
    monkeypatch.setattr(MultiHeadAttention, "memory_decoding_function", halved_without_a_mask)
    with pytest.raises(conformance.ConformanceFailure, match=r"KV cache differ.*a source without a mask"):
        conformance.check_cached_decoding(conformance.build(combination))
