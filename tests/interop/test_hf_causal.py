"""GPT-2, Llama, Mistral, Qwen2, Qwen3, SmolLM3, Phi-3, Gemma 2, Gemma 3, OLMo 2, Mixtral, Qwen3-MoE, GPT-OSS and
DeepSeek-V3 in and out: equal logits on padded batches and equal greedy tokens, against the Hugging Face model built
from a config."""

from __future__ import annotations

import json

import pytest
import torch
from tests.interop.hf_models import CAUSAL, _spread_weights, hf_model, save, transformers

import swapformer
from swapformer.errors import ConfigError
from swapformer.interop import ARCHITECTURES, Architecture, gpt2
from swapformer.interop.core import register
from swapformer.registry import split_spec

# assert_close's own float32 tolerances: the same model differs only by summation order (up to ~3e-6 on logits of
# a few units), while a wrong rope base or attention scale moves them by 1e-2 or more
FP32 = dict(rtol=1.3e-6, atol=1e-5)


def batches():
    """A left-padded and a right-padded batch with their masks."""
    torch.manual_seed(1)
    ids = torch.randint(3, 61, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    left, right = mask.clone(), mask.clone()
    left[1, :3], left[2, :6] = 0, 0
    right[1, 6:], right[2, 3:] = 0, 0
    return {"left": (ids * left, left), "right": (ids * right, right)}


def hf_logits(model, ids, mask):
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # what HF's generate passes for left padding
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=positions).logits


@pytest.mark.parametrize("name", sorted(CAUSAL))
def test_imported_model_gives_the_logits_and_tokens_of_hugging_face(name, tmp_path):
    theirs = hf_model(name)
    ours = swapformer.from_hf(save(theirs, tmp_path / "hf"))
    assert isinstance(ours, swapformer.DecoderOnly) and not ours.training
    for ids, mask in batches().values():
        with torch.no_grad():
            logits = ours(ids, mask.bool())
        real = mask.bool()
        torch.testing.assert_close(logits[real], hf_logits(theirs, ids, mask)[real], **FP32)
    prompt, prompt_mask = batches()["left"]
    # no argument but the prompts: the length (max_length 20 with the prompt) and the special ids are the
    # checkpoint's generation defaults, imported with it
    expected = theirs.generate(prompt, attention_mask=prompt_mask)
    assert torch.equal(ours.generate(prompt, prompt_mask), expected)
    new_tokens = expected[:, prompt.size(1) :]
    assert all(len(set(row.tolist())) > 1 for row in new_tokens), new_tokens  # a repeated token proves little


@pytest.mark.parametrize("name", sorted(CAUSAL))
def test_from_a_model_instance_equals_from_its_directory(name, tmp_path):
    theirs = hf_model(name, seed=3)
    a, b = swapformer.from_hf(theirs), swapformer.from_hf(save(theirs, tmp_path / "hf"))
    assert a.config == b.config
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


@pytest.mark.parametrize("name", ["llama-gqa", "gemma2-gqa-headdim-capped-pattern", "qwen2-biases"])
def test_a_bfloat16_checkpoint_reads_as_float32_or_as_stored_with_dtype_auto(name, tmp_path):
    theirs = hf_model(name)
    path = save(theirs.to(torch.bfloat16), tmp_path / "bf16")
    default, auto = swapformer.from_hf(path), swapformer.from_hf(path, dtype="auto")
    assert {p.dtype for p in default.parameters()} == {torch.float32}  # the master weights training keeps
    assert {p.dtype for p in auto.parameters()} == {torch.bfloat16}  # as transformers 5 keeps them
    assert swapformer.from_hf(path, dtype="float16").lm_head.weight.dtype == torch.float16
    for key, value in default.state_dict().items():  # bfloat16 to float32 is exact: the same numbers
        assert torch.equal(value.to(torch.bfloat16), auto.state_dict()[key]), key
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    assert reloaded.dtype == torch.bfloat16
    ids, mask = batches()["left"]
    real = mask.bool()
    with torch.no_grad():
        exact = default(ids, real)[real]
        ours = auto(ids, real)[real].float()
        hers = hf_logits(reloaded, ids, mask)[real].float()
    # computing in bfloat16 moves the logits by ~0.1 here; ours by no more than twice what transformers' own
    # bfloat16 model moves them, and to the same tokens
    assert (ours - exact).abs().max() <= 2 * (hers - exact).abs().max()
    assert torch.equal(ours.argmax(-1), hers.argmax(-1))


