"""DeepSeek-V3 in and out, beyond the logits and tokens every causal family is held to (test_hf_causal.py): each
option it reads moves the logits, the multi-token-prediction layers are ignored as transformers ignores them, a
model built here exports, and what the family cannot express is refused in one line naming it."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tests.interop.hf_models import _spread_weights, hf_model, save, transformers
from tests.interop.test_hf_causal import FP32, batches, hf_logits

import swapformer
from swapformer.errors import ConfigError

GROUPED = "deepseek_v3-qlora-interleaved-yarn-grouped-first-dense"
PLAIN = "deepseek_v3-plain-q-halves-bias-tied-unnormalized"


def _logits(model, ids, mask):
    with torch.no_grad():
        return model(ids, mask.bool())[mask.bool()]


@pytest.mark.parametrize(
    ("name", "key", "change"),
    [
        (GROUPED, "ffn", {"groups": 1, "topk_groups": 1}),  # every expert open to every token
        (GROUPED, "ffn", {"routed_scaling": 1.0}),
        (GROUPED, "attention", {"rope_interleave": False}),
        (GROUPED, "attention", {"mscale": 1.0}),  # YaRN's scale on the whole softmax left out
        (PLAIN, "attention", {"rope_interleave": True}),
        (PLAIN, "ffn", {"norm_topk": True}),
        (PLAIN, "ffn", {"selection_bias": None}),  # e_score_correction_bias left at zero
    ],
)
def test_deepseek_v3_parity_needs_each_option_it_reads(name, key, change):
    # the equal logits of test_hf_causal.py would not hold with any of these read another way
    theirs = hf_model(name)
    ours = swapformer.from_hf(theirs)
    ids, mask = batches()["left"]
    reference = hf_logits(theirs, ids, mask)[mask.bool()]
    torch.testing.assert_close(_logits(ours, ids, mask), reference, **FP32)
    state = ours.state_dict()
    if "selection_bias" in change:
        state = {k: torch.zeros_like(v) if k.endswith("selection_bias") else v for k, v in state.items()}
        assert any(k.endswith("selection_bias") for k in state)
        change = {}
    mutant = swapformer.build_causal_lm(
        {**ours.config.to_dict(), key: {**getattr(ours.config, key), **change}}
    ).eval()
    mutant.load_state_dict(state)
    assert (_logits(mutant, ids, mask) - reference).abs().max() > 0.1


def test_multi_token_prediction_layers_past_the_depth_are_ignored_as_transformers_ignores_them(tmp_path):
    from safetensors.torch import load_file, save_file

    theirs = hf_model(GROUPED)
    directory = save(theirs, tmp_path / "hf")
    weights = load_file(directory / "model.safetensors")
    # DeepSeek-V3's MTP module is one more decoder layer (model.layers.61 of 61) with its own norms and projection
    mtp = {
        k.replace("model.layers.2.", "model.layers.3."): v.clone()
        for k, v in weights.items()
        if ".layers.2." in k
    }
    mtp["model.layers.3.eh_proj.weight"] = torch.randn(64, 128)
    mtp["model.layers.3.enorm.weight"] = torch.randn(64)
    save_file({**weights, **mtp}, str(directory / "model.safetensors"), metadata={"format": "pt"})
    assert json.loads((directory / "config.json").read_text())["num_nextn_predict_layers"] == 1
    ours = swapformer.from_hf(directory)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    ids, mask = batches()["left"]
    torch.testing.assert_close(_logits(ours, ids, mask), hf_logits(reloaded, ids, mask)[mask.bool()], **FP32)
    # a tensor no link reads inside the depth is still refused
    save_file(
        {**weights, "model.layers.1.mlp.extra.weight": torch.ones(2)}, str(directory / "model.safetensors")
    )
    with pytest.raises(
        ConfigError, match=r"tensors this config does not use: model.layers.1.mlp.extra.weight"
    ):
        swapformer.from_hf(directory)


NATIVE = dict(
    vocab_size=40,
    d_model=32,
    num_heads=4,
    num_layers=3,
    norm="rmsnorm",
    bias=False,
    positional={"name": "rope", "scaling": "yarn", "factor": 2.0, "original_max_seq_len": 16},
    attention={"name": "mla", "q_lora_rank": 8, "kv_lora_rank": 12, "rope_interleave": True, "mscale": 1.2},
    ffn={"name": "moe", "experts": 4, "top_k": 2, "router": "sigmoid", "shared_experts": 1, "groups": 2,
         "topk_groups": 1, "routed_scaling": 2.0},
    d_ff=12,
    layers=[{"ffn": "swiglu", "d_ff": 24}, {}, {}],
)  # fmt: skip


def test_a_model_built_with_mla_and_a_sigmoid_moe_exports_as_deepseek_v3(tmp_path):
    model = swapformer.build_causal_lm(NATIVE).eval()
    _spread_weights(model, gain=1.5)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("selection_bias"):
                tensor.normal_(0.0, 0.1)
            if key.endswith("router.weight"):
                tensor.normal_(0.0, 1.5 * tensor.size(1) ** -0.5)
    directory = swapformer.to_hf(model, tmp_path / "out")  # the first family that expresses it
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "deepseek_v3" and config["first_k_dense_replace"] == 1
    assert (
        config["qk_rope_head_dim"] == 4 and config["rope_parameters"]["mscale_all_dim"] > 0
    )  # mla's defaults
    theirs = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    ids = torch.randint(3, 40, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), theirs(ids).logits, **FP32)
    attention = dict(swapformer.from_hf(directory).config.attention)
    assert attention.pop("mscale") == pytest.approx(1.2, rel=1e-12)  # through mscale_all_dim's 12 digits
    sizes = {k: config[k] for k in ("qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")}
    written = {key: value for key, value in NATIVE["attention"].items() if key != "mscale"}
    assert attention == {**written, **sizes}


@pytest.mark.parametrize(
    ("change", "component"),
    [
        ({"ffn": {**NATIVE["ffn"], "router": "softmax"}}, r"moe router 'softmax' \(sigmoid\)"),
        ({"ffn": {**NATIVE["ffn"], "shared_experts": 0}}, r"moe without shared_experts \(at least one\)"),
        ({"layers": [{}, {"ffn": "swiglu", "d_ff": 24}, {}]}, r"dense layers \[1\] \(DeepSeek-V3's are the first"),
        ({"layers": [{"ffn": "geglu", "d_ff": 24}, {}, {}]}, r"layers\[0\].ffn 'geglu' \(a dense layer's is swiglu"),
        ({"positional": "rope"}, r"mla mscale 1.2 without a scaled rope \(factor > 1\)"),
        ({"attention": {**NATIVE["attention"], "kernel": {"name": "sliding_window", "window": 3}}},
         r"mla kernel \{'name': 'sliding_window', 'window': 3\} \(sdpa or math\)"),
        ({"attention": "sdpa"}, r"attention 'sdpa' has no deepseek_v3 equivalent \(latent attention: mla\)"),
    ],
)  # fmt: skip
def test_what_deepseek_v3_cannot_express_is_refused_in_one_line_naming_it(change, component, tmp_path):
    model = swapformer.build_causal_lm({**NATIVE, **change})
    with pytest.raises(
        ConfigError, match=rf"^cannot export to Hugging Face deepseek_v3: {component}"
    ) as info:
        swapformer.to_hf(model, tmp_path / "out", model_type="deepseek_v3")
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"num_key_value_heads": 2},
            r"deepseek_v3: num_key_value_heads=2 beside num_attention_heads=4 has no swapformer equivalent",
        ),
        ({"n_shared_experts": 0}, r"deepseek_v3: n_shared_experts=0 has no swapformer equivalent"),
        (
            {"rope_parameters": {"rope_type": "dynamic", "rope_theta": 1e4, "factor": 2.0}},
            r"deepseek_v3: rope_type 'dynamic' has no swapformer equivalent",
        ),
    ],
)
def test_a_deepseek_v3_option_without_an_equivalent_is_refused_in_one_line_naming_it(
    change, message, tmp_path
):
    directory = save(hf_model(PLAIN), tmp_path / "hf")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ConfigError, match=message) as info:
        swapformer.from_hf(directory)
    assert "\n" not in str(info.value)


def test_a_model_fine_tuned_with_loss_free_balancing_exports_the_selection_bias_it_moved(tmp_path):
    from swapformer.components import after_optimizer_step

    imported = swapformer.from_hf(hf_model(GROUPED))
    balanced = {**imported.config.to_dict(), "ffn": {**imported.config.ffn, "balance_rate": 0.05}}
    model = swapformer.build_causal_lm(balanced)
    model.load_state_dict(imported.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    ids = torch.randint(3, 61, (4, 12))
    for _ in range(3):  # the selection bias moves after each optimizer step, against each expert's load error
        logits = model(ids[:, :-1])
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()).backward()
        optimizer.step()
        optimizer.zero_grad()
        after_optimizer_step(model)
    bias = model.decoder.layers[1].feed_forward.sublayer.selection_bias
    assert not torch.equal(bias, imported.decoder.layers[1].feed_forward.sublayer.selection_bias)
    directory = swapformer.to_hf(model.eval(), tmp_path / "out")
    assert "balance_rate" not in json.dumps(json.loads((directory / "config.json").read_text()))
    theirs = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    assert torch.equal(theirs.model.layers[1].mlp.gate.e_score_correction_bias, bias)
    ids, mask = batches()["left"]
    torch.testing.assert_close(_logits(model, ids, mask), hf_logits(theirs, ids, mask)[mask.bool()], **FP32)


def test_a_deepseek_v3_config_json_of_its_own_release_reads_as_transformers_5s(tmp_path):
    # DeepSeek's config.json: rope_theta beside rope_scaling (type: yarn, mscale, mscale_all_dim), and the
    # keys of its remote code that transformers does not read (scoring_func, topk_method)
    directory = save(hf_model(GROUPED), tmp_path / "hf")
    config = json.loads((directory / "config.json").read_text())
    expected = swapformer.from_hf(directory).config
    rope = config.pop("rope_parameters")
    legacy = {"rope_theta": rope.pop("rope_theta"), "rope_scaling": {"type": rope.pop("rope_type"), **rope}}
    remote = {"scoring_func": "sigmoid", "topk_method": "noaux_tc", "moe_layer_freq": 1}
    (directory / "config.json").write_text(json.dumps({**config, **legacy, **remote}))
    assert swapformer.from_hf(directory).config == expected
    assert expected.attention["mscale"] == pytest.approx(0.1 * 0.8 * math.log(4.0) + 1)
