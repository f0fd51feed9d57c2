"""The registry: building by name, errors, glob listing and entry-point plug-ins."""

import sys
import textwrap

import pytest
import torch
from torch import nn

import swapformer
from swapformer import ConfigError, build_causal_lm, family
from swapformer.registry import ATTENTION, FAMILIES, KINDS, Kind, Registry, kind, load_plugins, register_kind


def test_build_by_name_and_by_mapping():
    norm = family("norm").build("layernorm", d_model=8)
    assert isinstance(norm, nn.LayerNorm) and norm.eps == 1e-5
    norm = family("norm").build({"name": "layernorm", "eps": 1e-3, "bias": False}, d_model=8)
    assert norm.eps == 1e-3 and norm.bias is None
    # context sizes go only to members that take them; spec options override context
    ffn = family("ffn").build({"name": "relu", "d_ff": 7}, d_model=8, d_ff=32, head_dim=4)
    assert ffn.linear1.out_features == 7


def test_every_family_lists_its_members_with_descriptions():
    assert set(FAMILIES) == {"attention", "positional", "norm", "placement", "ffn"}
    assert swapformer.available("attention") == ["flex", "linear", "math", "mla", "sdpa", "sliding_window"]
    assert swapformer.available("positional") == [
        "alibi", "learned", "none", "nope", "rope", "sinusoidal", "t5_relative",
    ]  # fmt: skip
    assert swapformer.available("norm") == ["layernorm", "rmsnorm", "scalenorm"]
    assert swapformer.available("placement") == ["deepnorm", "post", "pre", "res_post", "sandwich"]
    assert swapformer.available("ffn") == ["geglu", "gelu", "moe", "relu", "relu2", "silu", "swiglu"]
    for members in FAMILIES.values():
        assert all(member.description for member in members.describe())


def test_available_takes_glob_patterns():
    assert swapformer.available("positional", "*in*") == ["sinusoidal"]
    assert swapformer.available("ffn", "?elu") == ["gelu", "relu"]
    assert swapformer.available("ffn", "sw*") == ["swiglu"]
    assert swapformer.available("norm", "nothing*") == []


def test_unknown_name_lists_choices_and_suggests_the_closest():
    with pytest.raises(
        ConfigError,
        match=r"unknown positional 'rop' \(did you mean 'rope'\?\); available: alibi, learned, none, nope, rope, sinusoidal, t5_relative",
    ):
        family("positional").build("rop")
    with pytest.raises(ConfigError, match=r"unknown component family 'norms' \(did you mean 'norm'\?\)"):
        family("norms")


def test_options_a_member_does_not_take_are_named():
    with pytest.raises(
        ConfigError, match=r"norm 'rmsnorm' takes no option 'bias'; its options are: d_model, eps"
    ):
        family("norm").build({"name": "rmsnorm", "bias": False}, d_model=8)
    with pytest.raises(
        ConfigError,
        match=r"attention 'math' takes no option 'window', 'x'; its options are: softcap, sinks, num_heads; flex, sliding_window take 'window'",
    ):
        family("attention").build({"name": "math", "window": 3, "x": 1})


def test_malformed_specs_are_explained():
    with pytest.raises(ConfigError, match=r"needs a 'name' key"):
        family("norm").build({"eps": 1e-3})
    with pytest.raises(ConfigError, match=r"a component is a name or a mapping with a 'name' key, got 3"):
        family("norm").build(3)


def test_duplicate_names_are_refused():
    family = Registry("demo")
    family.register("x", description="first")(nn.Identity)
    with pytest.raises(ConfigError, match=r"demo member 'x' is already registered"):
        family.register("x")(nn.ReLU)
    with pytest.raises(ConfigError, match=r"attention member 'sdpa' is already registered \(by swapformer\)"):
        ATTENTION.add("sdpa", nn.Identity)


def test_a_registry_holds_any_entry_in_the_order_asked_for():
    class ColourError(ConfigError):
        pass

    colours = Registry("colour", order="registration", error=ColourError)
    colours.add("red", (255, 0, 0), description="warm")
    colours.add("blue", (0, 0, 255))
    assert list(colours) == ["red", "blue"] and colours.available() == ["blue", "red"]
    assert colours["red"] == (255, 0, 0) and colours.get("blue").description == ""
    with pytest.raises(
        ColourError, match=r"unknown colour 'rd' \(did you mean 'red'\?\); available: red, blue"
    ):
        colours["rd"]
    with pytest.raises(ConfigError, match=r"colour member 'red' is already registered"):
        colours.add("red", (254, 0, 0))
    assert {"name": "red"} not in colours  # an unhashable name is simply not there