@pytest.mark.parametrize("name", sorted(CAUSAL))
def test_to_hf_round_trip_loads_in_transformers_with_equal_logits(name, tmp_path):
    source = hf_model(name, seed=5)
    ours = swapformer.from_hf(source)
    model_type = source.config.model_type  # written back as its own family: Phi-3's fused projections too
    directory = swapformer.to_hf(ours, tmp_path / "out", model_type=model_type)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    assert type(theirs) is type(source)
    ids, mask = batches()["left"]
    with torch.no_grad():
        logits = ours(ids, mask.bool())
    real = mask.bool()
    torch.testing.assert_close(logits[real], hf_logits(theirs, ids, mask)[real], **FP32)
    again = swapformer.from_hf(directory)
    assert again.config == ours.config


@pytest.mark.parametrize(
    ("name", "remove"),
    [
        ("gemma2-gqa-headdim-capped-pattern", "final_logit_softcapping"),
        ("gemma2-gqa-headdim-capped-pattern", "attn_logit_softcapping"),
        ("gemma3-gqa-headdim-pattern-local-rope", "final_logit_softcapping"),
    ],
)
def test_the_soft_caps_the_tests_use_move_the_logits(name, remove):
    # the equal logits above would hold for a cap ignored on both sides if the caps were far above the values
    theirs = hf_model(name)
    ours = swapformer.from_hf(theirs)
    ids, mask = batches()["left"]
    with torch.no_grad():
        logits = ours(ids, mask.bool())
    setattr(theirs.config, remove, None)
    for layer in theirs.model.layers:  # each attention layer keeps its own copy of the cap
        layer.self_attn.attn_logit_softcapping = theirs.config.attn_logit_softcapping
    real = mask.bool()
    assert (logits[real] - hf_logits(theirs, ids, mask)[real]).abs().max() > 0.5


def test_a_gemma2_config_json_of_transformers_4_reads_as_transformers_5s(tmp_path):
    # before transformers 5: no layer_types (every other layer slides, from the first) and a flat rope_theta
    directory = save(hf_model("gemma2-gqa-headdim-capped-pattern"), tmp_path / "hf")
    config = json.loads((directory / "config.json").read_text())
    expected = swapformer.from_hf(directory).config
    for key in ("rope_parameters", "layer_types"):
        del config[key]
    (directory / "config.json").write_text(json.dumps({**config, "rope_theta": 500.0, "hidden_act": "gelu"}))
    assert (
        swapformer.from_hf(directory).config == expected
    )  # hidden_activation wins over hidden_act, as there
    assert expected.layers["pattern"] == ["sliding", "full"]


def test_a_gemma3_config_json_of_transformers_4_reads_as_transformers_5s(tmp_path):
    # before transformers 5: rope_theta and rope_scaling for the full layers, rope_local_base_freq for the
    # sliding ones, and sliding_window_pattern in place of layer_types
    model = hf_model("gemma3-gqa-headdim-pattern-local-rope")
    directory = save(model, tmp_path / "hf")
    config = json.loads((directory / "config.json").read_text())
    expected = swapformer.from_hf(directory).config
    for key in ("rope_parameters", "layer_types", "_sliding_window_pattern"):
        del config[key]
    legacy = dict(
        rope_theta=5000.0, rope_scaling={"type": "linear", "factor": 2.0}, rope_local_base_freq=100.0
    )
    (directory / "config.json").write_text(json.dumps({**config, **legacy, "sliding_window_pattern": 3}))
    assert swapformer.from_hf(directory).config == expected
    assert expected.layers["pattern"] == ["sliding_positional", "sliding_positional", "full"]


