"""Beam search proven to search, beam size 1 equal to greedy, seeded sampling, streaming, and argument errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from tests.weights import spread_weights

from swapformer import build_causal_lm, build_seq2seq
from swapformer.generation import Settings, beam_search, sample_or_greedy

BOS, EOS, A, B, C = 1, 2, 3, 4, 5
# A bigram model small enough to check by hand: the next-token distribution depends on the last token only.
#   after BOS: A 0.5, B 0.4, C 0.1     greedy takes A ...
#   after A:   A 0.3, B 0.3, C 0.4     ... and then nothing after A is likely,
#   after B:   EOS 0.9, C 0.1          ... while BOS B EOS has probability 0.4 * 0.9 = 0.36 > 0.5 * 0.4 * ...
#   after C:   EOS 0.5, C 0.5
TABLE = {
    BOS: {A: 0.5, B: 0.4, C: 0.1},
    A: {A: 0.3, B: 0.3, C: 0.4},
    B: {EOS: 0.9, C: 0.1},
    C: {EOS: 0.5, C: 0.5},
}
VOCAB = 6


class Bigram:
    """A step function (see swapformer.generation.search) reading TABLE."""

    def __init__(self):
        self.logits = torch.full((VOCAB, VOCAB), -math.inf)
        for prev, row in TABLE.items():
            for token, p in row.items():
                self.logits[prev, token] = math.log(p)

    def __call__(self, ids, attention_mask, new):
        return self.logits[ids[:, -1]]

    def reorder(self, index):  # stateless
        pass


def sequence_probability(tokens):
    p = 1.0
    for prev, token in itertools.pairwise([BOS, *tokens]):
        p *= TABLE.get(prev, {}).get(token, 0.0)
    return p


def best_by_enumeration(max_new):
    """The most likely finished sequence of at most ``max_new`` tokens, by trying every one."""
    candidates = [
        list(seq)
        for n in range(1, max_new + 1)
        for seq in itertools.product(range(VOCAB), repeat=n)
        if seq[-1] == EOS and EOS not in seq[:-1]
    ]
    return max(candidates, key=sequence_probability)


def test_beam_search_finds_the_sequence_greedy_misses():
    settings = dict(max_new_tokens=4, eos_token_id=(EOS,), pad_token_id=0, length_penalty=0.0)
    prompt = torch.tensor([[BOS]])
    greedy = sample_or_greedy(Bigram(), prompt, None, Settings(**settings))[0, 1:].tolist()
    beams = torch.tensor([[BOS], [BOS]])
    beam = beam_search(Bigram(), beams, None, Settings(num_beams=2, **settings))[0, 1:].tolist()
    best = best_by_enumeration(4)
    assert greedy[0] == A  # greedy commits to the likelier first token ...
    assert sequence_probability(greedy) < sequence_probability(beam)  # ... and ends worse
    assert beam == best == [B, EOS]  # beam search finds the most likely sequence, as enumeration does
    assert sequence_probability(beam) == pytest.approx(0.36)


@pytest.mark.parametrize("kind", ["causal_lm", "seq2seq"])
@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_beam_size_one_equals_greedy(kind, length_penalty):
    """With early_stopping=True one beam stops at its first eos, exactly where greedy stops."""
    torch.manual_seed(0)
    cfg = dict(vocab_size=12, d_model=16, num_heads=2, num_layers=2, positional="rope")
    ids = torch.randint(3, 12, (3, 5))
    # spread weights: at std 0.02 every greedy row repeats one token (the seq2seq rows end at once), and the
    # test passed with the cached steps' queries zeroed
    net = spread_weights((build_causal_lm if kind == "causal_lm" else build_seq2seq)(cfg), gain=1.5)
    extra = {} if kind == "causal_lm" else {"decoder_start_token_id": BOS}
    greedy = net.generate(ids, max_new_tokens=15, eos_token_id=[], **extra)
    eos = int(greedy[0, -6])  # a token it really emits, so rows end at different steps
    greedy = net.generate(ids, max_new_tokens=15, eos_token_id=eos, **extra)
    kwargs = dict(num_beams=1, eos_token_id=(eos,), length_penalty=length_penalty, early_stopping=True)
    for row in range(ids.size(0)):  # beam search handles one row per input; greedy pads finished rows
        prompt = ids[row : row + 1]
        one = net.generate(prompt, max_new_tokens=15, eos_token_id=eos, **extra)
        beam = torch_beam(net, kind, prompt, extra, **kwargs)
        assert beam.tolist() == one.tolist()
        assert one[0].tolist() == greedy[row, : one.size(1)].tolist()


def torch_beam(net, kind, prompt, extra, **kwargs):
    """Call beam_search itself with num_beams=1 (generate() would dispatch one beam to the greedy loop)."""
    from swapformer.models.causal_lm import CausalStep
    from swapformer.models.seq2seq import Seq2SeqStep

    settings = Settings(max_new_tokens=15, **kwargs)
    with torch.no_grad():
        if kind == "causal_lm":
            return beam_search(CausalStep(net.eval(), None), prompt, None, settings)
        step = Seq2SeqStep(net.eval(), net.encode(prompt), None, None)
        return beam_search(step, torch.tensor([[extra["decoder_start_token_id"]]]), None, settings)


def test_seeded_sampling_repeats_and_leaves_the_global_rng_alone():
    net = build_causal_lm(dict(vocab_size=30, d_model=16, num_heads=2, num_layers=1))
    ids = torch.randint(30, (2, 4))
    state = torch.get_rng_state()
    first = net.generate(ids, max_new_tokens=20, do_sample=True, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(net.generate(ids, max_new_tokens=20, do_sample=True, seed=7), first)
    assert not torch.equal(net.generate(ids, max_new_tokens=20, do_sample=True, seed=8), first)


def test_streamer_gets_every_new_token_then_end():
    class Recorder:
        def __init__(self):
            self.tokens, self.ended = [], False

        def put(self, value):
            self.tokens.append(value.tolist())

        def end(self):
            self.ended = True

    net = build_causal_lm(dict(vocab_size=30, d_model=16, num_heads=2, num_layers=1))
    ids = torch.randint(30, (2, 4))
    recorder = Recorder()
    out = net.generate(ids, max_new_tokens=6, streamer=recorder)
    assert recorder.ended
    assert torch.tensor(recorder.tokens).T.tolist() == out[:, 4:].tolist()


def test_generate_restores_training_mode():
    net = build_causal_lm(dict(vocab_size=30, d_model=16, num_heads=2, num_layers=1, dropout=0.5)).train()
    ids = torch.randint(30, (1, 4))
    assert torch.equal(
        net.generate(ids, max_new_tokens=5), net.generate(ids, max_new_tokens=5)
    )  # eval inside
    assert net.training


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"top_p": 0.0, "do_sample": True}, r"top_p=0\.0 must be in \(0, 1\]"),
        ({"top_p": 1.5, "do_sample": True}, r"top_p=1\.5 must be in \(0, 1\]"),
        ({"num_beams": 0}, r"num_beams=0 must be an int >= 1"),
        ({"temperature": 0.0, "do_sample": True}, r"temperature=0\.0 must be > 0 when sampling"),
        ({"top_k": 5}, r"only when sampling: pass do_sample=True"),
        ({"max_new_tokens": 0}, r"max_new_tokens=0 must be an int >= 1"),
        ({"repetition_penalty": 0.0}, r"repetition_penalty=0\.0 must be > 0"),
        ({"early_stopping": "sometimes", "num_beams": 2}, r"early_stopping='sometimes'"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    net = build_causal_lm(dict(vocab_size=30, d_model=16, num_heads=2, num_layers=1))
    with pytest.raises(ValueError, match=match):
        net.generate(torch.tensor([[4, 5]]), **kwargs)


def test_prompt_errors():
    net = build_causal_lm(
        dict(vocab_size=30, d_model=16, num_heads=2, num_layers=1, positional="learned", max_seq_len=16)
    )
    with pytest.raises(ValueError, match=r"non-empty .* BOS id"):
        net.generate(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"prompt \+ max_new_tokens is 20 tokens .* holds 16 positions"):
        net.generate(torch.tensor([[4] * 10]), max_new_tokens=10)
    with pytest.raises(ValueError, match=r"rows \[0\] of attention_mask are right-padded"):
        net.generate(torch.tensor([[4, 5, 0]]), torch.tensor([[1, 1, 0]]))
    with pytest.raises(ValueError, match=r"rows \[1\] of the attention mask hold no real token"):
        net.generate(torch.tensor([[4, 5], [0, 0]]), torch.tensor([[1, 1], [0, 0]]))
    # a config without bos or decoder_start ids leaves generate() no first target id
    seq2seq = build_seq2seq(dict(vocab_size=30, d_model=16, num_heads=2, num_layers=1, bos_token_id=None))
    with pytest.raises(ValueError, match=r"needs decoder_start_token_id"):
        seq2seq.generate(torch.tensor([[4, 5]]))
    # built with the defaults, it starts from the config's bos id and stops at its eos id, as HF's generate does
    built = build_seq2seq(dict(vocab_size=30, d_model=16, num_heads=2, num_layers=1, dropout=0.0))
    out = built.generate(torch.tensor([[4, 5]]), max_new_tokens=30)
    explicit = built.generate(
        torch.tensor([[4, 5]]), max_new_tokens=30, decoder_start_token_id=1, eos_token_id=2
    )
    assert out[0, 0] == 1 and torch.equal(out, explicit)
