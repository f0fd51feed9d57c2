"""T5 (v1.0 and v1.1), BART and Marian in and out: equal logits on padded batches and equal greedy tokens, against
the Hugging Face model built from a config."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from tests.interop.hf_models import SEQ2SEQ, hf_model, save, transformers

import swapformer
from swapformer.errors import ConfigError


def batches(model):
    """A right-padded source batch, and right- and left-padded target batches, each with its mask."""
    torch.manual_seed(1)
    src = torch.randint(4, model.config.src_vocab_size or model.config.vocab_size, (3, 7))
    tgt = torch.randint(4, model.config.vocab_size, (3, 6))
    src_mask, tgt_mask = torch.ones(3, 7, dtype=torch.long), torch.ones(3, 6, dtype=torch.long)
    src_mask[1, 5:], src_mask[2, 3:] = 0, 0
    right, left = tgt_mask.clone(), tgt_mask.clone()
    right[1, 4:], right[2, 2:] = 0, 0
    left[1, :2], left[2, :4] = 0, 0
    return src, src_mask, {"right": (tgt, right), "left": (tgt, left)}


def hf_logits(model, src, src_mask, tgt, tgt_mask):
    with torch.no_grad():
        return model(
            input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt, decoder_attention_mask=tgt_mask
        ).logits


def hf_logits_per_row(model, src, src_mask, tgt, tgt_mask):
    """Each row's target alone, without its padding. BART's and Marian's decoders count positions from the first
    column, padding or not, so a left-padded row there is a different input; swapformer counts from each row's
    first real token, which is the row alone."""
    rows = []
    for i in range(src.size(0)):
        real = tgt_mask[i].bool()
        logits = hf_logits(model, src[i : i + 1], src_mask[i : i + 1], tgt[i : i + 1, real], None)
        rows.append(logits[0])
    return torch.cat(rows)


def assert_same_logits(ours, theirs, *, per_row_left=True):
    src, src_mask, targets = batches(ours)
    for side, (tgt, tgt_mask) in targets.items():
        with torch.no_grad():
            logits = ours(src, tgt, src_mask.bool(), tgt_mask.bool())
        real = tgt_mask.bool()
        if side == "left" and per_row_left:
            expected = hf_logits_per_row(theirs, src, src_mask, tgt, tgt_mask)
        else:
            expected = hf_logits(theirs, src, src_mask, tgt, tgt_mask)[real]
        torch.testing.assert_close(logits[real], expected, rtol=1e-4, atol=1e-4, msg=side)


@pytest.mark.parametrize("name", sorted(SEQ2SEQ))
def test_imported_model_gives_the_logits_and_tokens_of_hugging_face(name, tmp_path):
    theirs = hf_model(name)
    ours = swapformer.from_hf(save(theirs, tmp_path / "hf"))
    assert isinstance(ours, swapformer.EncoderDecoder) and not ours.training
    assert_same_logits(ours, theirs)
    if name.startswith("t5"):  # a relative bias does not see where counting starts: the batch itself agrees
        src, src_mask, targets = batches(ours)
        tgt, left = targets["left"]
        with torch.no_grad():
            logits = ours(src, tgt, src_mask.bool(), left.bool())
        real = left.bool()
        expected = hf_logits(theirs, src, src_mask, tgt, left)[real]
        torch.testing.assert_close(logits[real], expected, rtol=1e-4, atol=1e-4)
    src, src_mask, _ = batches(ours)
    # no other argument: the length, pad, eos, decoder_start and BART's and Marian's forced EOS at max_length come
    # from the imported generation defaults (tests/interop/test_hf_generation_config.py)
    expected = theirs.generate(src, attention_mask=src_mask)
    assert torch.equal(ours.generate(src, src_mask), expected)


@pytest.mark.parametrize("name", sorted(SEQ2SEQ))
def test_from_a_model_instance_equals_from_its_directory(name, tmp_path):
    theirs = hf_model(name, seed=3)
    a, b = swapformer.from_hf(theirs), swapformer.from_hf(save(theirs, tmp_path / "hf"))
    assert a.config == b.config
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


@pytest.mark.parametrize("name", sorted(SEQ2SEQ))
def test_to_hf_round_trip_loads_in_transformers_with_equal_logits(name, tmp_path):
    ours = swapformer.from_hf(hf_model(name, seed=5))
    directory = swapformer.to_hf(ours, tmp_path / "out")
    theirs = transformers.AutoModelForSeq2SeqLM.from_pretrained(directory).eval()
    assert theirs.config.model_type == name.split("-")[0]
    assert_same_logits(ours, theirs)
    again = swapformer.from_hf(directory)
    assert again.config == ours.config


def test_t5_output_scale_follows_what_transformers_was_told(tmp_path):
    """transformers 5 forces T5's tie_word_embeddings to true and keeps what it was given as
    scale_decoder_outputs; the import folds the scale into the decoder's final norm."""
    scaled, plain = hf_model("t5-v1_0-relu-scaled"), hf_model("t5-v1_1-gated-gelu")
    assert scaled.config.scale_decoder_outputs and not plain.config.scale_decoder_outputs
    assert scaled.config.tie_word_embeddings and plain.config.tie_word_embeddings
    ours = swapformer.from_hf(scaled)
    torch.testing.assert_close(
        ours.decoder.final_norm.weight, scaled.decoder.final_layer_norm.weight * scaled.config.d_model**-0.5
    )
    # a config.json written before scale_decoder_outputs existed: the tie flag decides, as transformers does
    directory = save(plain, tmp_path / "old")
    config = json.loads((directory / "config.json").read_text())
    del config["scale_decoder_outputs"]
    (directory / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    reloaded = transformers.AutoModelForSeq2SeqLM.from_pretrained(directory).eval()
    assert reloaded.config.scale_decoder_outputs
    assert_same_logits(swapformer.from_hf(directory), reloaded)


def test_a_t5_checkpoint_with_its_own_lm_head_stays_untied(tmp_path):
    """T5 v1.1 checkpoints carry an lm_head apart from the embedding; transformers 5 leaves them untied."""
    directory = save(hf_model("t5-v1_1-gated-gelu"), tmp_path / "hf")
    weights = load_file(directory / "model.safetensors")
    weights["lm_head.weight"] = torch.randn_like(weights["shared.weight"])
    save_file(weights, directory / "model.safetensors", metadata={"format": "pt"})
    theirs = transformers.AutoModelForSeq2SeqLM.from_pretrained(directory).eval()
    assert theirs.lm_head.weight is not theirs.shared.weight
    ours = swapformer.from_hf(directory)
    assert not ours.config.tie_embeddings and ours.config.share_embeddings
    assert_same_logits(ours, theirs)
    src, src_mask, _ = batches(ours)
    expected = theirs.generate(src, attention_mask=src_mask, max_new_tokens=10, do_sample=False)
    assert torch.equal(ours.generate(src, src_mask, max_new_tokens=10), expected)
    back = swapformer.to_hf(ours, tmp_path / "out")
    assert_same_logits(ours, transformers.AutoModelForSeq2SeqLM.from_pretrained(back).eval())


T5_LIKE = dict(
    positional="t5_relative",
    norm="rmsnorm",
    placement="pre",
    bias=False,
    attention_scale=1.0,
    ffn={"name": "relu", "bias": False},
    share_embeddings=True,
)
BART_LIKE = dict(
    positional={"name": "learned", "offset": 2},
    embedding_norm=True,
    lm_head_bias=True,
    ffn="gelu",
    share_embeddings=True,
)


@pytest.mark.parametrize(
    ("config", "component"),
    [
        ({**T5_LIKE, "share_embeddings": False}, "share_embeddings: false"),
        ({**T5_LIKE, "ffn": "geglu"}, "ffn 'geglu' .a gated exact GELU."),
        (dict(positional="alibi"), "positional 'alibi'"),
        ({**BART_LIKE, "placement": "pre"}, "placement 'pre'"),
        ({**BART_LIKE, "tie_embeddings": False}, "share_embeddings: true with tie_embeddings: false"),
    ],
)
def test_a_config_without_a_hugging_face_equivalent_is_refused_naming_the_component(
    config, component, tmp_path
):
    model = swapformer.build_seq2seq(dict(vocab_size=40, d_model=16, num_heads=2, num_layers=1, **config))
    # the refusal leads with the component that blocks the closest family
    with pytest.raises(ConfigError, match=rf"^{component}.*, so this model cannot be exported") as info:
        swapformer.to_hf(model, tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_bad_configs_and_weights_are_named(tmp_path):
    directory = save(hf_model("bart-tied"), tmp_path / "hf")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "decoder_ffn_dim": 40}))
    with pytest.raises(ConfigError, match=r"bart: encoder_ffn_dim=48 differs from decoder_ffn_dim=40"):
        swapformer.from_hf(directory)
    (directory / "config.json").write_text(json.dumps({**config, "vocab_size": 62}))
    with pytest.raises(ConfigError, match=r"tensor 'model.shared.weight' has shape \(61, 32\)"):
        swapformer.from_hf(directory)
    (directory / "config.json").write_text(json.dumps(config))
    weights = load_file(directory / "model.safetensors")
    save_file({**weights, "final_logits_bias": torch.zeros(1, 60)}, directory / "model.safetensors")
    with pytest.raises(
        ConfigError,
        match=r"tensor 'final_logits_bias' has shape \(1, 60\), but the config.json asks for \(1, 61\)",
    ):
        swapformer.from_hf(directory)
    del weights["model.decoder.layers.1.encoder_attn.k_proj.bias"]
    save_file(weights, directory / "model.safetensors")
    with pytest.raises(ConfigError, match=r"no tensor 'model.decoder.layers.1.encoder_attn.k_proj.bias'"):
        swapformer.from_hf(directory)
    t5 = save(hf_model("t5-v1_1-gated-gelu"), tmp_path / "t5")
    t5_config = json.loads((t5 / "config.json").read_text())
    (t5 / "config.json").write_text(json.dumps({**t5_config, "d_kv": 8}))
    with pytest.raises(
        ConfigError, match=r"tensor 'encoder.block.0.layer.0.SelfAttention.q.weight' has shape \(48, 32\)"
    ):
        swapformer.from_hf(t5)
    (t5 / "config.json").write_text(json.dumps({**t5_config, "feed_forward_proj": "gated-mish"}))
    with pytest.raises(ConfigError, match=r"t5: activation 'mish' in a gated FFN has no swapformer member"):
        swapformer.from_hf(t5)
    (t5 / "config.json").write_text(json.dumps({**t5_config, "num_decoder_layers": 1}))
    with pytest.raises(ConfigError, match=r"tensors this config does not use: decoder.block.1"):
        swapformer.from_hf(t5)