LLAMA_SHAPED = dict(positional="rope", norm="rmsnorm", ffn="swiglu", bias=False)
SLIDING = {"name": "sliding_window", "window": 3}
GEMMA_SHAPED = dict(
    positional="rope",
    norm={"name": "rmsnorm", "unit_offset": True},
    placement="sandwich",
    ffn={"name": "geglu", "approximate": "tanh", "bias": False},
    bias=False,
    scale_embeddings=True,
)
CAPPED = {"attention": {"name": "math", "softcap": 2.0}, "logit_softcap": 5.0}
GEMMA_QK = {"name": "rmsnorm", "unit_offset": True}
LOCAL = {"attention": SLIDING, "positional": {"name": "rope", "base": 100.0}}
OLMO2_SHAPED = dict(LLAMA_SHAPED, qk_norm="rmsnorm", qk_norm_scope="projection", placement="res_post")
MOE = {"name": "moe", "experts": 4, "top_k": 2}
GPT_OSS_MOE = {**MOE, "expert": "clamped_swiglu", "router": "topk_softmax", "expert_bias": True}
GPT_OSS_SHAPED = dict(LLAMA_SHAPED, bias=True, attention={"name": "sdpa", "sinks": True}, ffn=GPT_OSS_MOE)


@pytest.mark.parametrize(
    ("config", "family"),
    [
        (dict(LLAMA_SHAPED, qk_norm="rmsnorm"), "qwen3"),
        (dict(LLAMA_SHAPED, qk_norm="rmsnorm", layers=[{}, {"attention": SLIDING}]), "qwen3"),
        (dict(LLAMA_SHAPED, layers=[{}, {"positional": "none"}]), "smollm3"),
        (dict(LLAMA_SHAPED, layers=[{"attention": SLIDING}, {}]), "smollm3"),  # windows on some layers only
        (dict(LLAMA_SHAPED, attention=SLIDING), "mistral"),
        (dict(LLAMA_SHAPED, qkv_bias=True, attention=SLIDING), "qwen2"),  # Mistral has no q/k/v biases
        (dict(LLAMA_SHAPED, qkv_bias=True, layers=[{}, {"attention": SLIDING}]), "qwen2"),
        (dict(LLAMA_SHAPED), "llama"),
        (dict(GEMMA_SHAPED, **CAPPED, layers=[{"attention": {**SLIDING, "softcap": 2.0}}, {}]), "gemma2"),
        (dict(GEMMA_SHAPED, attention_scale=0.25), "gemma2"),  # uncapped: sdpa; query_pre_attn_scalar 16
        (dict(GEMMA_SHAPED, qk_norm=GEMMA_QK, layers=[LOCAL, {}]), "gemma3_text"),  # local rope of its own
        (dict(OLMO2_SHAPED, num_kv_heads=1, bias=True), "olmo2"),
        (dict(LLAMA_SHAPED, ffn=MOE, attention=SLIDING), "mixtral"),
        (dict(LLAMA_SHAPED, ffn={**MOE, "norm_topk": False}, qk_norm="rmsnorm"), "qwen3_moe"),
        (
            dict(LLAMA_SHAPED, ffn=MOE, qk_norm="rmsnorm", layers=[{"ffn": "swiglu", "d_ff": 24}, {}]),
            "qwen3_moe",
        ),
        (dict(GPT_OSS_SHAPED, layers=[{"attention": {**SLIDING, "sinks": True}}, {}]), "gpt_oss"),
    ],
)
def test_to_hf_picks_the_first_family_that_expresses_the_model(config, family, tmp_path):
    model = swapformer.build_causal_lm(dict(vocab_size=40, d_model=16, num_heads=2, num_layers=2, **config))
    _spread_weights(model, gain=1.5)  # logits of a few units, not 0.02's near-zero ones
    with torch.no_grad():  # biases built as zeros would match a family that drops them
        for key, tensor in model.named_parameters():
            if key.endswith("bias"):
                tensor.normal_(0.0, 0.5)
    directory = swapformer.to_hf(model.eval(), tmp_path / "out")
    assert json.loads((directory / "config.json").read_text())["model_type"] == family
    theirs = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    ids = torch.randint(3, 40, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), theirs(ids).logits, **FP32)


