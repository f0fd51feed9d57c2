"""GPT-OSS beyond the parity every causal family passes (tests/interop/test_hf_causal.py): what that parity
depends on (sinks, the clamped experts, the de-interleaved gate and up columns), the tensors an export writes, a
``config.json`` that leaves GptOssConfig's defaults out, and the options refused in one line."""

from __future__ import annotations

import json

import pytest
import torch
from tests.interop.hf_models import hf_model, save, transformers
from tests.interop.test_hf_causal import FP32, batches, hf_logits

import swapformer
from swapformer.errors import ConfigError

WINDOWED = "gpt_oss-gqa-headdim-window-yarn-top2"
LISTED = "gpt_oss-mqa-tied-full-sliding-list-top3"


def _without_sinks(config: dict) -> dict:
    def strip(attention):
        return {**attention, "sinks": False}

    layers = config["layers"]
    if isinstance(layers, dict):
        layers = {
            **layers,
            "types": {k: {a: strip(v) for a, v in t.items()} for k, t in layers["types"].items()},
        }
    else:
        layers = [{a: strip(v) for a, v in layer.items()} for layer in layers]
    return {**config, "attention": strip(config["attention"]), "layers": layers}


def _interleaved_again(state: dict) -> dict:
    # the mapping's mutant: GPT-OSS's alternating gate and up rows read as [gate; up] halves
    out = dict(state)
    for key, tensor in state.items():
        if key.endswith(("gate_up_proj", "gate_up_bias")):
            gate, up = tensor.chunk(2, dim=1)
            out[key] = torch.stack((gate, up), dim=2).flatten(1, 2)
    return out


@pytest.mark.parametrize(
    "mutation", ["no sinks", "plain swiglu experts", "top_k 1", "gate and up interleaved"]
)
def test_gpt_oss_parity_needs_its_sinks_experts_routing_and_layout(mutation):
    # the equal logits of the family tests would not hold with any one of these read another way
    theirs = hf_model(WINDOWED)
    ours = swapformer.from_hf(theirs)
    config, state = ours.config.to_dict(), ours.state_dict()
    if mutation == "no sinks":
        config = _without_sinks(config)
        state = {key: value for key, value in state.items() if not key.endswith(".sinks")}
    elif mutation == "plain swiglu experts":
        config["ffn"] = {**config["ffn"], "expert": "swiglu"}
    elif mutation == "top_k 1":
        config["ffn"] = {**config["ffn"], "top_k": 1}
    else:
        state = _interleaved_again(state)
    mutant = swapformer.build_causal_lm(config).eval()
    mutant.load_state_dict(state)
    ids, mask = batches()["left"]
    real = mask.bool()
    reference = hf_logits(theirs, ids, mask)[real]
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, real)[real], reference, **FP32)
        assert (mutant(ids, real)[real] - reference).abs().max() > 0.1


@pytest.mark.parametrize("name", [WINDOWED, LISTED])
def test_to_hf_writes_the_tensors_save_pretrained_writes(name, tmp_path):
    from safetensors.torch import load_file

    theirs = hf_model(name)
    written = load_file(save(theirs, tmp_path / "hf") / "model.safetensors")
    exported = load_file(swapformer.to_hf(swapformer.from_hf(theirs), tmp_path / "out") / "model.safetensors")
    assert exported.keys() == written.keys()
    for key, tensor in written.items():
        assert torch.equal(exported[key], tensor), key
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["layer_types"] == theirs.config.layer_types
    assert config["sliding_window"] == theirs.config.sliding_window


def test_a_config_json_without_gpt_oss_s_defaults_reads_as_transformers_reads_it(tmp_path):
    # GptOssConfig fills what a config.json leaves out: a YaRN rope of base 150000, every other layer sliding
    # from the first, attention biases, alpha 1.702 and limit 7.0; the import fills the same
    directory = save(hf_model(WINDOWED), tmp_path / "hf")
    config = json.loads((directory / "config.json").read_text())
    left_out = ("rope_parameters", "layer_types", "attention_bias", "swiglu_alpha", "swiglu_limit",
                "router_aux_loss_coef", "rms_norm_eps", "max_position_embeddings", "sliding_window")  # fmt: skip
    (directory / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k not in left_out}))
    reference = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    ours = swapformer.from_hf(directory)
    assert ours.config == swapformer.from_hf(reference).config
    assert ours.config.positional["base"] == 150000.0 and ours.config.positional["scaling"] == "yarn"
    ids, mask = batches()["left"]
    real = mask.bool()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, real)[real], hf_logits(reference, ids, mask)[real], **FP32)


