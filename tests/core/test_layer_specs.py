"""Per-layer specs (``layers``): each layer of a patterned model computes what a uniform model of its spec does,
the cache gives what the full forward gives, and a malformed ``layers`` is one line naming it."""

from __future__ import annotations

import pytest
import torch

from swapformer import ConfigError, ModelConfig, build, build_causal_lm, build_masked_lm, build_seq2seq
from swapformer.generation import KVCache
from swapformer.layer_specs import LAYER_KEYS, resolve

V, D, H, L = 61, 32, 4, 12
BASE = dict(vocab_size=V, d_model=D, num_heads=H, num_kv_heads=2, d_ff=48, dropout=0.0, positional="rope")
# four layer types that differ in kernel, window, positional member and rope base; a NoPE layer among them
TYPES = {
    "local": {"attention": {"name": "sliding_window", "window": 3}, "positional": {"base": 100.0}},
    "global": {"attention": "math", "positional": {"name": "rope", "base": 1_000_000.0}},
    "nope": {"positional": "none", "qk_norm": "rmsnorm", "ffn": "swiglu", "d_ff": 40},
    "biased": {"positional": "alibi", "norm": "rmsnorm"},
}
PATTERN = ["local", "local", "global", "nope", "biased"]


def patterned(**changes) -> dict:
    return {**BASE, "num_layers": 6, "layers": {"pattern": PATTERN, "types": TYPES}, **changes}


def uniform_of(config: ModelConfig, index: int, stack: str = "decoder") -> dict:
    """A one-layer config whose uniform layer is layer ``index``'s spec (no final norm: the layer alone)."""
    spec = resolve(config, stack)[index]
    values = {**config.to_dict(), **{k: getattr(spec, k) for k in LAYER_KEYS}}
    return {**values, "layers": None, "num_layers": 1, "final_norm": False}


def scramble(model: torch.nn.Module) -> None:
    """Weights far from the init (norms and biases too): attention that is not uniform, layers that differ."""
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)