@pytest.mark.parametrize(
    ("config", "component"),
    [
        (dict(positional="alibi"), "positional 'alibi'"),
        (dict(positional="learned", placement="post"), "placement 'post'"),
        (dict(attention="linear", positional="rope", norm="rmsnorm", ffn="swiglu"), "attention 'linear'"),
        (dict(LLAMA_SHAPED, qk_norm="layernorm"), "qk_norm 'layernorm'"),
        (
            dict(LLAMA_SHAPED, final_norm=False),
            r"final_norm: false \(a pre family normalizes after the last layer\)",
        ),
        (dict(LLAMA_SHAPED, qk_norm={"name": "rmsnorm", "eps": 1e-5}), "qk_norm eps 1e-05 beside norm eps"),
        (
            dict(
                LLAMA_SHAPED,
                num_layers=2,
                layers=[{"attention": SLIDING}, {"attention": {**SLIDING, "window": 5}}],
            ),
            r"sliding windows of \[3, 5\] in one model",
        ),
        (dict(LLAMA_SHAPED, num_layers=2, layers=[{}, {"ffn": "geglu"}]), r"layers\[1\].ffn"),
        (
            dict(LLAMA_SHAPED, num_layers=2, layers=[{}, {"positional": {"base": 500.0}}]),
            r"positional \{'name': 'rope', 'base': 500.0\} beside 'rope'",
        ),
        (dict(GEMMA_SHAPED, attention_scale=0.3), r"attention_scale=0.3 \(Gemma.s scale is an integer"),
        (
            dict(GEMMA_SHAPED, **CAPPED, num_layers=2, layers=[{}, {"attention": SLIDING}]),
            r"attention softcaps of \[None, 2.0\] in one model \(one attn_logit_softcapping\)",
        ),
        (dict(GEMMA_SHAPED, scale_embeddings=False), "scale_embeddings: false"),
        (
            dict(GEMMA_SHAPED, qk_norm=GEMMA_QK, num_layers=3, layers=[LOCAL, {"attention": SLIDING}, {}]),
            r"positional 'rope' of layer 1 beside \{'name': 'rope', 'base': 100.0\} on another "
            r"sliding_attention layer \(one rope per layer type\)",
        ),
        (dict(GEMMA_SHAPED, qk_norm="rmsnorm"), r"qk_norm 'rmsnorm' \(Gemma 3's is"),
        (
            dict(GEMMA_SHAPED, **CAPPED, qk_norm=GEMMA_QK),
            r"attention softcap 2.0 \(transformers' Gemma 3 ignores attn_logit_softcapping",
        ),
        (dict(GEMMA_SHAPED, norm="rmsnorm", logit_softcap=5.0), r"norm 'rmsnorm' \(Gemma's is"),
        (
            dict(GEMMA_SHAPED, qk_norm=GEMMA_QK, qk_norm_scope="projection"),
            # OLMo 2 has projection-scope q/k norms: it is the closest family (Gemma 3's per-head norms are farther)
            r"norm \{'name': 'rmsnorm', 'unit_offset': True\} has no olmo2 equivalent",
        ),
        (
            dict(OLMO2_SHAPED, qk_norm={"name": "rmsnorm", "eps": 1e-5}),
            r"qk_norm eps 1e-05 beside norm eps 1e-06 \(one rms_norm_eps\)",
        ),
        (
            dict(OLMO2_SHAPED, attention=SLIDING),
            r"attention \{'name': 'sliding_window', 'window': 3\} has no olmo2",
        ),
        (
            dict(LLAMA_SHAPED, ffn={**MOE, "router": "sigmoid"}),
            r"moe router 'sigmoid' \(softmax\) has no mixtral",
        ),
        (
            dict(LLAMA_SHAPED, ffn={**MOE, "shared_experts": 1}),
            r"moe shared_experts has no mixtral equivalent",
        ),
        (
            dict(LLAMA_SHAPED, ffn={**MOE, "expert": "relu"}),
            r"moe expert 'relu' \(swiglu or geglu\) has no mixtral",
        ),
        (
            dict(LLAMA_SHAPED, ffn=MOE, qk_norm="rmsnorm", num_layers=2, layers=[{"ffn": "geglu"}, {}]),
            r"layers\[0\].ffn 'geglu' \(a dense layer's is swiglu, no biases\) has no qwen3_moe equivalent",
        ),
    ],
)
def test_a_config_without_a_hugging_face_equivalent_is_refused_naming_the_component(
    config, component, tmp_path
):
    model = swapformer.build_causal_lm(
        {**dict(vocab_size=40, d_model=16, num_heads=2, num_layers=1), **config}
    )
    # the refusal leads with the component that blocks the closest family
    with pytest.raises(ConfigError, match=rf"^{component}.*, so this model cannot be exported") as info:
        swapformer.to_hf(model, tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_bad_directories_and_weights_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"has no config.json"):
        swapformer.from_hf(tmp_path)
    directory = save(hf_model("llama-gqa"), tmp_path / "hf")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "falcon"}))
    with pytest.raises(
        ConfigError,
        match=r"model_type 'falcon' is not supported; swapformer reads bart, .*\bgpt2, gpt_oss, llama, ",
    ):
        swapformer.from_hf(directory)
    (directory / "config.json").write_text(json.dumps({**config, "intermediate_size": 40}))
    with pytest.raises(
        ConfigError, match=r"tensor 'model.layers.0.mlp.gate_proj.weight' has shape \(48, 32\)"
    ):
        swapformer.from_hf(directory)
    (directory / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(ConfigError, match=r"no tensor 'model.layers.2.input_layernorm.weight'"):
        swapformer.from_hf(directory)
    (directory / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))
    with pytest.raises(ConfigError, match=r"tensors this config does not use: model.layers.1"):
        swapformer.from_hf(directory)
    (directory / "config.json").write_text(
        json.dumps({**config, "rope_parameters": {"rope_type": "dynamic"}})
    )
    with pytest.raises(ConfigError, match=r"llama: rope_type 'dynamic' has no swapformer equivalent"):
        swapformer.from_hf(directory)


