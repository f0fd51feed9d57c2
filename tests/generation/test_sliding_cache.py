"""The KV cache of a sliding-window layer keeps only its window: a ring of ``W`` slots, while full layers keep
every token. Decoding with it gives the logits of a full forward pass and the tokens of uncached decoding, for a
Gemma 3 style model (5 sliding : 1 full) with left-padded prompts longer than the window, greedy and beam search,
eager, planned and compiled steps."""

from __future__ import annotations

import functools

import pytest
import torch

from swapformer import build_causal_lm
from swapformer.generation import KVCache, left_pad
from swapformer.nn import AttentionCache

V, W = 29, 4
PROMPTS = [[5, 6, 7, 8, 9, 10, 11, 12, 13], [11, 12], [13, 14, 15, 16, 3, 4]]  # two longer than the window


@functools.cache
def patterned(window: int | None = W):
    """Five sliding-window layers then a full one (``window=None``: six full layers, the all-global peer)."""
    local = {} if window is None else {"attention": {"name": "sliding_window", "window": window}}
    config = dict(vocab_size=V, d_model=16, num_heads=4, num_kv_heads=2, num_layers=6, d_ff=24, max_seq_len=64,
                  dropout=0.0, positional="rope", norm="rmsnorm", placement="pre", ffn="swiglu", init_std=0.2,
                  layers={"pattern": ["local"] * 5 + ["global"], "types": {"local": local, "global": {}}})  # fmt: skip
    torch.manual_seed(0)  # init_std 0.2: logits of order 1, attention far from uniform
    return build_causal_lm(config).eval()


