"""swapformer's own format: save_pretrained writes config.json and model.safetensors; load rebuilds exactly."""

from __future__ import annotations

import json

import pytest
import torch

import swapformer
from swapformer.errors import ConfigError

CONFIGS = {
    "causal": dict(
        kind="causal_lm",
        positional={"name": "rope", "scaling": "linear", "factor": 2.0},
        attention={"name": "sliding_window", "window": 3},
        norm="scalenorm",
        placement="sandwich",
        ffn="relu2",
        num_kv_heads=1,
        head_dim=6,
        qkv_bias=False,
        tie_embeddings=False,
    ),
    "seq2seq": dict(
        kind="seq2seq",
        positional="t5_relative",
        norm="rmsnorm",
        placement="deepnorm",
        ffn="geglu",
        embedding_norm=True,
        lm_head_bias=True,
        src_vocab_size=37,
        decoder_start_token_id=0,
    ),
    "masked": dict(
        kind="masked_lm", positional={"name": "sinusoidal", "layout": "halves"}, attention="linear"
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_save_pretrained_then_load_is_exact(name, tmp_path):
    torch.manual_seed(0)
    model = swapformer.build(
        dict(vocab_size=41, d_model=24, num_heads=4, num_layers=2, d_ff=32, **CONFIGS[name])
    )
    with torch.no_grad():  # norms and biases away from their initial values
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    directory = model.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]
    loaded = swapformer.load(directory)
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)
    ids = torch.randint(4, 37, (2, 7))
    model.eval()
    with torch.no_grad():
        args = (ids, ids) if name == "seq2seq" else (ids,)
        assert torch.equal(model(*args), loaded(*args))
    if model.config.tie_embeddings and name != "seq2seq":
        assert loaded.lm_head.weight is loaded.embedding.token.weight  # still tied, not two copies


def test_load_names_what_is_wrong(tmp_path):
    model = swapformer.build(dict(vocab_size=41, d_model=16, num_heads=2, num_layers=1))
    directory = model.save_pretrained(tmp_path / "model")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "d_model": 32}))
    with pytest.raises(ConfigError, match=r"model.safetensors does not hold this config's weights"):
        swapformer.load(directory)
    (directory / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"config.json is not valid JSON"):
        swapformer.load(directory)
    with pytest.raises(ConfigError, match=r"is not a directory"):
        swapformer.load(tmp_path / "missing")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # windows on some layers (SmolLM3) and q/k norms (Qwen3) have families; these have none
        ({"layers": [{}, {"ffn": "geglu"}]}, r"layers\[1\].ffn \(a layer whose ffn differs"),
        ({"qk_norm": "layernorm"}, "qk_norm 'layernorm' has no llama equivalent"),
        (
            {"qk_norm": "rmsnorm", "layers": [{}, {"positional": "none"}]},
            r"qwen3: layers\[1\].positional \(a layer whose positional differs .*smollm3: qk_norm 'rmsnorm'",
        ),
    ],
)
def test_to_hf_refuses_what_no_family_expresses_naming_it(tmp_path, changes, message):
    llama = dict(vocab_size=50, d_model=32, num_heads=4, num_layers=2, positional="rope", norm="rmsnorm")
    model = swapformer.build_causal_lm({**llama, "ffn": "swiglu", "bias": False, **changes})
    with pytest.raises(swapformer.ConfigError, match=message):
        swapformer.to_hf(model, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written
