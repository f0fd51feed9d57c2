"""The compatibility matrix: declared capabilities, refusals at config time, the cross-attention fallback, the
``components --matrix`` command, and torch.export where members declare it."""

import logging

import pytest
import torch

from swapformer import ConfigError, ModelConfig, build_causal_lm, build_seq2seq, family
from swapformer.cli import run
from swapformer.compat import (
    DEFAULT,
    Capabilities,
    capabilities,
    capability_rows,
    combination_problem,
    compatibility_rows,
    cross_attention_kernel,
)
from swapformer.components.attention import MathAttention, SDPAttention, SlidingWindowAttention
from swapformer.registry import ATTENTION, FAMILIES

TINY = dict(vocab_size=20, d_model=16, num_heads=4, num_layers=1, d_ff=24, dropout=0.0)


def test_rows_cover_every_pair_and_refuse_exactly_score_biases_on_kernels_without_one():
    rows = compatibility_rows()
    kernels, positions = family("attention").available(), family("positional").available()
    assert [(r["attention"], r["positional"]) for r in rows] == [(k, p) for k in kernels for p in positions]
    for row in rows:
        bias = capabilities("positional", row["positional"]).adds_score_bias
        accepts = capabilities("attention", row["attention"]).accepts_score_bias
        assert row["supported"] == (not bias or accepts)
        assert (row["reason"] == "") == row["supported"]
    refused = {(r["attention"], r["positional"]) for r in rows if not r["supported"]}
    assert refused == {("linear", "alibi"), ("linear", "t5_relative")}
    assert {r["name"] for r in capability_rows()} >= set(kernels) | set(positions)
    assert all(
        set(r) >= {"family", "name", "kv_cache", "padding", "torch_export", "notes"}
        for r in capability_rows()
    )


@pytest.mark.parametrize("positional", ["alibi", "t5_relative"])
def test_a_refused_pair_fails_at_config_time_naming_both_and_the_alternatives(positional):
    expected = (
        rf"positional '{positional}' adds a score bias, which attention 'linear' cannot apply .*"
        rf"use attention 'flex', 'math', 'mla', 'sdpa' or 'sliding_window' with '{positional}', or keep 'linear' with "
        r"positional 'learned', 'none', 'nope', 'rope' or 'sinusoidal'"
    )
    with pytest.raises(ConfigError, match=expected):
        ModelConfig(vocab_size=10, attention="linear", positional={"name": positional})
    with pytest.raises(ConfigError, match=expected):  # the builders check before making any module
        build_seq2seq({**TINY, "attention": "linear", "positional": positional})


def test_unknown_names_are_reported_once_by_the_registry_not_by_the_matrix():
    with pytest.raises(ConfigError) as info:
        ModelConfig(vocab_size=10, attention="linaer", positional="alibi")
    assert len(info.value.problems) == 1 and "did you mean 'linear'" in str(info.value)


def test_sliding_window_cross_attention_uses_the_full_kernel_and_says_so(caplog):
    spec = {"name": "sliding_window", "window": 2}
    assert cross_attention_kernel(spec) == "sdpa" and cross_attention_kernel("math") == "math"
    with caplog.at_level(logging.INFO, logger="swapformer"):
        model = build_seq2seq({**TINY, "attention": spec})
    assert "cross-attention uses 'sdpa'" in caplog.text
    layer = model.decoder.layers[0]
    assert isinstance(layer.self_attention.sublayer.kernel, SlidingWindowAttention)
    assert type(layer.cross_attention.sublayer.kernel) is SDPAttention
    assert isinstance(model.encoder.layers[0].self_attention.sublayer.kernel, SlidingWindowAttention)


def test_a_member_that_declares_nothing_gets_the_defaults(monkeypatch):
    class PluginKernel(MathAttention):
        """a third-party kernel written before the matrix existed"""

    monkeypatch.setattr(ATTENTION, "_members", dict(ATTENTION._members))
    ATTENTION.add("plugin_kernel", PluginKernel)
    assert capabilities("attention", "plugin_kernel") == DEFAULT == Capabilities()
    assert combination_problem(attention="plugin_kernel", positional="alibi") is None
    assert {r["attention"] for r in compatibility_rows()} >= {"plugin_kernel"}


def test_components_matrix_command_prints_the_grid_and_capabilities(capsys):
    run(["components", "--matrix"])
    out = capsys.readouterr().out
    grid = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:9]}
    header = out.splitlines()[1].split()[3:]
    assert header == family("attention").available()
    assert grid["alibi"][header.index("linear")] == "NO" and grid["alibi"][header.index("sdpa")] == "yes"
    assert "cross-attention with 'sliding_window' uses 'sdpa'" in out
    for name in ("attention", "positional"):
        assert f"{name} members" in out
    run(["components", "--help"])
    assert "--matrix" in capsys.readouterr().out


EXPORTABLE = [
    (r["positional"], r["attention"])
    for r in compatibility_rows()
    if r["supported"] and r["torch_export"] and r["positional"] != "nope"  # nope: the same class as none
]


@pytest.mark.parametrize(("positional", "attention"), EXPORTABLE)
def test_declared_exportable_pairs_export(positional, attention):
    model = build_causal_lm({**TINY, "positional": positional, "attention": attention}).eval()
    ids = torch.randint(20, (2, 6))
    exported = torch.export.export(model, (ids,))
    torch.testing.assert_close(exported.module()(ids), model(ids))


def test_every_family_member_declares_a_capabilities_instance_or_nothing():
    for family_name, members in FAMILIES.items():
        for member in members.describe():
            declared = getattr(member.factory, "capabilities", DEFAULT)
            assert isinstance(declared, Capabilities), f"{family_name} '{member.name}'"