def _ids(rows: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(1, V, (rows, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("prefix", [1, 4, 9])  # prompts shorter than, as long as, and longer than W = 4
def test_cached_logits_equal_one_full_pass_past_the_window(prefix):
    net, ids = patterned(), _ids(3, 14, seed=1)
    mask = torch.arange(14)[None, :] >= torch.tensor([[0], [5], [9]])  # left padding: per-row offsets
    cache = KVCache(len(net.decoder.layers))
    with torch.no_grad():
        full = net(ids, attention_mask=mask)
        steps = [net(ids[:, :prefix], attention_mask=mask[:, :prefix], cache=cache)]
        steps += [
            net(ids[:, i : i + 1], attention_mask=mask[:, : i + 1], cache=cache) for i in range(prefix, 14)
        ]
    torch.testing.assert_close(torch.cat(steps, 1)[mask], full[mask], atol=1e-5, rtol=1e-5)  # real tokens


def test_chunks_after_a_wrapped_ring_equal_one_full_pass():
    # calls of several tokens once the ring has wrapped: the kept keys in token order, then the new ones
    net, ids = patterned(), _ids(2, 23, seed=2)
    mask = torch.arange(23)[None, :] >= torch.tensor([[0], [3]])
    cache = KVCache(len(net.decoder.layers))
    with torch.no_grad():
        full = net(ids, attention_mask=mask)
        chunks = [net(ids[:, a:b], attention_mask=mask[:, :b], cache=cache)
                  for a, b in ((0, 3), (3, 9), (9, 10), (10, 17), (17, 18), (18, 23))]  # fmt: skip
    torch.testing.assert_close(torch.cat(chunks, 1)[mask], full[mask], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("num_beams", "padded"), [(1, True), (3, True), (2, False)], ids=["greedy", "beams", "planned-beams"]
)  # left-padded prompts run masked steps; unpadded ones the plan of the members' functions
def test_generate_gives_the_uncached_tokens_past_the_window(num_beams, padded):
    net = patterned()
    ids, mask = left_pad(PROMPTS) if padded else (torch.tensor([PROMPTS[0], PROMPTS[2] + [7, 8, 9]]), None)
    kwargs = dict(max_new_tokens=14, eos_token_id=[], num_beams=num_beams)  # 14 new tokens: past 3 W
    cached = net.generate(ids, mask, **kwargs)
    assert cached.size(1) == ids.size(1) + 14
    assert torch.equal(cached, net.generate(ids, mask, use_cache=False, **kwargs))


def test_a_sliding_layer_cache_stays_at_the_window_after_3w_tokens():
    net, ids = patterned(), _ids(2, 3 * W + 2, seed=3)
    cache = KVCache(len(net.decoder.layers))
    with torch.no_grad():
        net(ids[:, :2], cache=cache)
        for i in range(2, ids.size(1)):  # 3 W decoding steps
            net(ids[:, i : i + 1], cache=cache)
    slot = 2 * (2 * 2 * 4) * 4  # keys and values of one token: 2 rows x 2 kv heads x E = 4, 4 bytes each
    held = [layer.self_attention for layer in cache.layers]
    assert [c.keys.size(2) for c in held] == [W] * 5 + [3 * W + 2]
    assert [c.nbytes for c in held[:5]] == [W * slot] * 5  # the buffers themselves: W slots
    assert held[5].nbytes >= (3 * W + 2) * slot  # the full layer keeps every token
    assert cache.nbytes == sum(c.nbytes for c in held)


def test_the_window_bounds_the_cache_of_generate(monkeypatch):
    # generate preallocates prompt + new tokens; a sliding layer's buffer is the window, however many come
    net, caches, original = patterned(), [], KVCache.__init__

    def keep(self, *args, **kwargs):
        original(self, *args, **kwargs)
        caches.append(self)

    monkeypatch.setattr(KVCache, "__init__", keep)
    net.generate(torch.tensor([PROMPTS[0]]), max_new_tokens=3 * W, eos_token_id=[])
    (cache,) = caches
    shapes = [tuple(layer.self_attention.keys.shape) for layer in cache.layers]
    run = len(PROMPTS[0]) + 3 * W - 1  # the last new token is not run
    assert shapes == [(1, 2, W, 4)] * 5 + [(1, 2, run, 4)]
    assert cache.layers[0].self_attention.nbytes * 5 < cache.layers[5].self_attention.nbytes


@pytest.mark.parametrize("chunks", [[1] * 11, [3, 1, 1, 5, 1], [7, 1, 1, 2], [2, 9]], ids=str)
@pytest.mark.parametrize("paired", [False, True], ids=["apart", "paired"])
def test_ring_holds_the_last_window_and_the_mask_follows_its_slots(chunks, paired):
    """Each append returns the keys to attend and the mask columns that go with them: numbering every token's
    key and mask column by the token, they must agree, and the kept keys are the last ``W`` tokens."""
    cache, seen = AttentionCache(window=W), 0
    for count in chunks:
        tokens = torch.arange(seen, seen + count, dtype=torch.float32)
        key = tokens.view(1, 1, count, 1).expand(1, 2, count, 3)  # (N, Hkv, L, E), every entry its token
        if paired and seen and count == 1:
            keys, values = cache.append_pairs(torch.cat((key, -key), 1))
        else:
            keys, values = cache.append(key, -key)
        seen += count
        columns = cache.key_mask(torch.arange(seen, dtype=torch.float32).view(1, 1, 1, seen), count)
        assert torch.equal(keys[0, 0, :, 0], columns.flatten())  # each key sits under its token's column
        assert torch.equal(values, -keys)
        visible = min(seen - count, W) + count if count > 1 else min(seen, W)
        assert keys.size(2) == visible
        assert cache.keys[0, 0, :, 0].tolist() == list(range(max(seen - W, 0), seen))
        assert cache.keys.size(2) <= W and cache.length == seen


def test_ring_rows_follow_reorder():
    cache = AttentionCache(window=2)
    for token in range(5):
        key = torch.tensor([token, 10 + token, 20 + token], dtype=torch.float32).view(3, 1, 1, 1)
        cache.append(key, key)
    cache.reorder(torch.tensor([2, 2, 0]))
    assert cache.keys.flatten().tolist() == [23.0, 24.0, 23.0, 24.0, 3.0, 4.0]


def test_full_layers_of_the_same_model_keep_every_token():
    # the all-global peer: no window, no ring
    net = patterned(None)
    cache = KVCache(len(net.decoder.layers))
    with torch.no_grad():
        net(_ids(1, 3 * W, seed=4), cache=cache)
    assert [layer.self_attention.keys.size(2) for layer in cache.layers] == [3 * W] * 6
    assert all(layer.self_attention.window is None for layer in cache.layers)


@pytest.mark.slow  # compiles the one-token step: about a minute on a CPU
def test_compiled_steps_give_the_eager_tokens_past_the_window():
    net = patterned()
    ids, mask = left_pad(PROMPTS)
    for num_beams in (1, 2):
        kwargs = dict(max_new_tokens=10, eos_token_id=[], num_beams=num_beams)
        assert torch.equal(net.generate(ids, mask, compile=True, **kwargs), net.generate(ids, mask, **kwargs))
