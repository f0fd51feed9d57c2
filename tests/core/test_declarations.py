"""Members declare their residual projections, their no-decay parameters and their own initialization
(``components/declarations.py``); ``init_weights`` and ``param_groups`` read nothing else.

The reference is the house's earlier, name-keyed logic, frozen below: every built-in model must get from the
declarations exactly the weights (same seed) and the optimizer groups that it gave.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator
from typing import ClassVar

import pytest
import torch
from torch import nn

from swapformer import ConfigError, build, family
from swapformer.components import declarations
from swapformer.models import builders
from swapformer.registry import FFN, NORM
from swapformer.training.optim import param_groups

# ---- the reference: init_weights and param_groups as they were, keyed on attribute and class names --------


def reference_init_weights(model: nn.Module, *, std: float, num_layers: int) -> None:
    residual_std = std / math.sqrt(2 * num_layers)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name.rsplit(".", 1)[-1]
            nn.init.normal_(
                module.weight, std=residual_std if last in ("out_proj", "linear2", "down_proj") else std
            )
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
    for module in model.modules():
        hook = getattr(module, "after_init_weights", None)
        if callable(hook):
            hook()


REFERENCE_NO_DECAY_MODULES = (nn.Embedding, nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.BatchNorm1d)


def reference_param_groups(model: nn.Module, *, weight_decay: float) -> list[dict]:
    no_decay_ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, REFERENCE_NO_DECAY_MODULES) or type(module).__name__.endswith("Norm"):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay = {"params": [], "weight_decay": weight_decay, "names": []}
    no_decay = {"params": [], "weight_decay": 0.0, "names": []}
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        group = no_decay if id(param) in no_decay_ids or param.ndim < 2 else decay
        group["params"].append(param)
        group["names"].append(name)
    return [g for g in (decay, no_decay) if g["params"]]


# ---- every built-in model: the same weights and groups ---------------------------------------------------

TINY = dict(vocab_size=24, d_model=8, num_heads=2, num_layers=2, d_ff=16, max_seq_len=16, dropout=0.0)
FFNS = ("relu", "gelu", "relu2", "swiglu", "geglu")
NORMS = ("layernorm", "rmsnorm", "scalenorm")
PLACEMENTS = ("pre", "post", "sandwich", "deepnorm")
# options that add or take away parameters: learned and T5 tables, q/k norms, an untied head with a bias, no
# biases, a layer pattern that mixes members within one model, an embedding norm
EXTRAS = [
    {},
    dict(positional="learned", tie_embeddings=False, lm_head_bias=True),
    dict(positional="t5_relative", qk_norm="scalenorm", bias=False),
    dict(positional="rope", qk_norm="rmsnorm", num_kv_heads=1, embedding_norm=True),
    dict(
        num_layers=3,
        layers={
            "pattern": ["a", "b", "c"],
            "types": {"a": {"ffn": "swiglu"}, "b": {"norm": "scalenorm"}, "c": {"ffn": "relu2", "d_ff": 12}},
        },
    ),
]


def _config(kind: str, ffn: str, norm: str, placement: str, extra: dict) -> dict:
    config = {**TINY, "kind": kind, "ffn": ffn, "norm": norm, "placement": placement, **extra}
    if kind == "seq2seq" and "layers" in extra:  # a pattern for both stacks
        config |= {"num_encoder_layers": 3, "num_decoder_layers": 3}
    return config


def _built(config: dict, init, monkeypatch) -> nn.Module:
    with monkeypatch.context() as patch:
        patch.setattr(builders, "init_weights", init)
        torch.manual_seed(0)
        return build(config)


def _groups(groups: list[dict]) -> list[tuple[float, list[str], list[int]]]:
    return [(g["weight_decay"], g["names"], [id(p) for p in g["params"]]) for g in groups]


@pytest.mark.parametrize("kind", ["causal_lm", "seq2seq", "masked_lm"])
def test_every_builtin_model_gets_the_weights_and_groups_of_the_name_keyed_rules(kind, monkeypatch):
    combinations = list(itertools.product(FFNS, NORMS, PLACEMENTS, [{}]))
    combinations += [(ffn, norm, "pre", extra) for extra in EXTRAS[1:] for ffn in FFNS for norm in NORMS]
    combinations += [
        ("gelu", "layernorm", placement, extra) for extra in EXTRAS[1:] for placement in PLACEMENTS
    ]
    for ffn, norm, placement, extra in combinations:
        config = _config(kind, ffn, norm, placement, extra)
        model = _built(config, builders.init_weights, monkeypatch)
        reference = _built(config, reference_init_weights, monkeypatch)
        where = f"{kind}, ffn={ffn}, norm={norm}, placement={placement}, {extra}"
        ours, theirs = model.state_dict(), reference.state_dict()
        assert ours.keys() == theirs.keys(), where
        for name, value in ours.items():
            assert torch.equal(value, theirs[name]), f"{name} of {where}"
        assert _groups(param_groups(model, weight_decay=0.1)) == _groups(
            reference_param_groups(model, weight_decay=0.1)
        ), where


@pytest.fixture
def stds(monkeypatch) -> dict[int, float]:
    """The std of every ``nn.init.normal_`` draw, by the tensor's id (recorded, not estimated from samples)."""
    recorded: dict[int, float] = {}
    normal = nn.init.normal_

    def recording(tensor, mean=0.0, std=1.0, generator=None):
        recorded[id(tensor)] = std
        return normal(tensor, mean=mean, std=std, generator=generator)

    monkeypatch.setattr(nn.init, "normal_", recording)
    return recorded


