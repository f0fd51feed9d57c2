"""Cached decoding equals uncached decoding, for every positional member, every kernel, MHA and GQA, both model
kinds: the logits of each step agree to 1e-5 and greedy decoding gives exactly the same tokens.

The KV-cache bugs other libraries shipped (rotary offsets, cross-attention recomputed with the wrong keys,
GQA caching the expanded heads, a bias at the wrong query position) each break one of these.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from swapformer import build_causal_lm, build_seq2seq, family
from swapformer.compat import compatibility_rows
from swapformer.generation import KVCache, left_pad

V = 23
ATOL = 1e-5


def _pairs():
    """Every (positional, kernel) pair the compatibility matrix supports; an alias (one class, two names) once."""
    positional = family("positional")
    distinct = {positional.get(name).factory: name for name in reversed(positional.available())}.values()
    return [
        (r["positional"], r["attention"])
        for r in compatibility_rows()
        if r["supported"] and r["positional"] in distinct
    ]


PAIRS = _pairs()
COMBOS = [(kind, p, a, kv) for kind in ("causal_lm", "seq2seq") for p, a in PAIRS for kv in (4, 2)]
IDS = [f"{k}-{p}-{a}-kv{kv}" for k, p, a, kv in COMBOS]
SETTINGS = settings(max_examples=5, deadline=None, derandomize=True)


@functools.cache
def model(kind, positional, attention, kv):
    # init_std 0.2, not 0.02: logits of order 1, so a wrong key or position moves them far beyond 1e-5
    if attention == "sliding_window":  # a window shorter than the sequences, so the band really cuts
        attention = {"name": "sliding_window", "window": 3}
    cfg = dict(vocab_size=V, d_model=16, num_heads=4, num_kv_heads=kv, num_layers=2, d_ff=24, max_seq_len=64,
               dropout=0.0, positional=positional, attention=attention, placement="pre",
               init_std=0.2)  # fmt: skip
    torch.manual_seed(0)
    return (build_causal_lm if kind == "causal_lm" else build_seq2seq)(cfg).eval()


@st.composite
def batches(draw):
    n = draw(st.integers(1, 3))
    length = draw(st.integers(2, 10))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    ids = torch.randint(4, V, (n, length), generator=gen)
    src = torch.randint(4, V, (n, draw(st.integers(1, 10))), generator=gen)
    prefix = draw(st.integers(1, length))  # tokens fed at once before the one-token steps
    return ids, src, prefix


@pytest.mark.parametrize(("kind", "positional", "attention", "kv"), COMBOS, ids=IDS)
@SETTINGS
@given(batch=batches())
def test_cached_logits_equal_uncached(kind, positional, attention, kv, batch):
    ids, src, prefix = batch
    net = model(kind, positional, attention, kv)
    cache = KVCache(len(net.decoder.layers))
    with torch.no_grad():
        if kind == "causal_lm":
            full = net(ids)
            steps = [net(ids[:, :prefix], cache=cache)]
            steps += [net(ids[:, i : i + 1], cache=cache) for i in range(prefix, ids.size(1))]
        else:
            memory = net.encode(src)
            full = net.decode(ids, memory)
            steps = [net.decode(ids[:, :prefix], memory, cache=cache)]
            steps += [net.decode(ids[:, i : i + 1], memory, cache=cache) for i in range(prefix, ids.size(1))]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=ATOL, rtol=1e-5)
    assert cache.length == ids.size(1)


@pytest.mark.parametrize(("kind", "positional", "attention", "kv"), COMBOS, ids=IDS)
@SETTINGS
@given(batch=batches())
def test_cached_greedy_tokens_equal_uncached(kind, positional, attention, kv, batch):
    ids, src, _ = batch
    net = model(kind, positional, attention, kv)
    if kind == "causal_lm":
        kwargs = dict(max_new_tokens=8, eos_token_id=5)
        cached, uncached = net.generate(ids, **kwargs), net.generate(ids, use_cache=False, **kwargs)
    else:
        kwargs = dict(max_new_tokens=8, eos_token_id=5, decoder_start_token_id=1)
        cached, uncached = net.generate(src, **kwargs), net.generate(src, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize(("positional", "attention"), PAIRS)
def test_left_padded_batch_equals_each_prompt_alone(positional, attention):
    """Batched prompts of different lengths (left padding, per-row positions) decode as each would alone."""
    net = model("causal_lm", positional, attention, 2)
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 16]]
    ids, mask = left_pad(prompts)
    batched = net.generate(ids, mask, max_new_tokens=8, eos_token_id=[])  # no eos: every row runs 8 steps
    for row, prompt in enumerate(prompts):
        alone = net.generate(torch.tensor([prompt]), max_new_tokens=8, eos_token_id=[])
        assert batched[row, ids.size(1) - len(prompt) :].tolist() == alone[0].tolist()
