"""The logits processors behind the generation defaults, against transformers' own processors in their order."""

from __future__ import annotations

import pytest
import torch

from swapformer.generation.processors import bad_words, no_repeat_ngram
from swapformer.generation.search import Settings

transformers = pytest.importorskip("transformers", reason="the references are transformers' processors")
from transformers import generation as hf  # noqa: E402

VOCAB = 13


def ids_with_repeats(rows: int, length: int, seed: int) -> torch.Tensor:
    """Ids over a small alphabet, so n-grams and bad-word prefixes recur."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 5, (rows, length), generator=generator)


def hugging_face(settings: Settings, prompt_length: int, max_length: int) -> hf.LogitsProcessorList:
    """transformers' processors for ``settings``, in the order its ``generate`` builds them."""
    eos = list(settings.eos_token_id)
    processors = []
    if settings.repetition_penalty != 1.0:
        processors.append(hf.RepetitionPenaltyLogitsProcessor(settings.repetition_penalty))
    if settings.no_repeat_ngram_size:
        processors.append(hf.NoRepeatNGramLogitsProcessor(settings.no_repeat_ngram_size))
    if settings.bad_words_ids:
        processors.append(hf.NoBadWordsLogitsProcessor([list(w) for w in settings.bad_words_ids], eos))
    if settings.min_new_tokens:
        processors.append(hf.MinNewTokensLengthLogitsProcessor(prompt_length, settings.min_new_tokens, eos))
    if settings.forced_bos_token_id is not None:
        processors.append(hf.ForcedBOSTokenLogitsProcessor(settings.forced_bos_token_id))
    if settings.forced_eos_token_id:
        processors.append(hf.ForcedEOSTokenLogitsProcessor(max_length, list(settings.forced_eos_token_id)))
    if settings.suppress_tokens:
        processors.append(hf.SuppressTokensLogitsProcessor(list(settings.suppress_tokens)))
    if settings.begin_suppress_tokens:
        begin = prompt_length + (prompt_length == 1 and settings.forced_bos_token_id is not None)
        processors.append(
            hf.SuppressTokensAtBeginLogitsProcessor(list(settings.begin_suppress_tokens), begin)
        )
    if settings.do_sample:
        if settings.temperature != 1.0:
            processors.append(hf.TemperatureLogitsWarper(settings.temperature))
        if settings.top_k is not None:
            processors.append(hf.TopKLogitsWarper(settings.top_k))
        if settings.top_p is not None:
            processors.append(hf.TopPLogitsWarper(settings.top_p))
    return hf.LogitsProcessorList(processors)


SETTINGS = {
    "ngram-2": dict(no_repeat_ngram_size=2),
    "ngram-3": dict(no_repeat_ngram_size=3),
    "ngram-1": dict(no_repeat_ngram_size=1),
    "bad-words": dict(bad_words_ids=((4,), (1, 2), (0, 3, 1))),
    "suppress-and-min": dict(suppress_tokens=(5, 7), min_new_tokens=3, eos_token_id=(2, 9)),
    "begin-suppress": dict(begin_suppress_tokens=(0, 1, 11)),
    "forced-eos-list": dict(forced_eos_token_id=(2, 6), repetition_penalty=1.7),
    "all-with-sampling": dict(
        no_repeat_ngram_size=2,
        bad_words_ids=((3,), (2, 4)),
        suppress_tokens=(12,),
        min_new_tokens=2,
        eos_token_id=(2,),
        forced_eos_token_id=(2,),
        repetition_penalty=1.3,
        do_sample=True,
        temperature=0.7,
        top_k=6,
        top_p=0.8,
    ),
}


@pytest.mark.parametrize("name", sorted(SETTINGS))
@pytest.mark.parametrize("prompt_length", [1, 4])
def test_processed_logits_equal_those_of_transformers_at_every_length(name, prompt_length):
    settings = Settings(max_new_tokens=6, **SETTINGS[name])
    max_length = prompt_length + settings.max_new_tokens
    theirs = hugging_face(settings, prompt_length, max_length)
    for length in range(prompt_length, max_length):
        ids = ids_with_repeats(4, length, seed=length)
        logits = torch.randn(4, VOCAB, generator=torch.Generator().manual_seed(100 + length))
        expected = theirs(ids, logits.clone())
        torch.testing.assert_close(settings.process(logits, ids, prompt_length, max_length), expected)


def test_forced_bos_takes_the_first_place_after_a_start_id_and_delays_the_begin_suppression():
    settings = Settings(max_new_tokens=4, forced_bos_token_id=0, begin_suppress_tokens=(3,))
    theirs = hugging_face(settings, 1, 5)
    for length in (1, 2, 3):
        ids = ids_with_repeats(2, length, seed=length)
        logits = torch.randn(2, VOCAB)
        torch.testing.assert_close(settings.process(logits, ids, 1, 5), theirs(ids, logits.clone()))


def test_no_repeat_ngram_blocks_exactly_the_continuations_seen_before():
    ids = torch.tensor([[1, 2, 3, 1, 2, 4, 1, 2]])
    blocked = no_repeat_ngram(torch.zeros(1, 6), ids, 3).isinf().nonzero()[:, 1].tolist()
    assert blocked == [3, 4]  # "1 2" was followed by 3 and by 4
    assert not no_repeat_ngram(torch.zeros(1, 6), ids[:, :1], 3).isinf().any()  # too short to repeat


def test_a_bad_word_is_blocked_only_after_its_prefix():
    ids = torch.tensor([[0, 1, 2], [0, 2, 1]])
    blocked = bad_words(torch.zeros(2, 5), ids, ((1, 2, 4), (3,))).isinf()
    assert blocked[0].nonzero().flatten().tolist() == [3, 4] and blocked[1].nonzero().flatten().tolist() == [
        3
    ]
