"""ModelConfig validation: every problem at once, each naming the value and the fix."""

import pickle

import pytest
import torch

from swapformer import ConfigError, ModelConfig, build_causal_lm, build_seq2seq


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as info:
        ModelConfig(vocab_size=0, d_model=30, num_heads=4, num_kv_heads=3, dropout=1.0, positional="sinusoidall",
                    norm={"name": "layernorm", "epsilon": 1e-6}, d_ff=-1)  # fmt: skip
    message = str(info.value)
    assert message.startswith("invalid ModelConfig (7 problems):")
    for expected in (
        "vocab_size=0 must be a positive integer",
        "d_ff=-1 must be a positive integer",
        "d_model=30 is not divisible by num_heads=4; pick num_heads from [1, 2, 3, 5, 6, 10, 15, 30]",
        "num_heads=4 is not divisible by num_kv_heads=3",
        "dropout=1.0 must be a number in [0, 1)",
        "positional: unknown positional 'sinusoidall' (did you mean 'sinusoidal'?)",
        "norm: norm 'layernorm' takes no option 'epsilon'; its options are: d_model, eps, bias",
    ):
        assert expected in message
    assert len(info.value.problems) == 7


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d_model": 30, "num_heads": 4}, r"d_model=30 is not divisible by num_heads=4"),
        ({"num_heads": 8, "num_kv_heads": 3}, r"num_heads=8 is not divisible by num_kv_heads=3"),
        (
            {"attention": "flash"},
            r"attention: unknown attention 'flash' \(did you mean 'mla'\?\); available: flex, linear, math, mla, sdpa, sliding_window",
        ),
        ({"ffn": "swigul"}, r"unknown ffn 'swigul' \(did you mean 'swiglu'\?\)"),
        ({"placement": "prenorm"}, r"unknown placement 'prenorm' \(did you mean 'pre'\?\)"),
        ({"norm": "rms"}, r"unknown norm 'rms' \(did you mean 'rmsnorm'\?\)"),
        ({"num_layers": 0}, r"num_layers=0 must be a positive integer"),
        ({"d_model": 64.0}, r"d_model=64.0 must be a positive integer"),
        ({"dropout": -0.1}, r"dropout=-0.1 must be a number in \[0, 1\)"),
        ({"tie_embeddings": "yes"}, r"tie_embeddings='yes' must be true or false"),
        ({"pad_token_id": 100}, r"pad_token_id=100 is outside the vocabulary \(vocab_size=100\)"),
    ],
)
def test_each_problem_is_named(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ModelConfig(vocab_size=100, **kwargs)


def test_from_dict_reports_unknown_keys_with_the_closest_match_and_other_problems():
    with pytest.raises(ConfigError) as info:
        ModelConfig.from_dict({"vocab_size": 10, "dmodel": 64, "num_head": 4, "dropout": 2})
    message = str(info.value)
    assert "unknown key 'dmodel' (did you mean 'd_model'?)" in message
    assert "unknown key 'num_head' (did you mean 'num_heads'?)" in message
    assert "dropout=2 must be a number in [0, 1)" in message
    with pytest.raises(ConfigError, match=r"vocab_size is required"):
        build_causal_lm({"d_model": 64})


def test_builders_accept_a_config_or_a_plain_dict_and_round_trip():
    data = {"vocab_size": 40, "d_model": 16, "num_heads": 4, "num_kv_heads": 2, "num_layers": 2, "d_ff": 32,
            "positional": {"name": "rope", "base": 500000.0}, "norm": "rmsnorm", "placement": "pre", "ffn": "swiglu"}  # fmt: skip
    cfg = ModelConfig.from_dict(data)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert pickle.loads(pickle.dumps(cfg.to_dict())) == cfg.to_dict()
    assert cfg.component_name("positional") == "rope"
    a, b = build_causal_lm(cfg).eval(), build_causal_lm(data).eval()
    b.load_state_dict(a.state_dict())
    ids = torch.randint(40, (2, 5))
    torch.testing.assert_close(a(ids), b(ids))
    assert a.embedding.positional.base == 500000.0
    assert build_seq2seq({**data, "num_decoder_layers": 3}).decoder.layers.__len__() == 3


def test_each_side_of_a_seq2seq_model_has_num_layers_unless_it_says_otherwise():
    config = ModelConfig(vocab_size=40, kind="seq2seq", num_layers=4, num_decoder_layers=2)
    assert (config.encoder_layers, config.decoder_layers) == (4, 2)
    model = build_seq2seq({**config.to_dict(), "d_model": 16, "num_heads": 2, "d_ff": 32})
    assert (len(model.encoder.layers), len(model.decoder.layers)) == (4, 2)


def test_hparams_are_plain_and_load_with_weights_only(tmp_path):
    cfg = ModelConfig(vocab_size=10, positional={"name": "rope", "base": 1e4})
    torch.save({"config": cfg.to_dict()}, tmp_path / "c.pt")
    assert torch.load(tmp_path / "c.pt", weights_only=True)["config"] == cfg.to_dict()


def test_model_checks_mask_shape():
    model = build_causal_lm({"vocab_size": 10, "d_model": 8, "num_heads": 2, "num_layers": 1, "d_ff": 16})
    with pytest.raises(
        ValueError, match=r"attention_mask has shape \(2, 4\) but the ids have shape \(2, 5\)"
    ):
        model(torch.zeros(2, 5, dtype=torch.long), attention_mask=torch.ones(2, 4))
