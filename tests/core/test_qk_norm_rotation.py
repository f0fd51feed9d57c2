"""q/k norm and RoPE in one autograd node (:mod:`swapformer.nn.qk_norm_rotation`): the numbers of the two members
run one after the other, its backward the derivative of the plain formula, and attention's training step takes it
only where the members would have run their CPU training forms."""

from __future__ import annotations

import pytest
import torch
from tests.weights import spread_weights

from swapformer import build_causal_lm, family
from swapformer.components.positional import RotaryPositionalEncoding
from swapformer.nn import AttentionCache, MultiHeadAttention
from swapformer.nn.qk_norm_rotation import NormedRotation, normed_rotation

N, H, KV_HEADS, L, E = 2, 4, 2, 6, 8


def _projection(heads: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(N, L, heads * E, generator=generator, dtype=dtype) * 3).requires_grad_(True)


def _heads(projection: torch.Tensor) -> torch.Tensor:
    # (N, H, L, E) as attention hands q and k over: a transposed view of the projection (N, L, H, E)
    return projection.view(N, L, -1, E).transpose(1, 2)


def _norms(per_head: bool, unit_offset: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    norms = []
    for seed, heads in ((1, H), (2, KV_HEADS)):
        spec = {"name": "rmsnorm", "unit_offset": unit_offset, "eps": 1e-6}
        norm = family("norm").build(spec, d_model=E if per_head else heads * E)
        with torch.no_grad():
            norm.weight.normal_(generator=torch.Generator().manual_seed(seed))
        norms.append(norm)
    return norms[0], norms[1]


def _members(q, k, q_norm, k_norm, rope, per_head, offset):
    """The two members one after the other, as attention's general path runs them."""
    if per_head:
        q, k = q_norm(q), k_norm(k)
    else:
        q = q_norm(q.transpose(1, 2).flatten(2)).unflatten(2, (H, E)).transpose(1, 2)
        k = k_norm(k.transpose(1, 2).flatten(2)).unflatten(2, (KV_HEADS, E)).transpose(1, 2)
    return rope.rotate(q, k, offset=offset)


@pytest.mark.parametrize("per_head", [True, False], ids=["per-head", "projection"])
@pytest.mark.parametrize("unit_offset", [False, True], ids=["rmsnorm", "gemma"])
def test_it_gives_the_members_forward_and_gradients(per_head, unit_offset):
    q_norm, k_norm = _norms(per_head, unit_offset)
    rope = RotaryPositionalEncoding(head_dim=E)
    q_projection, k_projection = _projection(H, 3), _projection(KV_HEADS, 4)
    fused = normed_rotation(
        _heads(q_projection),
        _heads(k_projection),
        q_norm=q_norm,
        k_norm=k_norm,
        positional=rope,
        offset=3,
        per_head=per_head,
    )
    assert fused is not None and fused[0].grad_fn.name() == "NormedRotationBackward"
    grads = tuple(torch.randn(t.shape, generator=torch.Generator().manual_seed(5)) for t in fused)
    torch.autograd.backward(fused, grads)
    ours = [t.grad.clone() for t in (q_projection, k_projection, q_norm.weight, k_norm.weight)]
    for t in (q_projection, k_projection, q_norm.weight, k_norm.weight):
        t.grad = None

    members = _members(_heads(q_projection), _heads(k_projection), q_norm, k_norm, rope, per_head, 3)
    assert members[0].grad_fn.name() == "_RotationBackward"  # the members' own path ran
    torch.autograd.backward(members, grads)
    expected = [t.grad for t in (q_projection, k_projection, q_norm.weight, k_norm.weight)]
    for out, reference in zip(fused, members, strict=True):
        # the gain and r applied in another order: float rounding apart, laid out as the members lay it out
        torch.testing.assert_close(out, reference, rtol=1e-6, atol=1e-6)
        assert out.stride() == reference.stride()
    for got, want in zip(ours, expected, strict=True):
        # the same saved x and r, the same operators backwards (RoPE's inverse rotation, then the norm's)
        assert torch.equal(got, want)


def _formula(q_projection, k_projection, q_gain, k_gain, cos, sin, per_head, eps=1e-6):
    """The plain formula, through autograd: RMS norm (per head or over the projection), then RoPE."""
    outs = []
    for projection, gain in ((q_projection, q_gain), (k_projection, k_gain)):
        heads = projection.view(N, L, -1, E)  # (N, L, H, E)
        rows = heads if per_head else heads.flatten(2)
        normed = rows * torch.rsqrt(rows.pow(2).mean(-1, keepdim=True) + eps)
        normed = (normed if gain is None else normed * gain).view(heads.shape).transpose(1, 2)
        x1, x2 = normed.chunk(2, dim=-1)
        outs.append(normed * cos + torch.cat((-x2, x1), dim=-1) * torch.cat((sin, sin), dim=-1))
    return tuple(outs)


def _tables(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # any table will do for the derivative (a rotation's cos^2 + sin^2 = 1 is not used)
    generator = torch.Generator().manual_seed(6)
    cos = torch.randn(L, E, generator=generator, dtype=dtype)
    return cos, torch.randn(L, E // 2, generator=generator, dtype=dtype)


@pytest.mark.parametrize("per_head", [True, False], ids=["per-head", "projection"])
def test_its_backward_is_the_derivative(per_head):
    # float64 against finite differences (small: gradcheck costs a forward per input number), with gains,
    # without them, for the inputs alone and for a gain alone; grouped heads (k has half of q's)
    batch, length, heads, kv_heads, dim = 2, 3, 2, 1, 4
    generator = torch.Generator().manual_seed(7)

    def made(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64, requires_grad=True)

    cos, sin = made(length, dim).detach(), made(length, dim // 2).detach()
    q, k = made(batch, length, heads * dim), made(batch, length, kv_heads * dim)
    q_gain, k_gain = made(dim if per_head else heads * dim), made(dim if per_head else kv_heads * dim)

    def fused(q, k, q_gain, k_gain):
        q_heads = q.view(batch, length, heads, dim).transpose(1, 2)
        k_heads = k.view(batch, length, kv_heads, dim).transpose(1, 2)
        tables = (cos, sin, cos, sin)
        return NormedRotation.apply(q_heads, k_heads, q_gain, 1e-6, k_gain, 1e-6, tables, per_head)

    assert torch.autograd.gradcheck(fused, (q, k, q_gain, k_gain))
    assert torch.autograd.gradcheck(lambda q, k: fused(q, k, None, None), (q, k))
    assert torch.autograd.gradcheck(lambda q, k: fused(q, k, q_gain.detach(), k_gain.detach()), (q, k))
    assert torch.autograd.gradcheck(lambda q_gain: fused(q.detach(), k.detach(), q_gain, k_gain), (q_gain,))


@pytest.mark.parametrize("per_head", [True, False], ids=["per-head", "projection"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_it_matches_the_formula_under_autograd_in_float32_and_bfloat16(per_head, dtype):
    cos, sin = _tables(dtype)
    inputs = [_projection(H, 9, dtype), _projection(KV_HEADS, 10, dtype)]
    widths = (E, E) if per_head else (H * E, KV_HEADS * E)
    gains = [torch.randn(width, dtype=dtype).requires_grad_(True) for width in widths]
    # the reference in float64 from the same numbers: how far each dtype's path may fall from the exact value
    exact = [t.detach().double().requires_grad_(True) for t in (*inputs, *gains)]
    fused = NormedRotation.apply(
        _heads(inputs[0]), _heads(inputs[1]), gains[0], 1e-6, gains[1], 1e-6, (cos, sin, cos, sin), per_head
    )
    reference = _formula(*exact, cos.double(), sin.double(), per_head)
    upstream = [torch.randn(t.shape, generator=torch.Generator().manual_seed(11)) for t in fused]
    torch.autograd.backward(fused, [u.to(dtype) for u in upstream])
    torch.autograd.backward(reference, [u.double() for u in upstream])
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 5e-2}
    for out, want in zip(fused, reference, strict=True):
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), want.detach(), **tolerance)
    for got, want in zip((*inputs, *gains), exact, strict=True):
        scale = want.grad.abs().max()
        torch.testing.assert_close(got.grad.double() / scale, want.grad / scale, **tolerance)


def _attention(changes: dict) -> MultiHeadAttention:
    torch.manual_seed(0)
    model = build_causal_lm(
        {
            "vocab_size": 17,
            "d_model": 32,
            "num_heads": 4,
            "num_kv_heads": 2,
            "num_layers": 1,
            "d_ff": 64,
            "positional": "rope",
            "qk_norm": "rmsnorm",
            **changes,
        }
    )
    return next(m for m in model.modules() if isinstance(m, MultiHeadAttention))


def _grad_fns(fn) -> set[str]:
    seen, stack, names = set(), [fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(node.name())
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return names


@pytest.mark.parametrize("scope", ["head", "projection"])
def test_attention_trains_through_it_where_the_members_would_take_their_training_forms(scope):
    attention = _attention({"qk_norm_scope": scope})
    x = torch.randn(2, 5, 32, requires_grad=True)
    assert "NormedRotationBackward" in _grad_fns(attention(x, is_causal=True).grad_fn)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # another dtype: the members' own path
        names = _grad_fns(attention(x, is_causal=True).grad_fn)
    assert "NormedRotationBackward" not in names and "_RotationBackward" in names
    handle = attention.q_norm.register_forward_hook(lambda *args: None)  # a hook must see its module called
    assert "NormedRotationBackward" not in _grad_fns(attention(x, is_causal=True).grad_fn)
    handle.remove()
    # no rotation: nothing to fuse
    alibi = _attention({"qk_norm_scope": scope, "positional": {"name": "alibi"}})
    assert "NormedRotationBackward" not in _grad_fns(alibi(x, is_causal=True).grad_fn)


@pytest.mark.parametrize("scope", ["head", "projection"])
def test_attention_gives_the_numbers_of_the_general_path_in_training_and_in_eval(scope):
    # spread weights (norm gains moved off 1), and tokens after 3 cached ones (RoPE is relative: positions
    # shifted alike in q and k change nothing without a cache): at std 0.02, unit gains and no cache, attention
    # gave the general path's numbers with the fused node's gains dropped or its offset ignored
    attention = spread_weights(_attention({"qk_norm_scope": scope})).eval()  # no dropout; a gradient is still
    x = torch.randn(2, 5, 32, requires_grad=True)  # needed, so the fused form runs
    fused = attention(x, is_causal=True)
    assert "NormedRotationBackward" in _grad_fns(fused.grad_fn)
    with torch.no_grad():
        general = attention(x, is_causal=True)  # no gradient: the members run one after the other
    torch.testing.assert_close(fused, general, rtol=1e-6, atol=1e-6)
    caches = AttentionCache(), AttentionCache()
    with torch.no_grad():
        for cache in caches:
            attention(x[:, :3], is_causal=True, cache=cache)
    fused = attention(x[:, 3:], offset=3, cache=caches[0])
    assert "NormedRotationBackward" in _grad_fns(fused.grad_fn)
    with torch.no_grad():
        general = attention(x[:, 3:], offset=3, cache=caches[1])
    torch.testing.assert_close(fused, general, rtol=1e-6, atol=1e-6)
