"""Fast decoding of encoder-decoders: every one-token step of an imported T5, BART or Marian runs through the
decoding plan (:meth:`swapformer.models.seq2seq.Seq2SeqStep.plan`), with the source's cross-attention keys and
values projected once per source, and gives transformers' tokens: greedy and beam-4, one source and a padded batch,
with the checkpoint's generation defaults applied."""

from __future__ import annotations

import pytest
import torch
from tests.interop.hf_models import SEQ2SEQ, hf_model, save
from tests.interop.test_hf_generation_config import CASES, equal_up_to_padding, hf_with_defaults, inputs
from tests.weights import spread_weights

import swapformer
from swapformer.models.seq2seq import Seq2SeqStep
from swapformer.nn import KVCache


@pytest.fixture
def planned_steps(monkeypatch):
    """A list that receives one entry per one-token step run through a Seq2SeqStep's plan (None: no plan)."""
    steps: list = []
    make = Seq2SeqStep.plan

    def counted(self):
        plan = make(self)
        if plan is None:
            steps.append(None)
            return None

        def step(ids, position):
            steps.append(position)
            return plan(ids, position)

        return step

    monkeypatch.setattr(Seq2SeqStep, "plan", counted)
    return steps


def sources(model, padded):
    """One source, or a batch of three right-padded ones (as a tokenizer pads them)."""
    torch.manual_seed(4)
    batch = 3 if padded else 1
    ids = torch.randint(4, model.config.src_vocab_size or model.config.vocab_size, (batch, 9))
    mask = torch.ones_like(ids)
    if padded:
        mask[1, 6:], mask[2, 3:] = 0, 0
    return ids, mask


@pytest.mark.parametrize("padded", [False, True], ids=["one", "padded"])
@pytest.mark.parametrize("beams", [1, 4], ids=["greedy", "beam4"])
@pytest.mark.parametrize("name", sorted(SEQ2SEQ))
def test_planned_decoding_gives_the_tokens_of_transformers(name, beams, padded, tmp_path, planned_steps):
    theirs = hf_model(name)
    ours = swapformer.from_hf(save(theirs, tmp_path / "hf"))
    ids, mask = sources(ours, padded)
    settings = dict(num_beams=beams, max_new_tokens=10)
    with torch.no_grad():
        expected = theirs.generate(ids, attention_mask=mask, **settings)
    got = ours.generate(ids, mask, **settings)
    assert equal_up_to_padding(got, expected, ours.generation_config.pad_token_id), (got, expected)
    # the plan ran every step: the start id at position 0, then one position more per step
    assert None not in planned_steps and planned_steps[:2] == [0, 1]
    assert len(planned_steps) >= got.size(1) - 1


@pytest.mark.parametrize("name", sorted(name for name in CASES if name in SEQ2SEQ))
def test_the_generation_defaults_apply_on_the_planned_path(name, tmp_path, planned_steps):
    # Marian's bad pad word and forced EOS, BART's forced BOS and EOS, no-repeat n-grams, beams and length
    # penalty, T5's minimum length, repetition penalty and suppressed tokens: the checkpoint's defaults, no arguments
    theirs = hf_with_defaults(name, tmp_path / "hf", **CASES[name])
    ours = swapformer.from_hf(tmp_path / "hf")
    ids, mask = inputs(ours, name)
    with torch.no_grad():
        expected = theirs.generate(ids, attention_mask=mask)
    assert torch.equal(ours.generate(ids, mask), expected)
    assert planned_steps and None not in planned_steps


NATIVE = {
    "post-sinusoidal-relu": dict(positional="sinusoidal", placement="post", ffn="relu"),
    "pre-t5-relative-gqa": dict(positional="t5_relative", norm="rmsnorm", placement="pre", num_kv_heads=2),
    "rope-swiglu-learned-untied": dict(positional="rope", ffn="swiglu", tie_embeddings=False),
}