def layer_io(model, ids) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The input and output of every decoder layer in a forward of ``ids``."""
    seen = []
    hooks = [
        layer.register_forward_hook(
            lambda m, args, kwargs, out: seen.append((args[0], out)), with_kwargs=True
        )
        for layer in model.decoder.layers
    ]
    try:
        model(ids)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def test_each_layer_is_the_uniform_layer_of_its_spec():
    model = build_causal_lm(patterned()).eval()
    scramble(model)
    ids = torch.randint(V, (2, L))
    inputs_outputs = layer_io(model, ids)
    distinct = set()
    for index, (x, out) in enumerate(inputs_outputs):
        single = build_causal_lm(uniform_of(model.config, index)).eval()
        state = {
            k.removeprefix(f"decoder.layers.{index}."): v
            for k, v in model.state_dict().items()
            if k.startswith(f"decoder.layers.{index}.")
        }
        single.decoder.layers[0].load_state_dict(state)
        expected = single.decoder(x, is_causal=True)  # the uniform model's stack: its own positional member
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
        distinct.add(round(float((out - x).detach().norm()), 3))
    assert len(distinct) == len(inputs_outputs)  # six layers, six different functions


def test_a_layer_with_another_rope_base_computes_something_else():
    # the check above can fail: the same layer with the uniform base gives other numbers
    model = build_causal_lm(patterned()).eval()
    scramble(model)
    x, out = layer_io(model, torch.randint(V, (2, L)))[2]  # a 'global' layer, base 1e6
    wrong = uniform_of(model.config, 2)
    wrong["positional"] = "rope"  # base 10000
    single = build_causal_lm(wrong).eval()
    state = {
        k.removeprefix("decoder.layers.2."): v for k, v in model.state_dict().items() if ".layers.2." in k
    }
    single.decoder.layers[0].load_state_dict(state)
    assert (single.decoder(x, is_causal=True) - out).abs().max() > 1e-3


def test_patterned_model_cached_decoding_equals_the_full_forward():
    model = build_causal_lm(patterned()).eval()
    scramble(model)
    ids = torch.randint(V, (2, L))
    with torch.no_grad():
        full = model(ids)
        cache = KVCache(len(model.decoder.layers), capacity=L)
        steps = [model(ids[:, :5], cache=cache)]
        steps += [model(ids[:, i : i + 1], cache=cache) for i in range(5, L)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    greedy = model.generate(ids[:, :4], max_new_tokens=6, do_sample=False)
    uncached = model.generate(ids[:, :4], max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(greedy, uncached)


def test_layers_of_one_positional_spec_share_one_member_owned_once():
    model = build_causal_lm(patterned())
    members = model.decoder.positionals
    assert members[0] is members[1] and members[0] is not model.positional  # 'local': base 100
    assert members[5] is members[0]  # the pattern repeats: layer 5 is 'local' again
    owners = [name for name, m in model.named_modules() if m is members[0]]
    assert owners == ["decoder.layers.0.self_attention.sublayer.positional"]
    # the uniform member stays the model's: the checkpoint keys of every existing model are unchanged
    uniform = build_causal_lm({**BASE, "num_layers": 2, "positional": "learned"})
    plain = build_causal_lm({**BASE, "num_layers": 2, "positional": "learned", "layers": [{}, {}]})
    assert list(uniform.state_dict()) == list(plain.state_dict())


def test_a_layer_whose_overrides_change_nothing_is_the_uniform_layer():
    torch.manual_seed(0)
    uniform = build_causal_lm({**BASE, "num_layers": 3})
    torch.manual_seed(0)
    same = build_causal_lm(
        {**BASE, "num_layers": 3, "layers": {"pattern": ["a"], "types": {"a": {"positional": "rope"}}}}
    )
    assert list(uniform.state_dict()) == list(same.state_dict())
    for (name, a), b in zip(uniform.state_dict().items(), same.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    ids = torch.randint(V, (2, 7))
    assert torch.equal(uniform(ids), same(ids))


def test_one_mapping_per_layer_and_options_merged_into_the_uniform_member():
    cfg = ModelConfig(
        **{**BASE, "num_layers": 3, "layers": [{"positional": {"base": 5.0}}, None, {"ffn": "swiglu"}]}
    )
    specs = resolve(cfg, "decoder")
    assert specs[0].positional == {"name": "rope", "base": 5.0}
    assert specs[1].positional == "rope" and specs[2].ffn == "swiglu"
    model = build(cfg)
    assert model.decoder.positionals[0].base == 5.0 and model.decoder.positionals[1] is model.positional


def test_a_score_bias_layer_among_rotating_ones_gets_its_bias_and_padding():
    model = build_causal_lm(patterned()).eval()
    scramble(model)
    ids = torch.randint(V, (2, L))
    mask = torch.ones(2, L, dtype=torch.bool)
    mask[1, :3] = False  # left padding: positions restart at each row's first real token
    with torch.no_grad():
        padded = model(ids, mask)
        alone = model(ids[1:, 3:])
    torch.testing.assert_close(padded[1, 3:], alone[0], atol=1e-5, rtol=1e-5)


def test_seq2seq_and_masked_lm_take_patterns_per_stack():
    seq2seq = build_seq2seq(
        {
            **BASE,
            "num_encoder_layers": 2,
            "num_decoder_layers": 3,
            "layers": {"pattern": ["a", "b"], "types": {"a": {"positional": "alibi"}, "b": {}}},
        }
    )
    assert [type(p).__name__ for p in seq2seq.encoder.positionals] == [
        "ALiBiPositionalEncoding",
        "ScaledRotaryPositionalEncoding",
    ]
    assert len(seq2seq.decoder.positionals) == 3
    listed = build_seq2seq({**BASE, "num_layers": 1, "layers": [{"ffn": "swiglu"}, {"ffn": "geglu"}]})
    assert type(listed.encoder.layers[0].feed_forward.sublayer).__name__ == "GatedFeedForward"
    assert listed.decoder.layers[0].feed_forward.sublayer.activation.__class__.__name__ == "GELU"
    masked = build_masked_lm({**BASE, "num_layers": 2, "layers": [{"positional": "none"}, {}]})
    out = masked(torch.randint(V, (2, 5)))
    assert out.shape == (2, 5, V)


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ({"pattern": ["local"], "types": {"locl": {}}}, "layers.pattern names 'local', which layers.types"),
        ({"pattern": [], "types": {}}, "layers.pattern must be a non-empty list"),
        (
            {"pattern": ["a"], "types": {"a": {"attn": "math"}}},
            "'attn' cannot differ between layers .*'attention'",
        ),
        ({"patern": ["a"], "types": {"a": {}}}, "unknown key 'patern' \\(did you mean 'pattern'\\?\\)"),
        ([{}, {}], "layers lists 2 layers but the model has 3"),
        ({"pattern": ["a"], "types": {"a": {"ffn": "swiglo"}}}, "layers.types.a.ffn: unknown ffn 'swiglo'"),
        (
            {"pattern": ["a"], "types": {"a": {"attention": "linear", "positional": "alibi"}}},
            "layers.types.a: attention \\+ positional: positional 'alibi' adds a score bias",
        ),
        ({"pattern": ["a"], "types": {"a": {"positional": {"bse": 3}}}}, "takes no option 'bse'"),
        ({"pattern": ["a"], "types": {"a": {"d_ff": 0}}}, "layers.types.a.d_ff=0 must be a positive integer"),
        ("local", "layers must be a pattern"),
    ],
)
def test_malformed_layers_are_one_line_each(layers, message):
    # (a config without a kind checks a list's length when a builder gives it one: see the seq2seq test)
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**{**BASE, "kind": "causal_lm", "num_layers": 3, "layers": layers})


def test_a_layer_cannot_take_a_member_that_adds_positions_at_the_embedding():
    with pytest.raises(
        ConfigError, match=r"layers\[1\]\.positional: 'learned' adds positions to the embeddings"
    ):
        build_causal_lm({**BASE, "num_layers": 2, "layers": [{}, {"positional": "learned"}]})


def test_layers_round_trip_through_save_pretrained(tmp_path):
    import swapformer

    model = build_causal_lm(patterned()).eval()
    scramble(model)
    model.save_pretrained(tmp_path)
    again = swapformer.load(tmp_path).eval()
    assert again.config == model.config
    ids = torch.randint(V, (2, L))
    assert torch.equal(again(ids), model(ids))


def test_a_builder_checks_the_length_of_a_list_made_without_a_kind():
    with pytest.raises(
        ConfigError, match="layers lists 2 layers but the model has 5 \\(2 encoder \\+ 3 decoder\\)"
    ):
        build_seq2seq({**BASE, "num_encoder_layers": 2, "num_decoder_layers": 3, "layers": [{}, {}]})


def test_decoding_reserves_the_tables_of_every_layers_member():
    # a table grown between two steps would make a compiled step recompile: each member grows before decoding
    from swapformer.generation.search import Settings

    model = build_causal_lm(patterned()).eval()
    rotating = {id(m): m for m in model.decoder.positionals if m.rotates}.values()
    assert len(rotating) == 2  # the 'local' and 'global' bases
    model.decoding(torch.zeros(1, 3, dtype=torch.long), None, Settings(max_new_tokens=200), use_cache=True)
    assert all(member.cos.size(0) >= 203 for member in rotating)
