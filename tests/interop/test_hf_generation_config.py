"""Generation defaults travel with the model: a checkpoint's ``generation_config.json`` makes ``generate()`` with no
arguments give transformers' tokens, explicit arguments win, and ``save_pretrained`` / ``to_hf`` write it back."""

from __future__ import annotations

import json

import pytest
import torch
from tests.interop.hf_models import hf_model, save, transformers

import swapformer
from swapformer.errors import ConfigError

GenerationConfig = transformers.GenerationConfig

CASES = {
    # Marian: the pad id starts the decoder and is a bad word; EOS forced at max_length (what an opus-mt has)
    "marian-swish": dict(
        max_length=9,
        forced_eos_token_id=0,
        bad_words_ids=[[3]],
        decoder_start_token_id=3,
        pad_token_id=3,
        eos_token_id=0,
    ),
    "bart-tied": dict(
        forced_bos_token_id=0,
        forced_eos_token_id=2,
        no_repeat_ngram_size=2,
        num_beams=3,
        length_penalty=0.6,
        max_length=11,
        early_stopping=True,
    ),
    "t5-v1_1-gated-gelu": dict(
        max_new_tokens=9,
        min_length=5,
        num_beams=2,
        repetition_penalty=1.6,
        suppress_tokens=[4, 9],
        begin_suppress_tokens=[7],
    ),
    "gpt2-tied": dict(
        eos_token_id=[2, 7, 11],
        repetition_penalty=1.5,
        max_length=17,
        bad_words_ids=[[5], [3, 4]],
        pad_token_id=0,
    ),
    "llama-gqa": dict(
        max_new_tokens=10, do_sample=True, top_k=1, eos_token_id=[1, 9], no_repeat_ngram_size=2
    ),
}
"""Non-default generation settings for one model of each family; each case's output depends on them."""

NEUTRAL = dict(
    num_beams=1,
    forced_bos_token_id=None,
    forced_eos_token_id=None,
    no_repeat_ngram_size=0,
    bad_words_ids=None,
    suppress_tokens=None,
    begin_suppress_tokens=None,
    repetition_penalty=1.0,
    do_sample=False,
    max_new_tokens=6,
    min_new_tokens=0,
    min_length=0,
)
"""Arguments that turn every setting of :data:`CASES` off, for this call only."""


def hf_with_defaults(name, directory, **settings):
    """The HF model ``name`` with ``settings`` as its generation config, saved to ``directory``."""
    theirs = hf_model(name)
    theirs.generation_config = GenerationConfig(**{**theirs.generation_config.to_diff_dict(), **settings})
    save(theirs, directory)
    return theirs


def inputs(model, name):
    """``(ids, mask)``: padded sources (seq2seq) or left-padded prompts (causal)."""
    torch.manual_seed(2)
    if name.startswith(("gpt2", "llama")):
        ids, mask = torch.randint(3, 61, (3, 6)), torch.ones(3, 6, dtype=torch.long)
        mask[1, :2], mask[2, :4] = 0, 0
        return ids * mask, mask
    ids, mask = torch.randint(4, model.config.vocab_size, (3, 7)), torch.ones(3, 7, dtype=torch.long)
    mask[1, 5:], mask[2, 3:] = 0, 0
    return ids, mask


def equal_up_to_padding(ours, theirs, pad):
    """transformers pads a batch's beam outputs to the longest row; both pad finished rows with ``pad``."""
    width = max(ours.size(1), theirs.size(1))
    ours = torch.nn.functional.pad(ours, (0, width - ours.size(1)), value=pad)
    theirs = torch.nn.functional.pad(theirs, (0, width - theirs.size(1)), value=pad)
    return torch.equal(ours, theirs)


@pytest.mark.parametrize("name", sorted(CASES))
def test_generate_with_no_arguments_gives_the_tokens_of_transformers(name, tmp_path):
    theirs = hf_with_defaults(name, tmp_path / "hf", **CASES[name])
    ours = swapformer.from_hf(tmp_path / "hf")
    ids, mask = inputs(ours, name)
    expected = theirs.generate(ids, attention_mask=mask)
    assert torch.equal(ours.generate(ids, mask), expected), (ours.generate(ids, mask), expected)
    # the defaults matter: with each of them turned off transformers gives other tokens; passed, they win in ours
    plain = theirs.generate(ids, attention_mask=mask, **NEUTRAL)
    assert plain.shape != expected.shape or not torch.equal(plain, expected)
    assert torch.equal(ours.generate(ids, mask, **NEUTRAL), plain)


def test_marian_forces_eos_at_max_length_as_transformers_does(tmp_path):
    """The report that started this: without the forced EOS, the rows still running at max_length differ."""
    theirs = hf_with_defaults("marian-swish", tmp_path / "hf", **CASES["marian-swish"])
    ours = swapformer.from_hf(tmp_path / "hf")
    ids, mask = inputs(ours, "marian-swish")
    out = ours.generate(ids, mask)
    assert out.size(1) == 9 and (out[:, 0] == 3).all()  # max_length 9 with the start id; pad starts
    assert (out[:, -1] == 0).any()  # a row that was still running ends in the forced EOS
    unforced = ours.generate(ids, mask, forced_eos_token_id=None)
    assert torch.equal(unforced, theirs.generate(ids, attention_mask=mask, forced_eos_token_id=None))
    assert not torch.equal(unforced, out)


