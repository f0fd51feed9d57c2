"""ModernBERT in and out: equal masked-LM logits on right-padded batches against transformers'
ModernBertForMaskedLM built from a config (eager attention, random weights spread so attention is not uniform),
exports that transformers loads with equal logits, and the options without an equivalent refused in one line."""

from __future__ import annotations

import json

import pytest
import torch
from tests.interop.hf_models import _spread_weights, save, transformers

import swapformer
from swapformer.cli import main
from swapformer.errors import ConfigError

# fp32 to 1e-4: the same model differs only by summation order (~1e-5 on logits of a few units), while a wrong
# window, rope base or missing norm moves them by 1e-1 or more (see the tests that switch each one off)
FP32 = dict(rtol=1e-4, atol=1e-4)
TOKENS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)

MODERNBERT = {
    # 5 layers, global every 3rd (a period that does not divide the depth), a window of 2 each side of 9 tokens
    "every-3-of-5-window-4": lambda: transformers.ModernBertConfig(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=5,
        num_attention_heads=4,
        vocab_size=61,
        max_position_embeddings=64,
        global_attn_every_n_layers=3,
        local_attention=4,
        global_rope_theta=500.0,
        local_rope_theta=40.0,
        **TOKENS,
    ),
    # every bias there is, LayerNorms with shifts, tanh GELUs, an untied decoder without bias, layer_types given
    # as a list no pattern repeats, an odd local_attention (7 sees 3 each side, as 6 does)
    "biases-untied-tanh-list-window-7": lambda: transformers.ModernBertConfig(
        hidden_size=24,
        intermediate_size=40,
        num_hidden_layers=4,
        num_attention_heads=2,
        vocab_size=61,
        max_position_embeddings=64,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"],
        local_attention=7,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
        },
        hidden_activation="gelu_pytorch_tanh",
        classifier_activation="gelu_pytorch_tanh",
        attention_bias=True,
        mlp_bias=True,
        norm_bias=True,
        norm_eps=1e-6,
        classifier_bias=True,
        decoder_bias=False,
        tie_word_embeddings=False,
        **TOKENS,
    ),
}


def hf_model(name: str, seed: int = 0, **changes):
    """ModernBertForMaskedLM of :data:`MODERNBERT` ``name`` (with ``changes``), eager attention, in eval mode:
    weights of std 1.5 / sqrt(fan_in), biases and norms moved off zero and one."""
    torch.manual_seed(seed)
    config = MODERNBERT[name]()
    for key, value in changes.items():
        setattr(config, key, value)
    config._attn_implementation = "eager"
    model = transformers.ModernBertForMaskedLM(config).eval()
    _spread_weights(model, gain=1.5)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("bias") or "norm" in key:
                tensor.add_(torch.randn_like(tensor) * 0.1)
    return model


def right_padded():
    """Three rows of 9 ids, the second and third right-padded to 6 and 3 real tokens, and their mask."""
    torch.manual_seed(1)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:], mask[2, 3:] = 0, 0
    return torch.randint(3, 61, (3, 9)) * mask, mask