def test_the_residual_std_reaches_exactly_the_output_projections(stds):
    """The reference comparison above is not vacuous: W_o and the FFN's last layer start at std / sqrt(2 L),
    every other linear weight at std."""
    model = build({**TINY, "num_layers": 8, "ffn": "swiglu"})
    residual = 0.02 / math.sqrt(16)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name != "lm_head":
            want = residual if name.endswith(("out_proj", "down_proj")) else 0.02
            assert stds[id(module.weight)] == want, name


# ---- a plug-in member that declares ------------------------------------------------------------------------


class DeclaringFeedForward(nn.Module):
    """A plug-in FFN: out(relu(x W_in) * gate); ``out`` writes into the residual stream, ``gate`` is a 2-D
    parameter (the ndim rule alone would decay it) that takes no decay, and ``reset_weights`` sets it."""

    residual_projections: ClassVar[tuple[str, ...]] = ("out",)
    no_weight_decay: ClassVar[tuple[str, ...]] = ("gate",)

    def __init__(self, *, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.inp = nn.Linear(d_model, d_ff)
        self.out = nn.Linear(d_ff, d_model)
        self.gate = nn.Parameter(torch.empty(4, d_ff))
        self.calls: list[str] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.inp(x)) * self.gate.mean(0))

    def reset_weights(self, *, std: float, residual_std: float) -> None:
        self.calls.append("reset_weights")
        with torch.no_grad():
            self.gate.fill_(residual_std / std)
            self.inp.bias.fill_(1.0)  # after the generic rules, which zero every linear bias

    def after_init_weights(self) -> None:
        self.calls.append("after_init_weights")


