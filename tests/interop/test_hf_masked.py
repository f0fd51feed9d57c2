"""BERT and RoBERTa masked LMs in and out: equal logits on right-padded batches against ``BertForMaskedLM`` and
``RobertaForMaskedLM`` built from a config, the exported folder read back by transformers, and the options of a
transformers config swapformer has no equivalent for refused by name."""

from __future__ import annotations

import json

import pytest
import torch
from tests.interop.hf_models import MASKED, _spread_weights, hf_model, save, transformers

import swapformer
from swapformer.errors import ConfigError

# the bound for fp32: the two implementations differ by summation order only (~2e-6 on these logits),
# while a wrong position row, a missing token-type row or the head's activation moves them by 1e-1 or more
FP32 = dict(rtol=1e-4, atol=1e-4)


def right_padded(pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three rows of 9, 6 and 3 real tokens, padded at the end with the padding id (as RoBERTa's positions
    need), and their mask."""
    torch.manual_seed(1)
    ids = torch.randint(4, 61, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:], mask[2, 3:] = 0, 0
    return ids.masked_fill(mask == 0, pad_token_id), mask


def hf_logits(model, ids, mask, **kwargs):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, **kwargs).logits


def our_logits(model, ids, mask, **kwargs):
    with torch.no_grad():
        return model(ids, mask.bool(), **kwargs)


@pytest.mark.parametrize("name", sorted(MASKED))
def test_imported_model_gives_the_logits_of_hugging_face(name, tmp_path):
    theirs = hf_model(name)
    ours = swapformer.from_hf(save(theirs, tmp_path / "hf"))
    assert isinstance(ours, swapformer.EncoderOnly) and not ours.training
    ids, mask = right_padded(theirs.config.pad_token_id)
    real = mask.bool()
    expected = hf_logits(theirs, ids, mask)
    torch.testing.assert_close(our_logits(ours, ids, mask)[real], expected[real], **FP32)
    if theirs.config.model_type == "roberta":  # RoBERTa numbers positions by the real ids: left padding too
        left = mask.flip(-1)
        left_ids = ids.flip(-1)
        torch.testing.assert_close(
            our_logits(ours, left_ids, left)[left.bool()],
            hf_logits(theirs, left_ids, left)[left.bool()],
            **FP32,
        )
    if theirs.config.type_vocab_size > 1:  # each token's own row of the token-type table
        types = (torch.arange(9) >= 4).long().expand(3, 9) * (theirs.config.type_vocab_size - 1)
        with_types = hf_logits(theirs, ids, mask, token_type_ids=types)
        torch.testing.assert_close(
            our_logits(ours, ids, mask, token_type_ids=types)[real], with_types[real], **FP32
        )
        assert (with_types[real] - expected[real]).abs().max() > 0.1  # the types the test gives matter


@pytest.mark.parametrize("name", sorted(MASKED))
def test_from_a_model_instance_equals_from_its_directory(name, tmp_path):
    theirs = hf_model(name, seed=3)
    a, b = swapformer.from_hf(theirs), swapformer.from_hf(save(theirs, tmp_path / "hf"))
    assert a.config == b.config
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


@pytest.mark.parametrize("name", sorted(MASKED))
def test_to_hf_round_trip_loads_in_transformers_with_equal_logits(name, tmp_path):
    source = hf_model(name, seed=5)
    ours = swapformer.from_hf(source)
    directory = swapformer.to_hf(ours, tmp_path / "out")  # the family is found from the config alone
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(directory).eval()
    assert type(theirs) is type(source)
    # every tensor written back, tied ones included; untied, the head's own bias is one no forward reads (the
    # decoder's is the one added), and swapformer writes the decoder's in its place
    unused = set() if source.config.tie_word_embeddings else {"cls.predictions.bias", "lm_head.bias"}
    for key, value in source.state_dict().items():
        assert key in unused or torch.equal(theirs.state_dict()[key], value), key
    ids, mask = right_padded(source.config.pad_token_id)
    real = mask.bool()
    torch.testing.assert_close(our_logits(ours, ids, mask)[real], hf_logits(theirs, ids, mask)[real], **FP32)
    assert swapformer.from_hf(directory).config == ours.config


def test_the_options_of_a_bert_import_are_the_ones_that_move_its_logits():
    # the logits above would agree with an option ignored on both sides if it did nothing on these weights
    source = hf_model("roberta-untied-relu-pad3")
    ids, mask = right_padded(source.config.pad_token_id)
    real = mask.bool()
    expected = hf_logits(source, ids, mask)
    config = swapformer.from_hf(source).config.to_dict()
    assert config["positional"] == {"name": "learned", "offset": 4} and config["max_seq_len"] == 36
    changes = {
        "positional": {"name": "learned", "offset": 0},  # BERT's rows
        "lm_head_transform": "relu",  # the FFN's activation, as BERT's head would use
        "embedding_norm": False,
        "token_types": 0,
    }
    for key, value in changes.items():
        changed = {**config, key: value, "max_seq_len": 40 if key == "positional" else 36}
        model = swapformer.build(changed).eval()
        state = swapformer.from_hf(source).state_dict()
        if key == "positional":
            state["positional.table.weight"] = state["positional.table.weight"][:40]
        model.load_state_dict(state, strict=False)
        assert (our_logits(model, ids, mask)[real] - expected[real]).abs().max() > 0.1, key


def test_a_bert_saved_without_its_head_and_a_pretraining_checkpoint(tmp_path):
    # a checkpoint of BertForPreTraining carries a pooler and a next-sentence head: not a masked LM's, skipped
    torch.manual_seed(0)
    config = MASKED["bert-types-tanh-eps"]()
    pretraining = transformers.BertForPreTraining(config).eval()
    _spread_weights(pretraining, gain=1.5)
    ours = swapformer.from_hf(save(pretraining, tmp_path / "pre"))
    ids, mask = right_padded(0)
    real = mask.bool()
    with torch.no_grad():
        expected = pretraining(input_ids=ids, attention_mask=mask).prediction_logits
    torch.testing.assert_close(our_logits(ours, ids, mask)[real], expected[real], **FP32)
    with pytest.raises(ConfigError, match=r"the checkpoint has no tensor 'cls\.predictions\.\w+"):
        swapformer.from_hf(save(transformers.BertModel(config), tmp_path / "base"))


def test_a_checkpoint_with_the_original_layernorm_names_reads_as_transformers_reads_it(tmp_path):
    # the original BERT checkpoints name LayerNorm parameters gamma and beta (TensorFlow's names)
    from safetensors.torch import load_file, save_file

    theirs = hf_model("bert-types-tanh-eps")
    directory = save(theirs, tmp_path / "hf")
    weights = load_file(directory / "model.safetensors")
    legacy = {
        key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): value
        for key, value in weights.items()
    }
    assert sum(key.endswith("LayerNorm.gamma") for key in legacy) == 6  # embeddings, 2 x 2 layers, head
    save_file(legacy, str(directory / "model.safetensors"), metadata={"format": "pt"})
    reloaded = transformers.AutoModelForMaskedLM.from_pretrained(directory).eval()
    ours = swapformer.from_hf(directory)
    ids, mask = right_padded(0)
    real = mask.bool()
    expected = hf_logits(reloaded, ids, mask)
    torch.testing.assert_close(expected, hf_logits(theirs, ids, mask))  # transformers renamed them too
    torch.testing.assert_close(our_logits(ours, ids, mask)[real], expected[real], **FP32)


@pytest.mark.parametrize(
    ("model_type", "setting", "named"),
    [
        ("bert", {"position_embedding_type": "relative_key"}, r"position_embedding_type 'relative_key'"),
        ("bert", {"is_decoder": True}, r"is_decoder: true \(a causal decoder\)"),
        ("roberta", {"add_cross_attention": True}, r"add_cross_attention: true \(cross-attention\)"),
        ("roberta", {"hidden_act": "mish"}, r"hidden_act 'mish' has no swapformer member"),
    ],
)
def test_a_setting_without_an_equivalent_is_refused_by_name(model_type, setting, named, tmp_path):
    name = {"bert": "bert-types-tanh-eps", "roberta": "roberta-tied"}[model_type]
    directory = save(hf_model(name), tmp_path / "hf")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **setting}))
    with pytest.raises(ConfigError, match=rf"^{model_type}: {named}"):
        swapformer.from_hf(directory)


MASKED_LM = dict(
    kind="masked_lm",
    vocab_size=61,
    d_model=32,
    num_heads=4,
    num_layers=2,
    d_ff=48,
    max_seq_len=24,
    norm={"name": "layernorm", "eps": 1e-12},
    embedding_norm=True,
    lm_head_bias=True,
    token_types=2,
    lm_head_transform="gelu",
)


@pytest.mark.parametrize(
    ("changes", "family", "named"),
    [
        ({}, "bert", None),
        ({"positional": {"name": "learned", "offset": 1}, "pad_token_id": 0}, "roberta", None),
        ({"positional": {"name": "learned", "offset": 3}}, None, r"positional .*offset: 1\}\)"),
        ({"token_types": 0}, None, r"token_types: 0 \(the token-type table"),
        ({"lm_head_transform": None}, None, r"lm_head_transform: null"),
        ({"lm_head_transform": "relu"}, None, r"lm_head_transform 'relu' has no BERT equivalent"),
        ({"placement": "pre"}, None, r"placement 'pre'"),
        ({"final_norm": True}, None, r"final_norm: true \(a post family adds no norm after the last layer\)"),
        ({"positional": {"name": "learned", "offset": 1}, "pad_token_id": None}, None, r"pad_token_id: null"),
    ],
)
def test_a_native_masked_lm_is_written_by_the_family_that_expresses_it(changes, family, named, tmp_path):
    model = swapformer.build({**MASKED_LM, **changes}).eval()
    with torch.no_grad():  # init_std's small weights make attention nearly uniform: spread them
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 1.5 * parameter.size(1) ** -0.5)
            else:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    if named is not None:
        with pytest.raises(ConfigError, match=named):
            swapformer.to_hf(model, tmp_path / "out")
        return
    directory = swapformer.to_hf(model, tmp_path / "out")
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(directory).eval()
    assert theirs.config.model_type == family
    ids, mask = right_padded(model.config.pad_token_id)
    real = mask.bool()
    torch.testing.assert_close(our_logits(model, ids, mask)[real], hf_logits(theirs, ids, mask)[real], **FP32)