def test_model_kinds_are_a_registry_of_kinds():
    assert set(KINDS) == {"causal_lm", "masked_lm", "seq2seq"} and next(iter(KINDS)) == "causal_lm"
    assert isinstance(KINDS["seq2seq"], Kind) and kind("seq2seq") is KINDS["seq2seq"]
    assert KINDS.get("seq2seq").description.startswith("An encoder-decoder model")
    with pytest.raises(
        ConfigError, match=r"unknown model kind 'causal' \(did you mean 'causal_lm'\?\); available: "
    ):
        kind("causal")
    with pytest.raises(
        ConfigError, match=r"model kind member 'seq2seq' is already registered \(by swapformer\)"
    ):
        register_kind("seq2seq", defaults={}, causal=False)(lambda config: None)


PLUGIN = '''
"""A tiny third-party plug-in: an attention kernel that counts its calls and delegates to math."""
from swapformer.components.attention import MathAttention
from swapformer.registry import ATTENTION


class CountingAttention(MathAttention):
    """counts calls, then computes exactly what 'math' computes"""

    calls = 0

    def forward(self, query, key, value, **kwargs):
        type(self).calls += 1
        return super().forward(query, key, value, **kwargs)


def register():
    ATTENTION.add("counting", CountingAttention)
'''


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """Install a plug-in distribution the way pip lays one out: a module plus a .dist-info with entry points."""
    (tmp_path / "swapformer_counting.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "swapformer_counting-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: swapformer-counting\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[swapformer.components]\ncounting = swapformer_counting:register\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(ATTENTION, "_members", dict(ATTENTION._members))  # undone after the test
    yield
    sys.modules.pop("swapformer_counting", None)


def test_entry_point_plugin_adds_a_kernel_that_a_model_uses_by_name(installed_plugin):
    assert load_plugins(force=True) == {}
    assert "counting" in swapformer.available("attention")
    member = family("attention").get("counting")
    assert member.source == "swapformer_counting"
    assert member.description.startswith("counts calls")

    cfg = dict(vocab_size=30, d_model=16, num_heads=2, num_layers=3, d_ff=32, dropout=0.0)
    plugged = build_causal_lm({**cfg, "attention": "counting"}).eval()
    reference = build_causal_lm({**cfg, "attention": "math"}).eval()
    reference.load_state_dict(plugged.state_dict())
    counter = type(plugged.decoder.layers[0].self_attention.sublayer.kernel)
    ids = torch.randint(30, (2, 6))
    torch.testing.assert_close(plugged(ids), reference(ids))
    assert counter.calls == 3  # one call per layer: the model really ran the plug-in's kernel


def test_a_broken_plugin_warns_and_the_rest_still_load(tmp_path, monkeypatch):
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[swapformer.components]\nbroken = no_such_module_xyz:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(UserWarning, match=r"plug-in 'broken = no_such_module_xyz:register' failed to load"):
        errors = load_plugins(force=True)
    assert "ModuleNotFoundError" in errors["broken = no_such_module_xyz:register"]
    assert swapformer.available("attention") == ["flex", "linear", "math", "mla", "sdpa", "sliding_window"]


EVERYWHERE = '''
"""A plug-in that adds to registries other than the component families: a schedule and a model kind."""
from swapformer.models import build_causal_lm
from swapformer.registry import register_kind
from swapformer.training.optim import SCHEDULES


def flat(step, *, warmup_steps):
    """1 from the first step: no warmup"""
    return 1.0


def register():
    SCHEDULES.add("flat", flat)
    register_kind("plain_lm", defaults={"positional": "rope", "placement": "pre", "ffn": "swiglu"}, causal=True)(
        lambda config: build_causal_lm({**config.to_dict(), "kind": "causal_lm"})
    )
'''


def test_a_plugin_adds_to_any_registry(tmp_path, monkeypatch):
    from jsonargparse import ArgumentParser

    from swapformer.tasks import CausalLMModule  # Lightning comes with them: only here
    from swapformer.training.optim import SCHEDULES, schedule_fn

    (tmp_path / "swapformer_everywhere.py").write_text(EVERYWHERE)
    info = tmp_path / "swapformer_everywhere-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: swapformer-everywhere\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[swapformer.components]\neverywhere = swapformer_everywhere:register\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for registry in (SCHEDULES, KINDS):
        monkeypatch.setattr(registry, "_members", dict(registry._members))  # undone after the test
    try:
        assert load_plugins(force=True) == {}
        assert SCHEDULES.get("flat").source == "swapformer_everywhere"
        assert schedule_fn("flat", warmup_steps=10, total_steps=20, d_model=8)(0) == 1.0
        parser = ArgumentParser(exit_on_error=False)  # the command line takes it, as fit's does
        parser.add_class_arguments(CausalLMModule, "model")
        args = parser.parse_args(["--model.schedule", "flat", "--model.vocab_size", "30"])
        assert CausalLMModule(**args.model).hparams.schedule == "flat"
        assert (
            kind("plain_lm").causal and swapformer.ModelConfig(vocab_size=30, kind="plain_lm").ffn == "swiglu"
        )
    finally:
        sys.modules.pop("swapformer_everywhere", None)
