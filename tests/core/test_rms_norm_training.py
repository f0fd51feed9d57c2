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


def test_without_gradients_or_in_another_dtype_torch_runs():
    norm = family("norm").build("rmsnorm", d_model=8)
    x = torch.randn(2, 4, 8)
    with torch.no_grad():
        assert norm(x).grad_fn is None
    half = norm.to(torch.bfloat16)(x.to(torch.bfloat16).requires_grad_(True))
    assert half.grad_fn.name() != "RMSNormFunctionBackward"