class UndeclaredFeedForward(nn.Module):
    """Named like a built-in (``down_proj``) but declaring nothing: no name gives it the residual std."""

    def __init__(self, *, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.up_proj = nn.Linear(d_model, d_ff)
        self.down_proj = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(torch.relu(self.up_proj(x)))


class MatrixNorm(nn.Module):
    """A plug-in norm whose class name ends in "Norm" and that declares nothing: its 2-D weight is decayed."""

    def __init__(self, *, d_model: int) -> None:
        super().__init__()
        self.mix = nn.Parameter(torch.eye(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.rms_norm(x, x.shape[-1:]) @ self.mix


@contextlib.contextmanager
def added(members: dict[str, tuple[str, type]]) -> Iterator[None]:
    """The members registered while the block runs (other tests list the built-in members exactly)."""
    for name, (family_name, factory) in members.items():
        family(family_name).add(name, factory)
    try:
        yield
    finally:
        for name, (family_name, _) in members.items():
            {"ffn": FFN, "norm": NORM}[family_name]._members.pop(name)


PLUGIN = {**TINY, "num_layers": 8}


def test_a_plugin_member_gets_the_residual_std_no_decay_and_its_own_init_from_its_declarations(stds):
    with added({"declaring": ("ffn", DeclaringFeedForward)}):
        torch.manual_seed(0)
        model = build({**PLUGIN, "ffn": "declaring"})
    std, residual_std = 0.02, 0.02 / math.sqrt(2 * 8)
    for ffn in [layer.feed_forward.sublayer for layer in model.decoder.layers]:
        assert (stds[id(ffn.out.weight)], stds[id(ffn.inp.weight)]) == (residual_std, std)
        assert torch.equal(ffn.out.bias, torch.zeros(TINY["d_model"]))
        # its own init runs after the generic rules, and after_init_weights after it
        assert torch.equal(ffn.gate, torch.full((4, TINY["d_ff"]), residual_std / std))
        assert torch.equal(ffn.inp.bias, torch.ones(TINY["d_ff"]))
        assert ffn.calls == ["reset_weights", "after_init_weights"]
    groups = {g["weight_decay"]: g["names"] for g in param_groups(model, weight_decay=0.1)}
    assert {f"decoder.layers.{i}.feed_forward.sublayer.gate" for i in range(8)} <= set(groups[0.0])
    assert "decoder.layers.0.feed_forward.sublayer.inp.weight" in groups[0.1]


def test_names_alone_give_nothing(stds):
    """A ``down_proj`` that is not declared starts at std; a norm named ``...Norm`` that declares nothing has its
    2-D parameter decayed (the house's rules before the declarations gave both the other way)."""
    members = {"undeclared": ("ffn", UndeclaredFeedForward), "matrix": ("norm", MatrixNorm)}
    with added(members):
        model = build({**PLUGIN, "ffn": "undeclared", "norm": "matrix"})
    for layer in model.decoder.layers:
        assert stds[id(layer.feed_forward.sublayer.down_proj.weight)] == 0.02
    decayed = next(g["names"] for g in param_groups(model, weight_decay=0.1) if g["weight_decay"])
    assert "decoder.layers.0.feed_forward.norm.mix" in decayed
    assert "decoder.final_norm.mix" in decayed


# ---- the declarations themselves ---------------------------------------------------------------------------


def test_torch_classes_declare_through_the_table_and_a_subclass_may_declare_its_own():
    norm = nn.LayerNorm(4)
    assert [id(p) for p in declarations.no_weight_decay(norm)] == [id(norm.weight), id(norm.bias)]
    assert declarations.no_weight_decay(nn.Linear(2, 2)) == []

    class BiasDecayedLayerNorm(nn.LayerNorm):
        no_weight_decay = ("weight",)

    norm = BiasDecayedLayerNorm(4, bias=False)  # a name that resolves to None (no bias) is skipped
    assert [id(p) for p in declarations.no_weight_decay(norm)] == [id(norm.weight)]


def test_torch_norms_over_several_dims_take_no_decay_through_the_table():
    """torch's norms over a (2, 4) shape hold 2-D gains, which the ndim rule alone would decay."""
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm((2, 4)), nn.RMSNorm((2, 4)), nn.Embedding(3, 4))
    groups = {g["weight_decay"]: g["names"] for g in param_groups(model, weight_decay=0.1)}
    assert groups == {0.1: ["0.weight"], 0.0: ["0.bias", "1.weight", "1.bias", "2.weight", "3.weight"]}
    assert groups == {g["weight_decay"]: g["names"] for g in reference_param_groups(model, weight_decay=0.1)}


def test_a_declared_projection_of_several_linear_layers_gives_each_the_residual_std(stds):
    """Experts kept in a ModuleList: declaring the list reaches every linear layer inside it."""

    class Experts(nn.Module):
        residual_projections = ("down",)

        def __init__(self) -> None:
            super().__init__()
            self.up = nn.Linear(4, 8)
            self.down = nn.ModuleList([nn.Linear(8, 4), nn.Sequential(nn.Linear(8, 4))])

    member = Experts()
    builders.init_weights(member, std=0.5, num_layers=2)
    assert stds[id(member.up.weight)] == 0.5
    assert [stds[id(member.down[0].weight)], stds[id(member.down[1][0].weight)]] == [0.25, 0.25]


def test_a_method_may_declare_as_timm_models_do():
    class Tokens(nn.Module):
        def __init__(self, *, learned: bool) -> None:
            super().__init__()
            self.learned = learned
            self.table = nn.Parameter(torch.zeros(5, 4))
            self.proj = nn.Linear(4, 4)

        def no_weight_decay(self) -> set[str]:
            return {"table"}

        def residual_projections(self) -> tuple[str, ...]:
            return ("proj",) if self.learned else ()

    member = Tokens(learned=True)
    assert declarations.no_weight_decay(member) == [member.table]
    assert declarations.residual_projections(member) == [member.proj]
    assert declarations.residual_projections(Tokens(learned=False)) == []


def test_an_optional_projection_left_out_is_skipped():
    class Optional(nn.Module):
        residual_projections = ("out", "extra", "extra.down")

        def __init__(self) -> None:
            super().__init__()
            self.out, self.extra = nn.Linear(2, 2), None

    member = Optional()
    assert declarations.residual_projections(member) == [member.out]


@pytest.mark.parametrize(
    ("declaration", "value", "message"),
    [
        ("residual_projections", ("down",), r"declares residual_projections 'down', which is not one of its"),
        ("residual_projections", ("act",), r"'act', a ReLU without an nn\.Linear.*reset_weights"),
        (
            "residual_projections",
            "proj",
            r"is one string; declare a tuple of names: residual_projections = \('proj',\)",
        ),
        (
            "no_weight_decay",
            ("gain",),
            r"declares no_weight_decay 'gain', which is not one of its parameters",
        ),
        (
            "no_weight_decay",
            ("proj",),
            r"declares no_weight_decay 'proj', which is not one of its parameters",
        ),
        ("no_weight_decay", (1,), r"no_weight_decay = \(1,\): declare a tuple of names"),
    ],
)
def test_a_wrong_declaration_names_the_member_and_the_name(declaration, value, message):
    class Member(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj, self.act = nn.Linear(2, 2), nn.ReLU()

    setattr(Member, declaration, value)
    read = getattr(declarations, declaration)
    with pytest.raises(ConfigError, match=f"Member.*{message}"):
        read(Member())