def test_a_config_json_of_transformers_4_reads_as_transformers_5s(tmp_path):
    # gpt-oss was released with transformers 4: rope_theta beside rope_scaling
    directory = save(hf_model(WINDOWED), tmp_path / "hf")
    config = json.loads((directory / "config.json").read_text())
    expected = swapformer.from_hf(directory).config
    rope = config.pop("rope_parameters")
    legacy = {"rope_theta": rope.pop("rope_theta"), "rope_scaling": rope}
    (directory / "config.json").write_text(json.dumps({**config, **legacy}))
    reference = transformers.AutoModelForCausalLM.from_pretrained(directory)
    assert swapformer.from_hf(directory).config == swapformer.from_hf(reference).config == expected


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"swiglu_alpha": 1.5},
            r"gpt_oss: swiglu_alpha=1.5 has no swapformer equivalent: the moe expert clamped_swiglu is GPT-OSS's "
            r"with swiglu_alpha 1.702 and swiglu_limit 7.0",
        ),
        ({"swiglu_limit": 10.0}, r"gpt_oss: swiglu_limit=10.0 has no swapformer equivalent"),
        (
            {"rope_parameters": {"rope_type": "dynamic", "rope_theta": 500.0, "factor": 2.0}},
            r"gpt_oss: rope_type 'dynamic' has no swapformer equivalent; supported: default, linear, llama3, yarn",
        ),
        (
            {"layer_types": ["sliding_attention", "full_attention"]},
            r"gpt_oss: layer_types lists 2 layers but num_hidden_layers is 3",
        ),
        (
            {"layer_types": ["sliding_attention", "chunked_attention", "full_attention"]},
            r"gpt_oss: layer_types\[1\] 'chunked_attention' has no swapformer equivalent",
        ),
        (  # GPT-OSS has no use_sliding_window (Qwen's key): sliding_window alone gives the window
            {"sliding_window": None},
            r"gpt_oss: layer_types\[0\] is 'sliding_attention' but gpt_oss has no window: set sliding_window$",
        ),
    ],
)
def test_a_gpt_oss_option_without_an_equivalent_is_refused_in_one_line_naming_it(change, message, tmp_path):
    directory = save(hf_model(WINDOWED), tmp_path / "hf")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ConfigError, match=message) as info:
        swapformer.from_hf(directory)
    assert "\n" not in str(info.value)


SINKS = {"name": "sdpa", "sinks": True}
SLIDING = {"name": "sliding_window", "window": 3, "sinks": True}
MOE = {"name": "moe", "experts": 4, "top_k": 2, "expert": "clamped_swiglu", "router": "topk_softmax",
       "expert_bias": True}  # fmt: skip
GPT_OSS_SHAPED = dict(
    positional="rope",
    norm="rmsnorm",
    ffn=MOE,
    bias=True,
    attention=SINKS,
    layers=[{"attention": SLIDING}, {}],
)


@pytest.mark.parametrize(
    ("change", "component"),
    [
        (
            dict(layers=[{"attention": {**SLIDING, "sinks": False}}, {}]),
            r"attention \{'name': 'sliding_window', 'window': 3, 'sinks': False\} of layer 0 without sinks",
        ),
        (dict(ffn={**MOE, "router": "softmax"}), r"moe router 'softmax' \(topk_softmax\)"),
        (
            dict(ffn={k: v for k, v in MOE.items() if k != "expert"}),
            r"moe expert 'swiglu' \(clamped_swiglu\)",
        ),
        (dict(ffn={**MOE, "expert_bias": False}), r"moe expert_bias: false \(GPT-OSS's experts are biased\)"),
        (dict(ffn={**MOE, "router_bias": False}), r"moe router_bias: false \(GPT-OSS's router is biased\)"),
        (dict(ffn="swiglu"), r"ffn 'swiglu' has no gpt_oss equivalent \(a mixture of experts: moe\)"),
        (dict(qkv_bias=False), r"qkv_bias=False beside bias=True \(one attention_bias\)"),
        (
            dict(layers=[{"attention": SLIDING}, {"attention": {**SLIDING, "window": 5}}]),
            r"sliding windows of \[3, 5\] in one model",
        ),
        (dict(norm="layernorm"), r"norm 'layernorm' has no gpt_oss equivalent"),
    ],
)
def test_gpt_oss_refuses_what_it_cannot_express_in_one_line(change, component, tmp_path):
    config = {**dict(vocab_size=40, d_model=16, num_heads=2, num_layers=2), **GPT_OSS_SHAPED, **change}
    model = swapformer.build_causal_lm(config)
    with pytest.raises(ConfigError, match=rf"cannot export to Hugging Face gpt_oss: {component}") as info:
        swapformer.to_hf(model, tmp_path / "out", model_type="gpt_oss")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_import_hf_then_export_hf_gives_transformers_the_checkpoint_back(tmp_path, monkeypatch):
    # the command-line walk of the interop page: swapformer import-hf, then swapformer export --format hf
    from safetensors.torch import load_file

    from swapformer.cli import main

    monkeypatch.chdir(tmp_path)
    save(hf_model(WINDOWED), tmp_path / "hf")
    main(["import-hf", "hf", "--out", "imported"])
    main(["export", "--ckpt_path", "imported", "--out", "exported", "--format", "hf"])
    written, exported = load_file("hf/model.safetensors"), load_file("exported/model.safetensors")
    assert exported.keys() == written.keys()
    assert all(torch.equal(exported[key], tensor) for key, tensor in written.items())
    assert type(transformers.AutoModelForCausalLM.from_pretrained("exported")).__name__ == "GptOssForCausalLM"