@pytest.mark.parametrize("name", ["bart-tied", "gpt2-tied"])
def test_save_pretrained_and_to_hf_write_the_defaults_transformers_reads_back_equal(name, tmp_path):
    hf_with_defaults(name, tmp_path / "hf", **CASES[name])
    original = GenerationConfig.from_pretrained(tmp_path / "hf")
    ours = swapformer.from_hf(tmp_path / "hf")
    for written in (ours.save_pretrained(tmp_path / "native"), swapformer.to_hf(ours, tmp_path / "out")):
        assert GenerationConfig.from_pretrained(written) == original
        again = swapformer.load(written)
        assert again.generation_config == ours.generation_config
    theirs = transformers.AutoModelForSeq2SeqLM if name == "bart-tied" else transformers.AutoModelForCausalLM
    reloaded = theirs.from_pretrained(tmp_path / "out").eval()
    ids, mask = inputs(ours, name)
    assert torch.equal(ours.generate(ids, mask), reloaded.generate(ids, attention_mask=mask))


def test_a_model_instance_brings_its_generation_config(tmp_path):
    theirs = hf_model("bart-tied")
    theirs.generation_config = GenerationConfig(
        **CASES["bart-tied"], decoder_start_token_id=2, eos_token_id=2
    )
    ours = swapformer.from_hf(theirs)
    assert ours.generation_config.num_beams == 3 and ours.generation_config.forced_bos_token_id == 0
    ids, mask = inputs(ours, "bart-tied")
    assert torch.equal(ours.generate(ids, mask), theirs.generate(ids, attention_mask=mask))


def test_a_folder_without_generation_config_takes_the_settings_of_its_config_json(tmp_path):
    """transformers builds the defaults from config.json then: BART's forced_eos_token_id lives there."""
    theirs = hf_model("bart-tied")
    save(theirs, tmp_path / "hf")
    (tmp_path / "hf" / "generation_config.json").unlink()
    ours = swapformer.from_hf(tmp_path / "hf")
    assert ours.generation_config.forced_eos_token_id == 2
    reloaded = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "hf").eval()
    ids, mask = inputs(ours, "bart-tied")
    assert torch.equal(
        ours.generate(ids, mask, max_new_tokens=7),
        reloaded.generate(ids, attention_mask=mask, max_new_tokens=7),
    )


def test_a_built_model_has_no_defaults_until_given_some(tmp_path):
    model = swapformer.build_causal_lm(dict(vocab_size=20, d_model=16, num_heads=2, num_layers=1, d_ff=32))
    assert model.generation_config is None
    prompt = torch.randint(3, 20, (1, 5))
    assert model.generate(prompt, eos_token_id=[]).size(1) == 5 + 20  # 20 new tokens when no length is set
    directory = model.save_pretrained(tmp_path / "plain")
    assert not (directory / "generation_config.json").exists()
    model.generation_config = swapformer.GenerationDefaults(max_length=8)
    assert model.generate(prompt, eos_token_id=[]).size(1) == 8
    assert model.generate(prompt, eos_token_id=[], max_new_tokens=2).size(1) == 7  # passed wins
    loaded = swapformer.load(model.save_pretrained(tmp_path / "with"))
    assert loaded.generation_config == swapformer.GenerationDefaults(max_length=8)


def test_a_setting_swapformer_cannot_apply_is_warned_about_then_refused(tmp_path):
    hf_with_defaults("bart-tied", tmp_path / "hf", num_beams=4, num_beam_groups=2, diversity_penalty=0.5)
    with pytest.warns(UserWarning, match=r"diversity_penalty=0.5, num_beam_groups=2 changes the tokens"):
        ours = swapformer.from_hf(tmp_path / "hf")
    ids, mask = inputs(ours, "bart-tied")
    with pytest.raises(ValueError, match=r"diversity_penalty=0.5.*unapplied.pop\('diversity_penalty'\)"):
        ours.generate(ids, mask)
    ours.generation_config.unapplied.clear()
    assert ours.generate(ids, mask).size(0) == 3
    # written back as read, so transformers still has them
    swapformer.to_hf(ours.eval(), tmp_path / "out")
    written = json.loads((tmp_path / "out" / "generation_config.json").read_text())
    assert written["num_beams"] == 4


def test_a_setting_of_the_wrong_type_is_refused_at_load(tmp_path):
    save(hf_model("gpt2-tied"), tmp_path / "hf")
    file = tmp_path / "hf" / "generation_config.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), "num_beams": "4"}))
    with pytest.raises(ConfigError, match=r"generation_config.json: num_beams='4' must be an int"):
        swapformer.from_hf(tmp_path / "hf")