def test_a_family_added_to_the_registry_reads_its_model_type(tmp_path, monkeypatch):
    monkeypatch.setattr(ARCHITECTURES, "_members", dict(ARCHITECTURES._members))  # undone after the test
    family = gpt2.ARCHITECTURE
    # what a plug-in does for a family of its own; here GPT-2's functions under a name of their own
    register(
        Architecture(("my_gpt2",), "causal_lm", family.config, family.links, family.hf_config, family.ignored)
    )
    assert "my_gpt2" in swapformer.interop.supported()
    hf = hf_model("gpt2-tied")
    directory = save(hf, tmp_path / "hf")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "my_gpt2"}))
    ids = torch.randint(3, 61, (2, 7))
    torch.testing.assert_close(swapformer.from_hf(directory)(ids), hf(ids).logits, **FP32)
    with pytest.raises(ConfigError, match=r"Hugging Face model_type member 'gpt2' is already registered"):
        register(Architecture(("gpt2",), "causal_lm", family.config, family.links, family.hf_config))


def test_a_family_asked_for_that_cannot_express_the_model_is_refused_naming_the_component(tmp_path):
    model = swapformer.build_causal_lm(
        dict(vocab_size=40, d_model=16, num_heads=2, num_layers=1, **LLAMA_SHAPED)
    )
    with pytest.raises(ConfigError, match=r"cannot export to Hugging Face qwen3: qk_norm None has no qwen3"):
        swapformer.to_hf(model, tmp_path / "out", model_type="qwen3")
    biased = swapformer.build_causal_lm(dict(vocab_size=40, d_model=16, num_heads=2, num_layers=1, bias=True))
    with pytest.raises(
        ConfigError,
        match=r"cannot export to Hugging Face phi3: .*has no phi3 equivalent \(without model_type",
    ):
        swapformer.to_hf(biased, tmp_path / "out", model_type="phi3")
    with pytest.raises(
        ConfigError, match=r"cannot export to Hugging Face qwen2: the model is written as llama"
    ):
        swapformer.to_hf(model, tmp_path / "out", model_type="qwen2")
    with pytest.raises(
        ConfigError, match=r"cannot export to Hugging Face t5: t5 is a family of seq2seq models"
    ):
        swapformer.to_hf(model, tmp_path / "out", model_type="t5")
    with pytest.raises(ConfigError, match=r"'phi'.*did you mean 'phi3'"):
        swapformer.to_hf(model, tmp_path / "out", model_type="phi")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("change", "component"),
    [
        (
            dict(qk_norm_scope="head"),
            r"qk_norm_scope 'head' \(olmo2 normalizes the whole q and k projections",
        ),
        (dict(qk_norm=None), r"qk_norm None \(OLMo 2's is rmsnorm\) has no olmo2 equivalent"),
        (dict(qk_norm="layernorm"), r"qk_norm 'layernorm' \(OLMo 2's is rmsnorm\)"),
        (dict(placement="pre"), r"placement 'pre' \(OLMo 2 normalizes each sublayer's output: res_post\)"),
        (dict(ffn={"name": "swiglu", "bias": True}), r"ffn \{'name': 'swiglu', 'bias': True\} \(OLMo 2's is"),
        (dict(qkv_bias=True), r"qkv_bias=True beside bias=False"),
        (dict(positional="alibi"), r"positional 'alibi' has no olmo2 equivalent"),
    ],
)
def test_olmo2_refuses_what_it_cannot_express_in_one_line(change, component, tmp_path):
    model = swapformer.build_causal_lm(
        dict(vocab_size=40, d_model=16, num_heads=2, num_layers=1, **{**OLMO2_SHAPED, **change})
    )
    with pytest.raises(ConfigError, match=rf"cannot export to Hugging Face olmo2: {component}") as info:
        swapformer.to_hf(model, tmp_path / "out", model_type="olmo2")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_olmo2_q_k_norms_over_each_head_would_give_other_logits():
    # the mutation the parity above rules out: with unit norm weights on both sides, only the scope differs
    theirs = hf_model("olmo2-gqa-headdim-tied-linear-rope")
    with torch.no_grad():
        for layer in theirs.model.layers:
            layer.self_attn.q_norm.weight.fill_(1.0)
            layer.self_attn.k_norm.weight.fill_(1.0)
    ours = swapformer.from_hf(theirs)
    per_head = swapformer.build_causal_lm({**ours.config.to_dict(), "qk_norm_scope": "head"}).eval()
    kept = {k: v for k, v in ours.state_dict().items() if not k.endswith(("q_norm.weight", "k_norm.weight"))}
    missing, unexpected = per_head.load_state_dict(kept, strict=False)
    assert not unexpected and all(key.endswith(("q_norm.weight", "k_norm.weight")) for key in missing)
    assert all(torch.equal(per_head.state_dict()[key], torch.ones(12)) for key in missing)  # E, not H E
    ids, mask = batches()["left"]
    real = mask.bool()
    reference = hf_logits(theirs, ids, mask)[real]
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, real)[real], reference, **FP32)
        assert (per_head(ids, real)[real] - reference).abs().max() > 0.1