@pytest.mark.parametrize("padded", [False, True], ids=["one", "padded"])
@pytest.mark.parametrize("shape", sorted(NATIVE))
def test_the_plan_gives_the_modules_logits_bit_for_bit(shape, padded):
    # the same steps through the plan and through model.decode with its own cache: the same operators on the same
    # tensors, so equal logits, not close ones. Spread weights: at std 0.02 the post-norm model's cross-attention
    # is so near uniform that its logits stay within 1e-5 of the uncached ones with the step's queries zeroed
    config = dict(kind="seq2seq", vocab_size=40, d_model=32, num_heads=4, num_layers=2, d_ff=64, dropout=0.0)
    torch.manual_seed(0)
    model = spread_weights(swapformer.build_seq2seq({**config, **NATIVE[shape]}).eval())
    src = torch.randint(3, 40, (3, 7))
    src_mask = torch.ones(3, 7, dtype=torch.bool)
    if padded:
        src_mask[1, 4:] = False
    tgt = torch.randint(3, 40, (3, 6))
    with torch.inference_mode():
        memory = model.encode(src, src_mask)
        planned, by_modules = KVCache(2, capacity=8), KVCache(2, capacity=8)
        for layer, a, b in zip(model.decoder.layers, planned.layers, by_modules.layers, strict=True):
            layer.remember(memory, a)
            layer.remember(memory, b)
        step = Seq2SeqStep(model, memory, src_mask if padded else None, planned)
        assert step._plan is not None  # the plan runs: this test compares something
        ours = [step(tgt[:, : i + 1], None, 1) for i in range(6)]
        theirs = [
            model.decode(tgt[:, i : i + 1], memory, src_mask=src_mask if padded else None, cache=by_modules)[
                :, -1
            ]
            for i in range(6)
        ]
        full = model.decode(tgt, memory, src_mask=src_mask)
    assert torch.equal(torch.stack(ours, 1), torch.stack(theirs, 1))
    torch.testing.assert_close(torch.stack(ours, 1), full, atol=1e-5, rtol=1e-5)  # and the uncached logits


@pytest.mark.parametrize("kernel", ["sdpa", "math"])
@pytest.mark.parametrize("padded", [False, True], ids=["one", "padded"])
@pytest.mark.parametrize("shape", sorted(NATIVE))
def test_beams_attend_their_sources_keys_held_once(shape, padded, kernel):
    # 3 sources x 2 beams, each beam its own target. With sdpa's function the cross-attention keys and values stay
    # one row per source and a step folds a source's beams into its queries; the plan and the modules' cached
    # step share that function, so their logits are equal. Against the uncached path (every beam its own copy
    # of the memory, one query each) they are close, not equal: torch's CPU kernel rounds 2 queries differently
    # from 1 in the last bits. The math kernel (no function) keeps a copy per beam.
    config = dict(kind="seq2seq", vocab_size=40, d_model=32, num_heads=4, num_layers=2, d_ff=64, dropout=0.0)
    torch.manual_seed(0)
    # weights of 1 / sqrt(fan_in): attention far from uniform, so each query matters
    model = spread_weights(swapformer.build_seq2seq({**config, **NATIVE[shape], "attention": kernel}).eval())
    sources, beams = 3, 2
    src = torch.randint(3, 40, (sources, 7))
    src_mask = torch.ones(sources, 7, dtype=torch.bool)
    if padded:
        src_mask[1, 4:] = False
    tgt = torch.randint(3, 40, (sources * beams, 6))
    with torch.inference_mode():
        memory = model.encode(src, src_mask)
        planned, by_modules = KVCache(2, capacity=8), KVCache(2, capacity=8)
        for layer, a, b in zip(model.decoder.layers, planned.layers, by_modules.layers, strict=True):
            layer.remember(memory, a, repeats=beams)
            layer.remember(memory, b, repeats=beams)
        held = sources if kernel == "sdpa" else sources * beams
        assert all(layer.cross_attention.keys.size(0) == held for layer in planned.layers)
        memory, src_mask = memory.repeat_interleave(beams, 0), src_mask.repeat_interleave(beams, 0)
        source_mask = src_mask if padded else None
        step = Seq2SeqStep(model, memory, source_mask, planned)
        assert step._plan is not None
        ours = torch.stack([step(tgt[:, : i + 1], None, 1) for i in range(6)], 1)
        theirs = torch.stack(
            [
                model.decode(tgt[:, i : i + 1], memory, src_mask=source_mask, cache=by_modules)[:, -1]
                for i in range(6)
            ],
            1,
        )
        full = model.decode(tgt, memory, src_mask=source_mask)
    assert torch.equal(ours, theirs)
    torch.testing.assert_close(ours, full, atol=1e-5, rtol=1e-5)


def test_a_hook_takes_the_modules_path_and_the_source_is_projected_once_per_source(planned_steps):
    # a hook on a cross-attention projection: no plan (the hook must run), the same tokens as without a cache;
    # the hook also sees that each layer projects the two sources once, not once per beam
    torch.manual_seed(0)
    model = swapformer.build_seq2seq(
        dict(kind="seq2seq", vocab_size=40, d_model=32, num_heads=4, num_layers=2, d_ff=64, dropout=0.0)
    ).eval()
    rows = []
    for layer in model.decoder.layers:
        layer.cross_attention.sublayer.k_proj.register_forward_hook(
            lambda m, args, out: rows.append(len(out))
        )
    src = torch.randint(3, 40, (2, 7))
    cached = model.generate(src, num_beams=4, max_new_tokens=6, eos_token_id=[], decoder_start_token_id=1)
    assert rows == [2, 2] and planned_steps == [None]
    rerun = model.generate(
        src, num_beams=4, max_new_tokens=6, eos_token_id=[], decoder_start_token_id=1, use_cache=False
    )
    assert torch.equal(cached, rerun)
