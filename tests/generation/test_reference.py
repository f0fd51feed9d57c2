"""generate() against Hugging Face's GPT2LMHeadModel.generate on the same weights (built from a config, no
download): greedy, beam search under every stopping rule, and seeded sampling with every logits processor."""

from __future__ import annotations

import pytest
import torch
from tests.generation.hf_reference import gpt2_pair

from swapformer.generation import left_pad

pytest.importorskip("transformers", reason="Hugging Face transformers is the reference here (dev extra)")

PAD = 3  # not 0: HF's beam search fills finished rows with eos when pad_token_id is 0 (it tests `pad or eos`)
EOS = [12, 15, 24]  # ids the model emits: greedy rows end after 6 tokens, after 2 and never (tested)
STOPPING = [(1.0, False), (0.0, True), (2.0, "never"), (-1.0, False), (0.5, True)]


@pytest.fixture(scope="module")
def pair():
    return gpt2_pair(vocab_size=40)


@pytest.fixture(scope="module")
def prompts():
    """Three left-padded prompts, and eos ids the model really emits, so rows and beams end at different steps."""
    ids, mask = left_pad([[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]], pad_token_id=PAD)
    return ids, mask, EOS


def _ends(out, prompt_length):
    """Per row, how many tokens were made up to and including the first eos; None if it never came."""
    rows = out[:, prompt_length:].tolist()
    return [next((i + 1 for i, token in enumerate(row) if token in EOS), None) for row in rows]


def test_the_eos_ids_end_rows_and_beams_at_different_steps(pair, prompts):
    """What the comparisons below are worth: with eos ids that never came, or rows that all stop together, or
    stopping rules that all pick the same beams, a wrong rule would still give Hugging Face's tokens."""
    ours, _ = pair
    ids, mask, eos = prompts
    greedy = ours.generate(ids, mask, max_new_tokens=12, eos_token_id=eos, pad_token_id=PAD)
    assert _ends(greedy, ids.size(1)) == [6, 2, None]
    for num_beams in [2, 3, 5]:
        outputs = [
            ours.generate(
                ids,
                mask,
                max_new_tokens=10,
                num_beams=num_beams,
                eos_token_id=eos,
                length_penalty=length_penalty,
                early_stopping=early_stopping,
                pad_token_id=PAD,
            )
            for length_penalty, early_stopping in STOPPING
        ]
        distinct = {(tuple(out.shape), tuple(out.flatten().tolist())) for out in outputs}
        assert len(distinct) >= 4, (num_beams, [_ends(out, ids.size(1)) for out in outputs])
        assert any(len(set(_ends(out, ids.size(1)))) == 3 for out in outputs), num_beams


def _theirs(model, ids, mask, **kwargs):
    return model.generate(ids, attention_mask=mask.long(), pad_token_id=PAD, **kwargs)


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_equals_hugging_face(pair, prompts, use_cache):
    ours, theirs = pair
    ids, mask, eos = prompts
    expected = _theirs(theirs, ids, mask, max_new_tokens=12, do_sample=False, eos_token_id=eos)
    got = ours.generate(ids, mask, max_new_tokens=12, eos_token_id=eos, pad_token_id=PAD, use_cache=use_cache)
    assert torch.equal(got, expected)


@pytest.mark.parametrize(("length_penalty", "early_stopping"), STOPPING)
@pytest.mark.parametrize("num_beams", [2, 3, 5])
def test_beam_search_equals_hugging_face(pair, prompts, num_beams, length_penalty, early_stopping):
    ours, theirs = pair
    ids, mask, eos = prompts
    kwargs = dict(
        max_new_tokens=10,
        num_beams=num_beams,
        eos_token_id=eos,
        length_penalty=length_penalty,
        early_stopping=early_stopping,
    )
    expected = _theirs(theirs, ids, mask, do_sample=False, **kwargs)
    assert torch.equal(ours.generate(ids, mask, pad_token_id=PAD, **kwargs), expected)
    assert torch.equal(ours.generate(ids, mask, pad_token_id=PAD, use_cache=False, **kwargs), expected)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"temperature": 0.7, "top_k": 5},
        {"top_p": 0.8, "repetition_penalty": 1.3},
        {"temperature": 1.5, "top_k": 10, "top_p": 0.9},
        {"num_beams": 3},
    ],
)
def test_sampling_equals_hugging_face_with_the_same_seed(pair, prompts, kwargs):
    """Both draw with torch.multinomial on the same probabilities, so a shared global seed gives equal samples."""
    ours, theirs = pair
    ids, mask, eos = prompts
    torch.manual_seed(3)
    expected = _theirs(theirs, ids, mask, max_new_tokens=12, do_sample=True, eos_token_id=eos, **kwargs)
    torch.manual_seed(3)
    got = ours.generate(
        ids, mask, max_new_tokens=12, do_sample=True, eos_token_id=eos, pad_token_id=PAD, **kwargs
    )
    assert torch.equal(got, expected)


def test_logits_equal_hugging_face_step_by_step(pair, prompts):
    from swapformer.generation import KVCache

    ours, theirs = pair
    ids, mask, _ = prompts
    with torch.no_grad():
        full = theirs(
            ids, attention_mask=mask.long(), position_ids=(mask.long().cumsum(-1) - 1).clamp(min=0)
        ).logits
        cache = KVCache(len(ours.decoder.layers))
        first = ours(ids[:, :3], mask[:, :3], cache=cache)
        rest = [ours(ids[:, i : i + 1], mask[:, : i + 1], cache=cache) for i in range(3, ids.size(1))]
    got = torch.cat([first, *rest], dim=1)
    real = mask[..., None].expand_as(got)  # padded positions' logits are not defined the same way
    torch.testing.assert_close(got[real], full[real], atol=1e-5, rtol=1e-5)