@pytest.mark.parametrize("name", ["qwen2-gqa-yarn", "llama-mqa-yarn-mscale-untruncated"])
def test_yarn_parity_needs_its_attention_factor_and_its_ramp(name):
    # the equal logits above would not hold for YaRN read as linear scaling, nor with cos and sin left unscaled
    theirs = hf_model(name)
    ours = swapformer.from_hf(theirs)
    assert split_spec(ours.config.positional)[1]["scaling"] == "yarn"
    ids, mask = batches()["left"]
    real = mask.bool()
    reference = hf_logits(theirs, ids, mask)[real]
    rope = dict(ours.config.positional)
    for positional in ({**rope, "attention_factor": 1.0}, {**rope, "scaling": "linear"}):
        positional = {key: value for key, value in positional.items() if key in ("name", "base", "scaling",
                      "factor") or positional["scaling"] == "yarn"}  # fmt: skip
        mutant = swapformer.build_causal_lm({**ours.config.to_dict(), "positional": positional}).eval()
        mutant.load_state_dict(ours.state_dict())
        with torch.no_grad():
            assert (mutant(ids, real)[real] - reference).abs().max() > 0.1, positional


def test_a_yarn_config_json_of_transformers_4_reads_as_transformers_5s(tmp_path):
    # before transformers 5: rope_theta beside rope_scaling, whose type was "type"
    directory = save(hf_model("qwen2-gqa-yarn"), tmp_path / "hf")
    config = json.loads((directory / "config.json").read_text())
    expected = swapformer.from_hf(directory).config
    scaling = {k: v for k, v in config.pop("rope_parameters").items() if k not in ("rope_type", "rope_theta")}
    legacy = {"rope_theta": 1000.0, "rope_scaling": {"type": "yarn", **scaling}}
    (directory / "config.json").write_text(json.dumps({**config, **legacy}))
    assert swapformer.from_hf(directory).config == expected
    assert split_spec(expected.positional)[1]["beta_fast"] == 8.0