def hf_logits(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def our_logits(model, ids, mask):
    with torch.no_grad():
        return model(ids, mask.bool())


@pytest.mark.parametrize("name", sorted(MODERNBERT))
def test_imported_modernbert_gives_the_logits_of_hugging_face(name, tmp_path):
    theirs = hf_model(name)
    ours = swapformer.from_hf(save(theirs, tmp_path / "hf"))
    assert isinstance(ours, swapformer.EncoderOnly) and not ours.training
    ids, mask = right_padded()
    real = mask.bool()
    torch.testing.assert_close(our_logits(ours, ids, mask)[real], hf_logits(theirs, ids, mask)[real], **FP32)
    full = torch.ones_like(mask)  # no padding at all: every position compared
    torch.testing.assert_close(our_logits(ours, ids, full), hf_logits(theirs, ids, full), **FP32)


@pytest.mark.parametrize("activation", ["relu", "silu"])
def test_each_head_activation_gives_the_logits_of_hugging_face(activation):
    theirs = hf_model("every-3-of-5-window-4", classifier_activation=activation)
    ours = swapformer.from_hf(theirs)
    assert ours.config.lm_head_transform == activation
    ids, mask = right_padded()
    real = mask.bool()
    torch.testing.assert_close(our_logits(ours, ids, mask)[real], hf_logits(theirs, ids, mask)[real], **FP32)


def test_the_import_reads_the_pattern_the_window_and_both_rope_bases():
    config = swapformer.from_hf(hf_model("every-3-of-5-window-4")).config
    local = {
        "attention": {"name": "sliding_window", "window": 3},
        "positional": {"name": "rope", "base": 40.0},
    }
    assert config.layers == {
        "pattern": ["full", "sliding_positional", "sliding_positional"],
        "types": {"full": {}, "sliding_positional": local},
    }
    assert config.positional == {"name": "rope", "base": 500.0}
    assert (config.embedding_norm, config.first_attention_norm) == (True, False)
    assert (config.lm_head_transform, config.bias) == ("gelu", False)


@pytest.mark.parametrize(
    "change",
    [
        {"local_attention": 64},  # the window covers the whole input: every layer global
        {"local_rope_theta": 500.0},  # the local layers turn at the global base
        {"global_rope_theta": 40.0},
    ],
)
def test_the_window_and_rope_bases_the_tests_use_move_the_logits(change, tmp_path):
    # the equal logits above would hold for a setting both sides ignored if it changed nothing at these sizes
    ours = swapformer.from_hf(hf_model("every-3-of-5-window-4"))
    config = MODERNBERT["every-3-of-5-window-4"]().to_dict()
    config.pop("rope_parameters")  # read again from the thetas given
    theirs = hf_model("every-3-of-5-window-4")
    other = transformers.ModernBertForMaskedLM(
        transformers.ModernBertConfig(**{**config, **change}, attn_implementation="eager")
    ).eval()
    other.load_state_dict(theirs.state_dict())
    ids, mask = right_padded()
    real = mask.bool()
    assert (our_logits(ours, ids, mask)[real] - hf_logits(other, ids, mask)[real]).abs().max() > 0.1


def test_the_first_layer_attention_norm_left_out_moves_the_logits():
    ours = swapformer.from_hf(hf_model("every-3-of-5-window-4"))
    normed = swapformer.build({**ours.config.to_dict(), "first_attention_norm": True})
    normed.load_state_dict(ours.state_dict(), strict=False)  # the new norm keeps torch's ones and zeros
    ids, mask = right_padded()
    real = mask.bool()
    assert (our_logits(ours, ids, mask)[real] - our_logits(normed.eval(), ids, mask)[real]).abs().max() > 0.1


@pytest.mark.parametrize("name", sorted(MODERNBERT))
def test_from_a_model_instance_equals_from_its_directory(name, tmp_path):
    theirs = hf_model(name, seed=3)
    a, b = swapformer.from_hf(theirs), swapformer.from_hf(save(theirs, tmp_path / "hf"))
    assert a.config == b.config
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


@pytest.mark.parametrize("name", sorted(MODERNBERT))
def test_to_hf_loads_in_transformers_with_equal_logits(name, tmp_path):
    ours = swapformer.from_hf(hf_model(name, seed=5))
    directory = swapformer.to_hf(ours, tmp_path / "out")  # the first family that expresses it
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(directory, attn_implementation="eager").eval()
    assert type(theirs) is transformers.ModernBertForMaskedLM
    ids, mask = right_padded()
    real = mask.bool()
    torch.testing.assert_close(our_logits(ours, ids, mask)[real], hf_logits(theirs, ids, mask)[real], **FP32)
    assert swapformer.from_hf(directory).config == ours.config


def native_modernbert() -> torch.nn.Module:
    """A ModernBERT-shaped model built by swapformer (as the recipe writes it), weights spread as the HF ones."""
    local = {"attention": {"name": "sliding_window", "window": 3}, "positional": {"base": 10000.0}}
    model = swapformer.build(
        {
            "kind": "masked_lm",
            "vocab_size": 61,
            "d_model": 32,
            "num_heads": 4,
            "num_layers": 4,
            "d_ff": 48,
            "max_seq_len": 64,
            "positional": {"name": "rope", "base": 160000.0},
            "norm": {"name": "layernorm", "bias": False},
            "placement": "pre",
            "ffn": "geglu",
            "bias": False,
            "embedding_norm": True,
            "first_attention_norm": False,
            "lm_head_transform": "gelu",
            "lm_head_bias": True,
            "layers": {"pattern": ["global", "local", "local"], "types": {"global": {}, "local": local}},
        }
    )
    _spread_weights(model, gain=1.5)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("bias") or "norm" in key:
                tensor.add_(torch.randn_like(tensor) * 0.1)
    return model.eval()


def test_a_native_modernbert_exports_with_equal_logits(tmp_path):
    ours = native_modernbert()
    directory = swapformer.to_hf(ours, tmp_path / "out", model_type="modernbert")
    written = json.loads((directory / "config.json").read_text())
    assert written["layer_types"] == [
        "full_attention",
        "sliding_attention",
        "sliding_attention",
        "full_attention",
    ]
    assert written["local_attention"] == 4
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(directory, attn_implementation="eager").eval()
    ids, mask = right_padded()
    real = mask.bool()
    torch.testing.assert_close(our_logits(ours, ids, mask)[real], hf_logits(theirs, ids, mask)[real], **FP32)


def test_import_hf_and_export_hf_on_the_command_line(tmp_path, capsys):
    theirs = hf_model("every-3-of-5-window-4")
    save(theirs, tmp_path / "hf")
    main(["import-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "imported")])
    assert "masked_lm model" in capsys.readouterr().out
    main(
        [
            "export",
            "--ckpt_path",
            str(tmp_path / "imported"),
            "--out",
            str(tmp_path / "out"),
            "--format",
            "hf",
        ]
    )
    again = transformers.AutoModelForMaskedLM.from_pretrained(
        tmp_path / "out", attn_implementation="eager"
    ).eval()
    ids, mask = right_padded()
    real = mask.bool()
    torch.testing.assert_close(hf_logits(again, ids, mask)[real], hf_logits(theirs, ids, mask)[real], **FP32)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"rope_parameters": {"sliding_attention": {"rope_type": "linear", "factor": 2.0}}},
            r"modernbert: rope_parameters\.sliding_attention\.rope_type 'linear' is not read for ModernBERT",
        ),
        ({"classifier_activation": "tanh"}, r"modernbert: classifier_activation 'tanh' has no swapformer"),
        (
            {"classifier_bias": True},
            r"modernbert: classifier_bias=True beside attention_bias=False has no swap",
        ),
        ({"hidden_activation": "tanh"}, r"modernbert: activation 'tanh' in a gated FFN has no swapformer"),
        (
            {"layer_types": ["full_attention", "sliding_attention"]},
            r"modernbert: layer_types lists 2 layers but num_hidden_layers is 5",
        ),
        (
            {"layer_types": ["full_attention", "chunked_attention"] + ["full_attention"] * 3},
            r"modernbert: layer_types\[1\] 'chunked_attention' has no swapformer equivalent",
        ),
    ],
)
def test_a_hugging_face_option_without_an_equivalent_is_refused_in_one_line_naming_it(
    change, message, tmp_path
):
    directory = save(hf_model("every-3-of-5-window-4"), tmp_path / "hf")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ConfigError, match=message) as info:
        swapformer.from_hf(directory)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "component"),
    [
        ({"first_attention_norm": True}, r"first_attention_norm: true \(ModernBERT's first layer has none\)"),
        ({"norm": "rmsnorm"}, r"norm 'rmsnorm'"),
        ({"ffn": "gelu"}, r"ffn 'gelu' \(ModernBERT's is gated: geglu\)"),
        ({"lm_head_transform": None}, r"lm_head_transform: null"),
        ({"embedding_norm": False}, r"embedding_norm: false"),
        ({"num_kv_heads": 2}, r"num_kv_heads=2"),
        (
            {
                "layers": [
                    {},
                    {"attention": {"name": "sliding_window", "window": 3}},
                    {},
                    {"attention": "sliding_window"},
                ]
            },
            r"sliding windows of \[3, 256\] in one model \(one local_attention\)",
        ),
    ],
)
def test_to_hf_refuses_what_modernbert_cannot_express_in_one_line(change, component, tmp_path):
    model = swapformer.build({**native_modernbert().config.to_dict(), **change})
    with pytest.raises(ConfigError, match=f"cannot export to Hugging Face modernbert: {component}") as info:
        swapformer.to_hf(model, tmp_path / "out", model_type="modernbert")
    assert "\n" not in str(info.value)
