"""The CPU training form of ``rmsnorm`` (:class:`~swapformer.components.norm.rms_norm.RMSNormFunction`): the
forward pass of torch's ``rms_norm`` and Gemma's ``(1 + w)`` norm, bit for bit, and their gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from swapformer import family
from swapformer.components.norm.rms_norm import RMSNormFunction

gemma2 = pytest.importorskip(
    "transformers.models.gemma2.modeling_gemma2", reason="needs transformers' Gemma 2"
)


def _heads(seed: int) -> torch.Tensor:
    # (N, H, L, E) as attention hands q over to its q/k norm: a transposed view of (N, L, H, E)
    x = torch.randn(2, 5, 3, 8, generator=torch.Generator().manual_seed(seed)) * 3
    return x.requires_grad_(True)


@pytest.mark.parametrize("unit_offset", [False, True])
def test_the_training_form_gives_the_forward_and_gradients_of_the_reference(unit_offset):
    torch.manual_seed(0)
    ours = family("norm").build({"name": "rmsnorm", "unit_offset": unit_offset, "eps": 1e-6}, d_model=8)
    reference = gemma2.Gemma2RMSNorm(8, eps=1e-6) if unit_offset else nn.RMSNorm(8, eps=1e-6)
    with torch.no_grad():
        ours.weight.normal_(generator=torch.Generator().manual_seed(1))
        reference.weight.copy_(ours.weight)
    x, y = _heads(2), _heads(2)
    grad = torch.randn(2, 3, 5, 8, generator=torch.Generator().manual_seed(3))
    out, expected = ours(x.transpose(1, 2)), reference(y.transpose(1, 2))
    assert out.grad_fn.name() == "RMSNormFunctionBackward"  # the training form ran
    assert torch.equal(out, expected)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, y.grad)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad)


def test_its_backward_is_the_derivative():
    # in float64, against finite differences: with a weight, without one, and for the input alone
    x = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(RMSNormFunction.apply, (x, weight, 1e-6))
    assert torch.autograd.gradcheck(RMSNormFunction.apply, (x, None, 1e-6))
    assert torch.autograd.gradcheck(RMSNormFunction.apply, (x, weight.detach(), 1e-6))


@pytest.mark.parametrize(
    "layout, kept",
    [
        (lambda x: x.transpose(1, 2), True),  # q and k as attention hands them over: rows in memory order
        (lambda x: x, True),  # contiguous
        (lambda x: x[..., :4], False),  # rows that no order of the dims makes contiguous: copied first
        (lambda x: x[:1, :, :1].expand(2, 5, 3, 8), False),  # broadcast rows: copied first
        (lambda x: x.transpose(-1, -2), False),  # the normalized dim not the innermost: copied first
    ],
    ids=["heads", "contiguous", "sliced", "expanded", "strided-last"],
)
def test_every_layout_gives_the_reference_and_an_output_laid_out_as_its_input(layout, kept):
    torch.manual_seed(0)
    ours_leaf, reference_leaf = _heads(4), _heads(4)
    x, y = layout(ours_leaf), layout(reference_leaf)
    width = x.size(-1)
    ours = family("norm").build({"name": "rmsnorm", "eps": 1e-6}, d_model=width)
    reference = nn.RMSNorm(width, eps=1e-6)
    with torch.no_grad():
        ours.weight.normal_(generator=torch.Generator().manual_seed(1))
        reference.weight.copy_(ours.weight)
    out, expected = ours(x), reference(y)
    assert out.grad_fn.name() == "RMSNormFunctionBackward"
    assert torch.equal(out, expected)
    # the rows where x has them (what reads them next reads them as it would x), else contiguous
    assert out.stride() == (x.stride() if kept else out.contiguous().stride())
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
    out.mul_(2.0).backward(grad)  # the output is no view: changing it in place is allowed
    expected.mul(2.0).backward(grad)
    torch.testing.assert_close(ours_leaf.grad, reference_leaf.grad)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad)


def test_the_heads_are_normalized_where_they_lie_without_a_copy():
    # q and k as attention hands them over, (N, H, L, E) viewed from (N, L, H, E): no copy either way
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    x = _heads(6).transpose(1, 2)
    weight = torch.randn(8, requires_grad=True)
    with Ops() as ops:
        RMSNormFunction.apply(x, weight, 1e-6).backward(torch.randn(2, 5, 3, 8).transpose(1, 2))
    copies = [name for name in ops.names if name in ("clone", "copy_", "contiguous", "_to_copy")]
    assert copies == [] and "mv" in ops.names, ops.names


def test_without_gradients_or_in_another_dtype_torch_runs():
    norm = family("norm").build("rmsnorm", d_model=8)
    x = torch.randn(2, 4, 8)
    with torch.no_grad():
        assert norm(x).grad_fn is None
    half = norm.to(torch.bfloat16)(x.to(torch.bfloat16).requires_grad_(True))
    assert half.grad_fn.name() != "RMSNormFunctionBackward"