def test_a_gemma3_yarn_rope_reads_as_transformers_reads_it(tmp_path):
    # per layer type, transformers' Gemma 3 ignores YaRN's truncate (it looks for it beside the types): so does
    # the import, and to_hf refuses a truncate: false it would drop
    yarn = {"rope_type": "yarn", "rope_theta": 1000.0, "factor": 3.0, "original_max_position_embeddings": 20}
    config = CAUSAL["gemma3-mqa-untied-bias-list"]()
    config.head_dim = config.query_pre_attn_scalar = (
        16  # E = 16: the untruncated ramp moves the logits by ~0.5
    )
    config.rope_parameters = {
        "full_attention": {**yarn, "truncate": False},
        "sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
    }
    torch.manual_seed(0)
    theirs = transformers.AutoModelForCausalLM.from_config(config).eval()
    _spread_weights(theirs, gain=1.5)
    ours = swapformer.from_hf(theirs)
    assert ours.config.positional == {
        "name": "rope",
        "base": 1000.0,
        "scaling": "yarn",
        "factor": 3.0,
        "original_max_seq_len": 20,
    }
    ids, mask = batches()["left"]
    real = mask.bool()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, real)[real], hf_logits(theirs, ids, mask)[real], **FP32)
    untruncated = {**ours.config.positional, "truncate": False}
    model = swapformer.build_causal_lm({**ours.config.to_dict(), "positional": untruncated}).eval()
    model.load_state_dict(ours.state_dict())
    with torch.no_grad():
        assert (model(ids, real)[real] - hf_logits(theirs, ids, mask)[real]).abs().max() > 0.1
    with pytest.raises(
        ConfigError, match=r"gemma3_text: positional .* \(transformers' Gemma 3 ignores a per"
    ):
        swapformer.to_hf(model, tmp_path / "out", model_type="gemma3_text")


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        (
            "phi3-gqa-window",
            {"rope_parameters": {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.75}},
            r"phi3: partial_rotary_factor=0.75 \(rope on part of each head\) has no swapformer equivalent",
        ),
        (
            "phi3-gqa-window",
            {"rope_parameters": {"rope_type": "longrope", "rope_theta": 1e4, "short_factor": [1.0] * 4}},
            r"phi3: rope_type 'longrope' has no swapformer equivalent",
        ),
        # sliding layers without a window: the advice names the keys the family reads the window from
        (
            "qwen3-gqa-headdim-late-window",
            {"use_sliding_window": False, "sliding_window": None},  # layer_types still name sliding layers
            r"qwen3: layer_types\[1\] is 'sliding_attention' but qwen3 has no window: set sliding_window, and "
            r"use_sliding_window: true$",
        ),
        (
            "qwen3-gqa-headdim-late-window",
            {"use_sliding_window": False},  # Qwen3Config drops the window then
            r"qwen3: .* has no window: set use_sliding_window: true \(qwen3 reads sliding_window 4 only then\)$",
        ),
        (
            "qwen3-gqa-headdim-late-window",
            {"sliding_window": None},
            r"qwen3: layer_types\[1\] is 'sliding_attention' but qwen3 has no window: set sliding_window$",
        ),
        (
            "smollm3-mqa-headdim-window-untied-biases",
            {"sliding_window": None},  # SmolLM3's masks read sliding_window whatever use_sliding_window says
            r"smollm3: layer_types\[\d\] is 'sliding_attention' but smollm3 has no window: set sliding_window$",
        ),
        (
            "gemma2-gqa-headdim-capped-pattern",
            {"sliding_window": None},
            r"gemma2: layer_types\[0\] is 'sliding_attention' but gemma2 has no window: set sliding_window$",
        ),
        (
            "gemma3-gqa-headdim-pattern-local-rope",
            {"sliding_window": None},
            r"gemma3_text: layer_types\[0\] is 'sliding_attention' but gemma3_text has no window: set "
            r"sliding_window$",
        ),
        (
            "qwen2-mqa-window-pattern",
            {"use_sliding_window": False},
            r"qwen2: layer_types\[0\] is 'sliding_attention' but qwen2 has no window: set use_sliding_window: "
            r"true \(qwen2 reads sliding_window 4 only then\)$",
        ),
        (
            "smollm3-gqa-nope-every-third",
            {"layer_types": ["full_attention", "chunked_attention"] + ["full_attention"] * 3},
            r"smollm3: layer_types\[1\] 'chunked_attention' has no swapformer equivalent",
        ),
        (
            "smollm3-gqa-nope-every-third",
            {"no_rope_layers": [1, 0]},
            r"smollm3: no_rope_layers lists 2 layers but num_hidden_layers is 5",
        ),
        (
            "gemma2-mqa-untied-bias-uncapped-list",
            {"use_bidirectional_attention": True},
            r"gemma2: use_bidirectional_attention: true \(a decoder that sees later tokens\)",
        ),
        (
            "gemma3-gqa-headdim-pattern-local-rope",
            {"rope_parameters": {"full_attention": {"rope_type": "dynamic", "factor": 2.0}}},
            r"gemma3_text: rope_type 'dynamic' has no swapformer equivalent",
        ),
        (
            "gemma2-gqa-headdim-capped-pattern",
            {"layer_types": ["sliding_attention", "full_attention"]},
            r"gemma2: layer_types lists 2 layers but num_hidden_layers is 5",
        ),
        (
            "gemma2-gqa-headdim-capped-pattern",
            {"rope_parameters": {"rope_type": "dynamic", "rope_theta": 1e4, "factor": 2.0}},
            r"gemma2: rope_type 'dynamic' has no swapformer equivalent",
        ),
    ],
)
def test_a_hugging_face_option_without_an_equivalent_is_refused_in_one_line_naming_it(
    name, change, message, tmp_path
):
    directory = save(hf_model(name), tmp_path / "hf")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ConfigError, match=message) as info:
        swapformer.from_hf(directory)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "option", "value"),
    [
        ("qwen3_moe-gqa-headdim-every-second-sparse", "norm_topk", True),
        ("qwen3_moe-mqa-tied-window-mlp-only-normalized", "norm_topk", False),
        ("mixtral-gqa-window-top2", "top_k", 1),
    ],
)
def test_moe_parity_needs_the_routing_it_reads(name, option, value):
    # the equal logits above would not hold with the top-k weights renormalized (or not) the other way, or
    # with another number of experts per token
    theirs = hf_model(name)
    ours = swapformer.from_hf(theirs)
    mutant = swapformer.build_causal_lm(
        {**ours.config.to_dict(), "ffn": {**ours.config.ffn, option: value}}
    ).eval()
    mutant.load_state_dict(ours.state_dict())
    ids, mask = batches()["left"]
    real = mask.bool()
    with torch.no_grad():
        assert (mutant(ids, real)[real] - hf_logits(theirs, ids, mask)[real]).abs().max() > 0.1


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("mixtral-gqa-window-top2", "model.layers.1.block_sparse_moe.experts.3.w3.weight"),
        ("qwen3_moe-gqa-headdim-every-second-sparse", "model.layers.3.mlp.experts.3.up_proj.weight"),
        (
            "deepseek_v3-qlora-interleaved-yarn-grouped-first-dense",
            "model.layers.2.mlp.experts.3.down_proj.weight",
        ),
    ],
)
def test_moe_experts_are_written_one_by_one_as_save_pretrained_writes_them(name, stored, tmp_path):
    from safetensors.torch import load_file

    theirs = hf_model(name)
    written = load_file(save(theirs, tmp_path / "hf") / "model.safetensors")
    ours = swapformer.to_hf(swapformer.from_hf(theirs), tmp_path / "out")
    exported = load_file(ours / "model.safetensors")
    assert stored in exported and exported.keys() == written.keys()
    for key, tensor in written.items():
        assert torch.equal(exported[key], tensor), key
    del written[stored]  # a checkpoint missing one expert's tensor is refused, naming it
    from safetensors.torch import save_file

    save_file(written, str(tmp_path / "hf" / "model.safetensors"))
    with pytest.raises(ConfigError, match=rf"no tensor '{stored}', which its other experts have"):
        swapformer.from_hf(tmp_path / "hf")
