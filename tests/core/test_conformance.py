"""The conformance suite over the registered combinations, and ``swapformer check``.

A covering of kind x kernel x positional x norm x placement x ffn (aliases once) runs every check of
:mod:`swapformer.conformance` on one tiny model: kind x kernel x positional x head layout in full, and every two
members of any two families together at least once (the full product, thousands of combinations, is what
``swapformer check all`` runs; the covering keeps the suite inside its time). A pair the compatibility matrix
refuses must be refused by ``ModelConfig`` with the matrix's reason. The suite can fail: a kernel that ignores
``is_causal`` is caught.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from swapformer import ConfigError, ModelConfig, conformance
from swapformer.cli import run
from swapformer.cli.check import resolve
from swapformer.compat import Capabilities
from swapformer.components.attention import MathAttention
from swapformer.components.positional.sinusoidal import SinusoidalPositionalEncoding
from swapformer.conformance import Combination, ConformanceFailure
from swapformer.models import build as build_model
from swapformer.nn import AttentionCache, MultiHeadAttention
from swapformer.registry import ATTENTION, FAMILIES, NORM, POSITIONAL

COMBOS = conformance.combinations()
COVERING = conformance.combinations(pairs=True)
TRAINED = conformance.combinations(quick=True)
"""Every member of every family in every kind, every head layout and option variant: these also memorize a batch
(``train``, the one expensive check); the rest of the product runs every other check."""


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # the models are tiny: threads only add overhead, and CI machines are shared
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TRAINED_SET = set(TRAINED)
ALL = list(dict.fromkeys([*COVERING, *TRAINED]))


@pytest.mark.parametrize("combination", ALL, ids=[c.id for c in ALL])
def test_every_combination_conforms(combination):
    reason = combination.refusal()
    if reason is not None:  # refused by the matrix: ModelConfig must refuse it too, saying why
        with pytest.raises(ConfigError, match=re.escape(reason)):
            ModelConfig(**conformance.TINY, **combination.components())
        return
    # patterned models (mixed) run every check but the training one, which their unmixed twins run
    result = conformance.run_combination(
        combination, quick=combination not in TRAINED_SET or combination.mixed
    )
    assert result.status == "pass", result.reason
    assert [c.name for c in result.checks] == list(conformance.CHECK_NAMES)


def test_combinations_are_the_full_product_of_distinct_members():
    sizes = {f: len(conformance.distinct_members(f)) for f in conformance.COMPONENTS}
    assert sizes == {"attention": 6, "positional": 6, "norm": 3, "placement": 5, "ffn": 7}
    assert {c.kind for c in COMBOS} == {"causal_lm", "seq2seq", "masked_lm"}
    product = [c for c in COMBOS if c.variant is None and not c.mixed and c.option is None]
    assert len(product) == 3 * 6 * 6 * 3 * 5 * 7 == len(set(product))
    assert {c.heads for c in product} == {"mha", "gqa", "mqa"}
    positional = {c.positional for c in COMBOS}
    assert "none" in positional and "nope" not in positional  # one factory, two names: run once
    refused = {(c.attention, c.positional) for c in COMBOS if c.refusal()}
    assert refused == {("linear", "alibi"), ("linear", "t5_relative")}


def _pairs(c):
    members = [(f, getattr(c, f)) for f in conformance.COMPONENTS]
    return {(c.kind, a, b) for i, a in enumerate(members) for b in members[i + 1 :]}


def test_the_covering_meets_every_pair_of_members_the_full_product_runs():
    product = [c for c in COMBOS if c.variant is None and not c.mixed]
    covering = [c for c in COVERING if c.variant is None and not c.mixed]

    def members(c):
        return (c.kind, *(getattr(c, f) for f in conformance.COMPONENTS))

    # combinations of the product (each in a head layout of its own: the product gives each member tuple one)
    assert {members(c) for c in covering} <= {members(c) for c in product}
    assert len(covering) < len(product) / 10
    # every kind x kernel x positional x head layout, refused ones included (their refusal is checked)
    quads = {(c.kind, c.attention, c.positional, c.heads) for c in covering}
    assert quads == {(c.kind, c.attention, c.positional, c.heads) for c in product}
    assert len(quads) == 3 * 6 * 6 * 3
    # every two members of two families that meet in an accepted combination of the product meet in the covering
    wanted = set().union(*(_pairs(c) for c in product if not c.refusal()))
    covered = set().union(*(_pairs(c) for c in covering if not c.refusal()))
    assert wanted - covered == set()
    # the rest of the run (patterned models, option variants) is the full run's
    assert [c for c in COVERING if c.variant or c.mixed] == [c for c in COMBOS if c.variant or c.mixed]


def test_a_fixed_member_is_kept_even_when_it_is_an_alias():
    combos = conformance.combinations(kinds=["causal_lm"], fixed={"positional": "nope"})
    product = [c for c in combos if c.variant is None and not c.mixed and c.option is None]
    assert {c.positional for c in combos} == {"nope"} and len(product) == 6 * 3 * 5 * 7


def test_quick_varies_one_family_at_a_time_around_the_defaults():
    combos = conformance.combinations(kinds=["causal_lm"], fixed={"norm": "rmsnorm"}, quick=True)
    assert all(c.norm == "rmsnorm" for c in combos)
    for family in ("attention", "positional", "placement", "ffn"):
        assert {getattr(c, family) for c in combos} == set(conformance.distinct_members(family))
    plain = [c for c in combos if c.variant is None and c.heads == "gqa" and not c.mixed and not c.option]
    assert len(plain) == 1 + (6 - 1) + (6 - 1) + (5 - 1) + (7 - 1)
    mixed = [c for c in combos if c.mixed]  # each also once in a patterned model
    assert [dataclasses.replace(c, mixed=False) for c in mixed] == plain
    assert {c.heads for c in combos} == {"mha", "gqa", "mqa"}
    assert {c.variant[0] for c in combos if c.variant} == {
        "attention",
        "positional",
        "norm",
        "ffn",
    }  # rmsnorm: unit_offset


def test_option_variants_run_once_in_each_kind_they_fit_around_its_defaults():
    quick, full = (
        [c for c in conformance.combinations(quick=q) if c.option is not None] for q in (True, False)
    )
    assert quick == full  # not a product: each variant once per kind, in quick and full runs alike
    assert {c.id for c in quick} >= {
        "causal_lm-sdpa-rope-layernorm-pre-gelu+qk_norm",
        "seq2seq-sdpa-rope-rmsnorm-res_post-relu+qk_norm_projection",
        "causal_lm-sdpa-rope-rmsnorm-sandwich-geglu+gemma",
        "seq2seq-sdpa-rope-layernorm-post-relu+nope_every_3rd",
        "masked_lm-sdpa-learned-layernorm-post-gelu+bert_head",
        "masked_lm-sdpa-learned-layernorm-pre-geglu+modernbert",
    }
    assert {c.option for c in quick} == set(conformance.OPTION_VARIANTS)
    assert not any(c.option == "gemma" and c.kind != "causal_lm" for c in quick)
    # the model is built with the options: Gemma's head width, query scale, logit cap and pattern
    gemma = conformance.build(next(c for c in quick if c.option == "gemma")).config
    assert (gemma.head_dim, gemma.logit_softcap, gemma.num_layers) == (8, 2.0, 3)
    assert gemma.layers["pattern"] == ["global", "local"]
    # a member the run fixes wins over the one a variant is meant for
    fixed = conformance.combinations(kinds=["causal_lm"], fixed={"placement": "post"}, quick=True)
    assert next(c for c in fixed if c.option == "qk_norm_projection").placement == "post"


def test_a_broken_option_fails_its_variant(monkeypatch):
    # q/k norm over the whole projection, reshaped without moving the heads axis first: each "position" then mixes
    # rows of several positions (a plausible bug, and invisible to every combination without the option)
    def normed(self, norm, heads):
        if self.qk_norm_per_head:
            return norm(heads)
        batch, count, length, dim = heads.shape
        return norm(heads.reshape(batch, length, count * dim)).view(batch, count, length, dim)

    monkeypatch.setattr(MultiHeadAttention, "_normed", normed)
    combos = conformance.combinations(kinds=["causal_lm"], quick=True)
    results = {c.option: conformance.run_combination(c, quick=True) for c in combos if c.option}
    failed = {option for option, result in results.items() if result.status == "fail"}
    assert failed == {"qk_norm_projection"}
    failures = {c.name for c in results["qk_norm_projection"].failures}
    assert {"causality", "padding"} <= failures


def test_check_command_runs_option_variants(capsys):
    run(["check", "option:qk_norm", "--quick"])  # no SystemExit: nothing failed
    out = capsys.readouterr().out
    assert "checking 3 combinations with option 'qk_norm'" in out  # one per kind
    assert "3 combinations: 3 passed, 0 failed, 0 refused by the matrix" in out
    with pytest.raises(SystemExit) as exit_info:
        run(["check", "option:qk_norms"])
    assert exit_info.value.code == 2
    assert "unknown option variant 'qk_norms' (did you mean 'qk_norm'?)" in capsys.readouterr().err


def test_resolve_names_families_and_mistakes():
    assert resolve("rope") == ("positional", "rope")
    assert resolve("attention:math") == ("attention", "math")
    with pytest.raises(ConfigError, match=r"no component is called 'rop' \(did you mean 'rope'\?\)"):
        resolve("rop")
    with pytest.raises(ConfigError, match=r"unknown attention 'maths' \(did you mean 'math'\?\)"):
        resolve("attention:maths")
    with pytest.raises(
        ConfigError, match=r"unknown component family 'atention' \(did you mean 'attention'\?\)"
    ):
        resolve("atention:math")


class LeakyAttention(MathAttention):
    """Ignores ``is_causal``: with no padding, every query sees the future (a plausible plug-in bug)."""

    def forward(self, query, key, value, *, is_causal=False, **kwargs):
        return super().forward(query, key, value, is_causal=False, **kwargs)


class AlwaysCausalAttention(MathAttention):
    """Treats every attention as causal: right for a GPT, wrong for a bidirectional encoder."""

    def forward(self, query, key, value, *, is_causal=False, attn_mask=None, **kwargs):
        length, source_length = query.size(-2), key.size(-2)
        causal = torch.ones(length, source_length, dtype=torch.bool).tril(source_length - length)
        mask = (
            causal
            if attn_mask is None
            else attn_mask & causal
            if attn_mask.dtype == torch.bool
            else attn_mask
        )
        return super().forward(query, key, value, attn_mask=mask, **kwargs)


class SquaredScaleAttention(MathAttention):
    """Divides the scores by E instead of sqrt(E) (a plausible plug-in bug) and declares exact softmax."""

    capabilities = Capabilities(exact_softmax=True)

    def forward(self, query, key, value, *, scale=None, **kwargs):
        return super().forward(query, key, value, scale=scale or 1.0 / query.size(-1), **kwargs)


class HalfNorm(torch.nn.Module):
    """A plug-in norm: RMS normalization scaled by a learned gain (written outside swapformer)."""

    def __init__(self, *, d_model: int) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        return self.gain * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


@pytest.fixture
def registries(monkeypatch):
    """The registries as they are; what a test adds to them is gone afterwards."""
    for family in FAMILIES.values():
        monkeypatch.setattr(family, "_members", dict(family._members))


@pytest.fixture
def leaky(registries):
    ATTENTION.add("leaky", LeakyAttention, source="my_plugin")


@pytest.fixture
def half_norm(registries):
    NORM.add("half_norm", HalfNorm, source="my_plugin")


def test_a_kernel_that_is_always_causal_fails_the_bidirectional_kind(registries):
    ATTENTION.add("always_causal", AlwaysCausalAttention, source="my_plugin")
    combination = Combination("masked_lm", "always_causal", "rope", "layernorm", "pre", "relu")
    with pytest.raises(ConformanceFailure, match=r"did not change .* kind 'masked_lm' is bidirectional"):
        conformance.check_causality(conformance.build(combination))
    result = conformance.run_combination(Combination("causal_lm", *combination.components().values()))
    assert result.status == "pass", result.reason  # causal kinds are what it is right for
    skipped = conformance.run_combination(combination).checks
    assert [c.message for c in skipped if c.name == "cached_decoding"] == [
        "skipped: kind 'masked_lm' does not decode left to right"
    ]


@pytest.mark.parametrize("kind", ["causal_lm", "seq2seq"])
def test_cached_decoding_goes_past_the_window_and_bounds_the_cache(kind, monkeypatch):
    # the check decodes a left-padded row past the window (3): a ring whose mask columns do not follow its slots,
    # or a cache that keeps every key, fails it
    model = conformance.build(Combination(kind, "sliding_window", "rope", "rmsnorm", "pre", "swiglu"))
    conformance.check_cached_decoding(model)
    key_mask = AttentionCache.key_mask

    def unturned(cache, attn_mask, length):  # the last columns, not turned as the ring lies
        held = min(cache.length, cache.window) if cache.window and length == 1 else None
        return key_mask(cache, attn_mask, length) if held is None else attn_mask[..., -held:]

    monkeypatch.setattr(AttentionCache, "key_mask", unturned)
    with pytest.raises(ConformanceFailure, match=r"differ from one full pass \(a row left-padded\)"):
        conformance.check_cached_decoding(model)
    monkeypatch.undo()
    monkeypatch.setattr(AttentionCache, "window", property(lambda cache: None, lambda cache, value: None))
    with pytest.raises(
        ConformanceFailure, match=r"layer 0 holds 7 tokens after 7, more than its kernel's window of 3"
    ):
        conformance.check_cached_decoding(model)


def test_a_leaky_kernel_fails_causality(leaky):
    model = conformance.build(Combination("causal_lm", "leaky", "rope", "layernorm", "pre", "relu"))
    with pytest.raises(ConformanceFailure, match=r"logits before position 1 changed when the tokens from"):
        conformance.check_causality(model)
    result = conformance.run_combination(Combination("seq2seq", "leaky", "none", "rmsnorm", "post", "gelu"))
    assert result.status == "fail"
    assert "causality" in {c.name for c in result.failures}
    assert {c.name for c in result.checks if c.passed} >= {"builds", "fully_padded_rows", "gradient_flow"}


def test_check_command_fails_a_leaky_plugin_kernel(leaky, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(["check", "leaky", "--quick", "--kind", "causal_lm"])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    # 34, the 18 patterned twins (-mixed) of the defaults with one family varied, and 4 option variants
    assert "checking 56 combinations with attention 'leaky'" in out
    # alibi and t5_relative pass: their score bias makes the model pass a full mask, causal pattern included
    assert re.search(r"causality\s+5\s+51\s+0\n", out)  # alibi, t5_relative, its variant, two twins
    assert (
        "causal_lm-leaky-sinusoidal-layernorm-pre-gelu: causality: logits before position 1 changed when the "
        "tokens from position 1 on changed (max |difference| "
    ) in out
    assert "(also failing: padding, cached_decoding, documents)" in out
    assert not any(line.startswith("refused by the matrix") for line in out.splitlines())
    assert "56 combinations: 5 passed, 51 failed, 0 refused by the matrix" in out


def test_a_plugin_norm_joins_every_combination_and_passes_the_check_command(half_norm, capsys):
    combos = conformance.combinations(fixed={"norm": "half_norm"})
    assert (
        len([c for c in combos if c.variant is None and not c.mixed and c.option is None])
        == 3 * 6 * 6 * 5 * 7
    )  # the full product with the plug-in: kinds x attention (flex, linear, math, mla, sdpa, sliding_window) x
    # positional (six, nope being none's alias) x placements x ffns, read from the registries now
    assert "half_norm" in {c.norm for c in conformance.combinations()}
    run(["check", "half_norm", "--quick", "--verbose"])  # no SystemExit: nothing failed
    out = capsys.readouterr().out
    # 68 for each of the 3 kinds: defaults with one family varied, two more head layouts, member variants, and
    # the patterned twins (-mixed); and 11 option variants (4 causal_lm, 3 seq2seq, 4 masked_lm), the norm fixed
    assert "checking 215 combinations with norm 'half_norm'" in out
    assert "pass    seq2seq-sdpa-rope-half_norm-post-relu" in out
    assert "pass    masked_lm-sdpa-rope-half_norm-post-gelu" in out
    assert "pass    causal_lm-sdpa-rope-half_norm-pre-gelu-mixed" in out
    assert "pass    causal_lm-sdpa-rope-half_norm-res_post-gelu+qk_norm_projection" in out
    assert "215 combinations: 215 passed, 0 failed, 0 refused by the matrix" in out


class PositionsFromZero(SinusoidalPositionalEncoding):
    """Sinusoidal positions that ignore the offset: wrong after a KV cache, left padding or a document start in a
    packed row, and it says so."""

    capabilities = Capabilities(
        kv_cache=False, padding=False, document_mask=False, notes="positions always start at 0"
    )

    def embed(self, x, *, offset=0):
        return super().embed(x, offset=0)


def test_checks_of_a_feature_a_member_declares_unsupported_are_skipped(registries):
    POSITIONAL.add("from_zero", PositionsFromZero)
    combination = Combination("causal_lm", "sdpa", "from_zero", "layernorm", "pre", "relu")
    result = conformance.run_combination(combination)
    assert result.status == "pass"
    skipped = {c.name: c.message for c in result.checks if c.skipped}
    assert skipped == {
        "padding": "skipped: positional 'from_zero' declares padding=False",
        "fully_padded_rows": "skipped: positional 'from_zero' declares padding=False",
        "cached_decoding": "skipped: positional 'from_zero' declares kv_cache=False",
        "mixture": "skipped: ffn 'relu' is not a mixture of experts",
        "documents": "skipped: positional 'from_zero' declares document_mask=False",
    }
    with pytest.raises(ConformanceFailure, match=r"logits decoded with a KV cache differ from one full pass"):
        conformance.check_cached_decoding(conformance.build(combination))  # the declaration is needed


def test_check_command_reports_refused_pairs_without_failing(capsys):
    run(["check", "linear", "--quick"])
    out = capsys.readouterr().out
    assert (
        "refused by the matrix (6 combinations, e.g. causal_lm-linear-alibi-layernorm-pre-gelu): positional "
        "'alibi' adds a score bias, which attention 'linear' cannot apply"
    ) in out
    assert (
        "refused by the matrix (9 combinations, e.g. causal_lm-linear-t5_relative-layernorm-pre-gelu)" in out
    )
    # 34 for each of 3 kinds: the defaults with one family varied, two more head layouts, member variants; 18
    # patterned twins each (-mixed), those of alibi and t5_relative refused too; and 11 option variants
    assert "167 combinations: 152 passed, 0 failed, 15 refused by the matrix" in out


def test_check_command_unknown_and_ambiguous_names_exit_2(registries, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(["check", "swiglue"])
    assert exit_info.value.code == 2
    assert "no component is called 'swiglue' (did you mean 'swiglu'?)" in capsys.readouterr().err
    ATTENTION.add("rope", MathAttention)
    with pytest.raises(SystemExit) as exit_info:
        run(["check", "rope"])
    assert exit_info.value.code == 2
    assert "write 'attention:rope' or 'positional:rope'" in capsys.readouterr().err


def test_each_layers_kernel_is_held_to_its_own_reference(registries):
    # the broken kernel only in the pattern's second layer: the checks that read the first layer's kernel and
    # the config's member passed this model
    ATTENTION.add("squared_scale", SquaredScaleAttention, source="my_plugin")
    layers = {"pattern": ["good", "broken"], "types": {"good": {}, "broken": {"attention": "squared_scale"}}}
    model = build_model(ModelConfig(**conformance.checks.TINY, attention="sdpa", layers=layers)).eval()
    with pytest.raises(
        ConformanceFailure,
        match=r"attention 'squared_scale' \(decoder\.layers\.1\.self_attention\.sublayer\.kernel\) declares "
        r"exact_softmax but differs from the 'math' kernel with 4 key/value heads and no mask",
    ):
        conformance.check_reference(model)
    conformance.check_head_layout(model)  # its heads are right: only the reference catches it
    layers["types"]["broken"] = {"attention": "linear"}  # not exact: its own declaration skips it
    conformance.check_reference(
        build_model(ModelConfig(**conformance.checks.TINY, attention="sdpa", layers=layers))
    )
