"""The one-token decoding path (stacked q/k rotation in place, keys and values cached with one copy) against the
general path it replaces: the same numbers, for multi-head and grouped-query attention."""

import pytest
import torch
from tests.weights import spread_weights

from swapformer import build_causal_lm
from swapformer.components.functions import function_of, plain
from swapformer.components.positional import RotaryPositionalEncoding
from swapformer.components.positional.rope_scaling import ScaledRotaryPositionalEncoding
from swapformer.models.causal_lm import CausalStep
from swapformer.nn.cache import AttentionCache, KVCache


def stacked_heads(batch, heads, kv_heads, head_dim, dtype=torch.float32):
    """One token's stacked projection viewed head-major, ``(N, H + 2 Hkv, 1, E)``, as attention makes it."""
    return torch.randn(batch, 1, (heads + 2 * kv_heads) * head_dim).to(dtype).view(batch, -1, 1, head_dim)


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (4, 2), (4, 1)], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("offset", [0, 7, 63, 200, "rows"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_stacked_rotation_equals_rotate(heads, kv_heads, offset, dtype):
    batch, head_dim = 3, 16
    offset = torch.tensor([5, -2, 130]) if offset == "rows" else offset  # rows: left-padded prompts
    rope = RotaryPositionalEncoding(head_dim=head_dim)
    qkv = stacked_heads(batch, heads, kv_heads, head_dim, dtype)
    q, k, v = qkv.split([heads, kv_heads, kv_heads], 1)
    with torch.inference_mode():
        want_q, want_k = rope.rotate(q, k, offset=offset)
        value = v.clone()
        tables, rotate = rope.stacked_rotation()
        query_keys = qkv.narrow(1, 0, heads + kv_heads)
        rotate(query_keys, *tables(offset, query_keys))
    torch.testing.assert_close(q, want_q, atol=0, rtol=0)
    torch.testing.assert_close(k, want_k, atol=0, rtol=0)
    assert torch.equal(v, value)  # the value heads beside them are left alone


def test_stacked_rotation_looks_up_each_step_position_and_follows_the_dtype():
    # the tables are kept from one call to the next (the layers of a step): a new position, dtype or a grown
    # table must not reuse them
    rope = ScaledRotaryPositionalEncoding(head_dim=8, scaling="linear", factor=2.0)
    with torch.no_grad():
        for offset, dtype in ((3, torch.float32), (3, torch.float32), (4, torch.float32), (4, torch.float64),
                              (500, torch.float64), (5, torch.float32)):  # fmt: skip
            qkv = stacked_heads(2, 2, 1, 8, dtype)
            want = rope.rotate(*qkv.split([2, 1, 1], 1)[:2], offset=offset)
            tables, rotate = rope.stacked_rotation()
            rotate(qkv.narrow(1, 0, 3), *tables(offset, qkv))
            torch.testing.assert_close(qkv.narrow(1, 0, 3), torch.cat(want, 1), atol=0, rtol=0)


def test_no_stacked_rotation_where_rotate_is_overridden():
    class ShiftedRope(RotaryPositionalEncoding):
        def rotate(self, q, k, *, offset=0):
            return super().rotate(q, k, offset=offset + 1)

    assert ShiftedRope(head_dim=8).stacked_rotation() is None
    assert RotaryPositionalEncoding(head_dim=8).stacked_rotation() is not None


def test_append_pairs_equals_append_across_growth_and_reorder():
    batch, kv_heads, head_dim = 3, 2, 4
    separate, stacked = AttentionCache(capacity=4), AttentionCache(capacity=4)
    separate.append(*torch.randn(2, batch, kv_heads, 3, head_dim))  # a prompt, then one token per step
    stacked.append(separate.keys.clone(), separate.values.clone())
    for step in range(6):  # past the capacity: the buffer doubles
        pairs = torch.randn(batch, 2 * kv_heads, 1, head_dim)
        want = separate.append(pairs[:, :kv_heads], pairs[:, kv_heads:])
        got = stacked.append_pairs(pairs)
        for g, w in zip(got, want):
            assert torch.equal(g, w)
        if step == 2:
            index = torch.tensor([2, 2, 0])  # beam search keeps rows
            separate.reorder(index)
            stacked.reorder(index)
    assert stacked.length == separate.length == 9
    assert torch.equal(stacked.keys, separate.keys) and torch.equal(stacked.values, separate.values)


@pytest.mark.parametrize("window", [None, 3])
def test_a_reorder_at_every_step_keeps_the_rows_of_separate_buffers(window):
    """Beam search reorders after every token: paired buffers copy the filled slots into a spare buffer and swap
    the two, the separate keys and values (the reference) are gathered whole; across growth and a window's ring."""
    batch, kv_heads, head_dim = 4, 2, 3
    generator = torch.Generator().manual_seed(0)
    separate, stacked = AttentionCache(capacity=3, window=window), AttentionCache(capacity=3, window=window)
    for _ in range(9):  # past the capacity: the buffers double (or the ring turns)
        pairs = torch.randn(batch, 2 * kv_heads, 1, head_dim, generator=generator)
        want = separate.append(pairs[:, :kv_heads], pairs[:, kv_heads:])
        got = stacked.append_pairs(pairs)
        for g, w in zip(got, want):
            assert torch.equal(g, w)
        index = torch.randint(batch, (batch,), generator=generator)  # rows kept, some twice
        separate.reorder(index)
        stacked.reorder(index)
        assert torch.equal(stacked.keys, separate.keys) and torch.equal(stacked.values, separate.values)
    assert stacked._pairs is not None and stacked._spare is not None  # the spare path ran
    assert stacked.nbytes == 2 * stacked._pairs.nbytes  # and the cache's weight counts it


def test_a_reorder_of_keys_shared_by_beams_keeps_each_beams_source():
    """Cross-attention keys stored once per source for its beams (``store(..., repeats=B)``): a reorder (here of
    beams across sources too, as a caller's own loop may) gives each kept row its source's keys, as the keys
    repeated per beam would."""
    sources, beams = 3, 2
    keys, values = torch.randn(2, sources, 2, 5, 4)
    shared, repeated = AttentionCache(), AttentionCache()
    shared.store(keys, values, repeats=beams)
    repeated.store(keys.repeat_interleave(beams, 0), values.repeat_interleave(beams, 0))
    index = torch.tensor([1, 0, 5, 5, 2, 3])
    shared.reorder(index)
    repeated.reorder(index)
    assert shared.repeats == 1 and shared.keys.size(0) == len(index)
    assert torch.equal(shared.keys, repeated.keys) and torch.equal(shared.values, repeated.values)


PLANNED = {
    "llama": dict(
        positional="rope", num_kv_heads=2, norm="rmsnorm", ffn="swiglu", placement="pre", bias=False
    ),
    "gpt2": dict(
        positional="learned", max_seq_len=64, norm="layernorm", ffn="gelu", placement="pre", bias=True
    ),
    "mqa-post-sinusoidal": dict(positional="sinusoidal", num_kv_heads=1, placement="post", ffn="relu"),
    "scaled-rope-geglu": dict(positional={"name": "rope", "scaling": "linear", "factor": 2.0}, ffn="geglu"),
    "qk-norm": dict(positional="rope", num_kv_heads=2, norm="rmsnorm", qk_norm="rmsnorm", placement="pre"),
    "qk-layernorm-math": dict(positional="rope", qk_norm="layernorm", attention="math"),
    # score biases: made once per step for the layers that share the member
    "alibi": dict(positional="alibi", num_kv_heads=2, placement="pre"),
    "t5-relative": dict(positional="t5_relative", norm="rmsnorm", placement="pre", bias=False),
    # layers that differ in kernel, window, rope base, q/k norm, and a NoPE layer: one plan for all of them
    "patterned": dict(
        positional="rope",
        num_kv_heads=2,
        layers={
            "pattern": ["local", "global", "nope"],
            "types": {
                "local": {
                    "attention": {"name": "sliding_window", "window": 3},
                    "positional": {"base": 100.0},
                },
                "global": {"positional": {"base": 1_000_000.0}, "qk_norm": "rmsnorm"},
                "nope": {"positional": "none", "ffn": "swiglu"},
            },
        },
    ),
}


@pytest.mark.parametrize("shape", ["shifted-rope", *PLANNED])
def test_cached_decoding_steps_equal_the_uncached_model(shape):
    # each one-token step through the decoding path gives the logits of the whole sequence run without a cache.
    # Spread weights: at std 0.02 the RoPE shapes passed with the step's keys and queries rotated one position
    # on, and the post-norm one with the step's queries zeroed
    config = dict(vocab_size=40, d_model=32, num_heads=4, num_layers=3, d_ff=64, dropout=0.0)
    config.update(PLANNED["llama" if shape == "shifted-rope" else shape])
    torch.manual_seed(0)
    model = spread_weights(build_causal_lm(config).eval())
    if shape == "shifted-rope":  # a member overriding rotate: the general path, with its own positions

        class ShiftedRope(type(model.positional)):
            def rotate(self, q, k, *, offset=0):
                return super().rotate(q, k, offset=offset + 3)

        model.positional.__class__ = ShiftedRope
    ids = torch.randint(40, (2, 12))
    cache = KVCache(3, capacity=12)
    with torch.inference_mode():
        full = model(ids)
        steps = [model(ids[:, :5], cache=cache)[:, -1]]
        steps += [model(ids[:, i : i + 1], cache=cache)[:, -1] for i in range(5, 12)]
    torch.testing.assert_close(torch.stack(steps, 1), full[:, 4:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", ["alibi", "t5-relative"])
def test_a_score_bias_goes_to_the_kernels_function_without_the_modules_guard(shape, monkeypatch):
    # sdpa's function takes the score bias of a one-token step (its row always sees its own key, so the module's
    # guard against empty rows has nothing to do): no step calls the kernel module, and the logits are the
    # uncached model's
    from swapformer.components.attention.sdpa import SDPAttention

    config = dict(
        vocab_size=40, d_model=32, num_heads=4, num_layers=2, d_ff=64, dropout=0.0, **PLANNED[shape]
    )
    torch.manual_seed(0)
    model = build_causal_lm(config).eval()
    ids = torch.randint(3, 40, (2, 9))
    calls = []
    forward = SDPAttention.forward
    monkeypatch.setattr(
        SDPAttention, "forward", lambda self, *a, **k: calls.append(1) or forward(self, *a, **k)
    )
    cache = KVCache(2, capacity=9)
    with torch.inference_mode():
        model(ids[:, :5], cache=cache)
        prompt_calls = len(calls)
        step = CausalStep(model, cache)
        ours = torch.stack([step(ids[:, : i + 1], None, 1) for i in range(5, 9)], 1)
        full = model(ids)[:, 5:9]
    assert step._plan is not None and prompt_calls == 2 and len(calls) == prompt_calls + 2  # (+ the full run)
    torch.testing.assert_close(ours, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("placement", ["pre", "post", "sandwich", "res_post"])
@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("ffn", ["gelu", "swiglu", "relu", "geglu"])
def test_residual_functions_equal_the_modules(placement, norm, ffn):
    # the functions a cached layer calls instead of its modules compute exactly what the modules do
    config = dict(
        vocab_size=20, d_model=32, num_heads=4, num_layers=1, d_ff=64, placement=placement, norm=norm
    )
    torch.manual_seed(0)
    layer = build_causal_lm({**config, "ffn": ffn}).eval().decoder.layers[0]
    step = layer.feed_forward
    function = function_of(step)
    assert function != step.forward  # a function of its own, not the module's forward
    with torch.inference_mode():
        for length in (1, 5):
            x = torch.randn(2, length, 32)
            assert torch.equal(function(x), step(x))


def test_hooks_are_honoured_by_cached_decoding():
    # a forward hook on a feed-forward (or a norm) must still run: those modules are called as modules
    torch.manual_seed(0)
    config = dict(
        vocab_size=30, d_model=32, num_heads=4, num_layers=2, d_ff=64, placement="pre", ffn="swiglu"
    )
    model = build_causal_lm({**config, "norm": "rmsnorm", "positional": "rope"}).eval()
    ids = torch.randint(30, (1, 6))
    with torch.inference_mode():
        before = model.generate(ids, max_new_tokens=6, eos_token_id=[])
        model.decoder.layers[1].feed_forward.sublayer.register_forward_hook(lambda m, args, out: out * 0 + 1)
        model.decoder.layers[0].self_attention.norm.register_forward_hook(lambda m, args, out: -out)
        cached = model.generate(ids, max_new_tokens=6, eos_token_id=[])
        uncached = model.generate(ids, max_new_tokens=6, eos_token_id=[], use_cache=False)
    assert torch.equal(cached, uncached) and not torch.equal(cached, before)
    assert not plain(model.decoder.layers[0].self_attention.norm)


def _plan_and_modules(config, batch, steps=6, seed=0):
    """Logits of ``steps`` one-token steps through CausalStep's plan and through the modules (model(ids, cache)),
    from the same prompt, each with its own cache."""
    torch.manual_seed(seed)
    model = build_causal_lm(config).eval()
    ids = torch.randint(3, config["vocab_size"], (batch, 5 + steps))
    planned, by_modules = (
        KVCache(config["num_layers"], capacity=16),
        KVCache(config["num_layers"], capacity=16),
    )
    with torch.inference_mode():
        model(ids[:, :5], cache=planned)
        model(ids[:, :5], cache=by_modules)
        step = CausalStep(model, planned)
        plan = step.plan()
        ours = [step(ids[:, : i + 1], None, 1) for i in range(5, 5 + steps)]
        theirs = [model(ids[:, i : i + 1], cache=by_modules)[:, -1] for i in range(5, 5 + steps)]
    return plan, torch.stack(ours, 1), torch.stack(theirs, 1)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("shape", list(PLANNED))
def test_the_decoding_plan_gives_the_modules_logits(shape, batch):
    # one-token steps through CausalStep's plan (the members' functions, made once per generation) are the
    # modules' path: the same operators, bit for bit
    config = dict(
        vocab_size=40, d_model=32, num_heads=4, num_layers=3, d_ff=64, dropout=0.0, **PLANNED[shape]
    )
    plan, ours, theirs = _plan_and_modules(config, batch)
    assert plan is not None  # the plan ran: this test compares something
    assert torch.equal(ours, theirs)


def test_a_plug_in_members_function_joins_the_plan_and_one_without_is_called_in_it():
    # a member that defines function(of) is composed into the plan like a built-in one; the same member without
    # it is called through its forward inside the plan; both give the modules' numbers
    from swapformer.components.ffn.mlp import GatedFeedForward

    calls = []

    class Counted(GatedFeedForward):
        def function(self, of):
            inner = super().function(of)

            def counted(x):
                calls.append(x.shape)
                return inner(x)

            return counted

    class Opaque(GatedFeedForward):
        function = None

    config = dict(
        vocab_size=40, d_model=32, num_heads=4, num_layers=2, d_ff=64, dropout=0.0, **PLANNED["llama"]
    )
    for cls in (Counted, Opaque):
        torch.manual_seed(0)
        model = build_causal_lm(config).eval()
        for layer in model.decoder.layers:
            layer.feed_forward.sublayer.__class__ = cls
        cache = KVCache(2, capacity=16)
        ids = torch.randint(3, 40, (2, 8))
        with torch.inference_mode():
            model(ids[:, :5], cache=cache)
            step = CausalStep(model, cache)
            ours = torch.stack([step(ids[:, : i + 1], None, 1) for i in range(5, 8)], 1)
        assert step._plan is not None
        with torch.inference_mode():
            full = model(ids)[:, 5:8]
        torch.testing.assert_close(ours, full, atol=1e-5, rtol=1e-5)
    assert len(calls) == 2 * (1 + 3)  # its own function ran: two layers, the cached prompt and three steps


def _hook_on(path):
    def hook(model):
        module = model.get_submodule(path)
        module.register_forward_hook(lambda m, args, out: out)

    return hook


KERNELS_WITHOUT_FUNCTION = [dict(attention={"name": "sliding_window", "window": 3}), dict(attention="math")]
SCORE_BIASES = [dict(positional="alibi"), dict(positional="t5_relative")]


@pytest.mark.parametrize(
    "change",
    [
        *SCORE_BIASES,
        *KERNELS_WITHOUT_FUNCTION,
        "shifted-rope",  # a member that overrides rotate
        "own-layer",  # a layer class of the user's
        _hook_on("decoder.layers.1.self_attention.sublayer"),
        _hook_on("decoder.layers.0.self_attention.sublayer.q_proj"),
        _hook_on("decoder.layers.0"),
        _hook_on("embedding"),
        _hook_on("lm_head"),
    ],
    ids=lambda c: (
        c if isinstance(c, str) else str(c) if isinstance(c, dict) else c.__closure__[0].cell_contents
    ),
)
def test_the_plan_serves_what_it_can_and_steps_aside_for_the_rest(change):
    # a kernel or a rotation without a function of its own is called inside the plan (a plug-in member keeps the
    # fast path), a score bias is made once per step inside it; a hook or a layer's own forward: the modules' path
    # runs. The numbers either way are the modules'.
    config = dict(
        vocab_size=40, d_model=32, num_heads=4, num_layers=2, d_ff=64, dropout=0.0, positional="rope"
    )
    if isinstance(change, dict):
        config.update(change)
    torch.manual_seed(0)
    model = build_causal_lm(config).eval()
    if change == "shifted-rope":

        class ShiftedRope(type(model.positional)):
            def rotate(self, q, k, *, offset=0):
                return super().rotate(q, k, offset=offset + 3)

        model.positional.__class__ = ShiftedRope
    elif change == "own-layer":

        class Doubled(type(model.decoder.layers[1])):
            def forward(self, x, **kwargs):
                return super().forward(2 * x, **kwargs)

        model.decoder.layers[1].__class__ = Doubled
    elif callable(change):
        change(model)
    cache = KVCache(2, capacity=8)
    with torch.inference_mode():
        model(torch.randint(3, 40, (1, 4)), cache=cache)
    planned = (isinstance(change, str) and change == "shifted-rope") or change in [
        *KERNELS_WITHOUT_FUNCTION,
        *SCORE_BIASES,
    ]
    assert (CausalStep(model, cache).plan() is not None) == planned
    ids = torch.randint(3, 40, (2, 5))
    with torch.inference_mode():
        cached = model.generate(ids, max_new_tokens=6, eos_token_id=[])
        uncached = model.generate(ids, max_new_tokens=6, eos_token_id=[], use_cache=False)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("width", [8, 32, 128, 1024])
@pytest.mark.parametrize("scale", [0.0, 1e-4, 1.0, 1e4])
def test_rmsnorm_decoding_form_is_torchs_within_rounding_and_its_own_function(width, scale, monkeypatch):
    # one position per row without autograd: the layer norm of (x, -x), against nn.RMSNorm itself (where eps
    # dominates too); the decoding function is the forward bit for bit; longer inputs and autograd: torch's own
    from swapformer.components.norm import RMSNorm

    torch.manual_seed(width)
    ours, theirs = RMSNorm(width, eps=1e-6), torch.nn.RMSNorm(width, eps=1e-6)
    torch.nn.init.normal_(theirs.weight, mean=1.0, std=0.5)
    ours.load_state_dict(theirs.state_dict())
    function = function_of(ours.eval())
    layer_norm, calls = torch.layer_norm, []
    monkeypatch.setattr(torch, "layer_norm", lambda *a, **k: calls.append(a[1]) or layer_norm(*a, **k))
    for shape in ((1, 1, width), (3, 1, width)):
        x = torch.randn(shape) * scale
        with torch.inference_mode():
            out = ours(x)
            assert calls.pop() == (2, width)  # the two-kernel form ran
            torch.testing.assert_close(out, theirs(x))
            assert torch.equal(function(x), out)
        with torch.enable_grad():
            assert torch.equal(ours(x), theirs(x))  # a weight that trains: rms_norm itself
    x = torch.randn(2, 5, width) * scale
    with torch.inference_mode():
        assert torch.equal(ours(x), theirs(x)) and torch.equal(function(x), theirs(x))
