"""A layer's residual steps as plain functions for KV-cached decoding, where the modules are known and unhooked.

A decoding step of a small model costs its Python calls, not its arithmetic: every ``module(x)`` passes through
``nn.Module.__call__`` (two frames and the hook checks) and every ``self.linear`` through ``__getattr__``. For the
built-in placements, norms and feed-forwards, without hooks and in eval mode (no dropout), the same numbers come
from functions that hold the weights::

    PreNorm(RMSNorm, GatedFeedForward)  ─▶  x + linear(silu(g) * u, W_down)   g, u = linear(rms_norm(x), [W_gate; W_up])

Anything else (a subclass, a hook, an unknown member) is called as the module it is, so the functions never
change what a model computes. They are built once per generation (:class:`~swapformer.nn.LayerCache` keeps them),
so hooks registered while a generation runs take effect at the next one, as with the stacked q/k/v projection.
The decoding plan of a causal LM alone runs RMSNorm on the CPU in another form (:func:`decoding_norm_function`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as torch_module

from swapformer.components.ffn.mlp import FeedForward, GatedFeedForward
from swapformer.components.placement.residual import PostNorm, PreNorm

_ACTIVATIONS: dict[type[nn.Module], Callable[[nn.Module], Callable[[Tensor], Tensor]]] = {
    nn.SiLU: lambda module: F.silu,
    nn.ReLU: lambda module: F.relu,
    nn.GELU: lambda module: partial(F.gelu, approximate=module.approximate),
}
_STRIDED_EXACT = (nn.SiLU, nn.ReLU)
"""Activations whose kernel gives the same numbers on the strided half of a stacked GEMM as on a contiguous
tensor (GELU's does not: its vectorized and strided loops round differently)."""


def plain(*modules: nn.Module) -> bool:
    """Whether calling each of ``modules`` is only its ``forward``: no hooks on it and no global ones."""
    if (
        torch_module._global_forward_hooks
        or torch_module._global_forward_pre_hooks
        or torch_module._global_backward_hooks
        or torch_module._global_backward_pre_hooks
    ):
        return False
    return not any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
        for m in modules
    )


def direct(module: nn.Module) -> Callable[..., Tensor]:
    """``module.forward`` where the call would add nothing to it, else the module."""
    return module.forward if plain(module) else module


def norm_function(norm: nn.Module) -> Callable[[Tensor], Tensor]:
    """torch's fused norm with ``norm``'s weights for ``nn.RMSNorm`` and ``nn.LayerNorm``; else :func:`direct`."""
    if type(norm) is nn.RMSNorm and plain(norm):
        return partial(
            torch.rms_norm, normalized_shape=norm.normalized_shape, weight=norm.weight, eps=norm.eps
        )
    if type(norm) is nn.LayerNorm and plain(norm):
        shape, weight, bias, eps = norm.normalized_shape, norm.weight, norm.bias, norm.eps
        return partial(torch.layer_norm, normalized_shape=shape, weight=weight, bias=bias, eps=eps)
    return direct(norm)


def decoding_norm_function(norm: nn.Module) -> Callable[[Tensor], Tensor]:
    """:func:`norm_function` for one-token decoding steps, with ``nn.RMSNorm`` on the CPU as the layer norm of
    ``(x, -x)``.

    torch's CPU ``rms_norm`` is a composite of eight operators (9 us a call at d_model 128, where ``layer_norm``
    takes 2 us), which a small model's step pays twice per layer. ``(x, -x)`` has mean zero and x's mean square,
    so its layer norm is x's RMS norm: the same function in two kernels (one multiply makes the pair), rounded
    otherwise (within a few float32 ulps of ``nn.RMSNorm``). Elsewhere (another device or dtype, an eps of None)
    and for every other norm, :func:`norm_function`.
    """
    if (
        type(norm) is not nn.RMSNorm
        or not plain(norm)
        or norm.eps is None
        or len(norm.normalized_shape) != 1
        or (norm.weight is not None and norm.weight.device.type != "cpu")
    ):
        return norm_function(norm)
    fused = norm_function(norm)
    (width,), eps = norm.normalized_shape, norm.eps
    shape = (2, width)
    # (2, D): the weight for x and for -x, whose half of the output is dropped
    weight = None if norm.weight is None else norm.weight.detach().expand(2, width).clone()
    dtype = torch.get_default_dtype() if weight is None else weight.dtype
    signs = torch.tensor([[1.0], [-1.0]], dtype=dtype)  # (2, 1): x and -x, exactly

    def rms_norm(x: Tensor) -> Tensor:
        if x.dtype != dtype or x.device.type != "cpu":
            return fused(x)
        return torch.layer_norm(x.unsqueeze(-2) * signs, shape, weight, None, eps).select(-2, 0)

    return rms_norm


def feed_forward_function(ffn: nn.Module) -> Callable[[Tensor], Tensor]:
    """The built-in feed-forwards as GEMMs and the activation (SwiGLU's gate and up projections stacked into one
    GEMM, a copy made here); else :func:`direct`."""
    if type(ffn) not in (FeedForward, GatedFeedForward) or type(ffn.activation) not in _ACTIVATIONS:
        return direct(ffn)
    linears = (
        (ffn.gate_proj, ffn.up_proj, ffn.down_proj)
        if type(ffn) is GatedFeedForward
        else (ffn.linear1, ffn.linear2)
    )
    if any(type(linear) is not nn.Linear for linear in linears) or not plain(ffn, ffn.activation, *linears):
        return direct(ffn)
    activation = _ACTIVATIONS[type(ffn.activation)](ffn.activation)
    if type(ffn) is FeedForward:
        (w1, b1), (w2, b2) = ((linear.weight, linear.bias) for linear in linears)

        def feed_forward(x: Tensor) -> Tensor:
            return F.linear(activation(F.linear(x, w1, b1)), w2, b2)

        return feed_forward
    gate, up, down = linears
    w_out, b_out = down.weight, down.bias
    if type(ffn.activation) not in _STRIDED_EXACT:
        w_gate, b_gate, w_up, b_up = gate.weight, gate.bias, up.weight, up.bias

        def gated_feed_forward(x: Tensor) -> Tensor:
            return F.linear(activation(F.linear(x, w_gate, b_gate)) * F.linear(x, w_up, b_up), w_out, b_out)

        return gated_feed_forward
    w_in = torch.cat((gate.weight, up.weight))  # (2 d_ff, D)
    b_in = None if gate.bias is None else torch.cat((gate.bias, up.bias))
    width = gate.out_features

    def stacked_feed_forward(x: Tensor) -> Tensor:
        both = F.linear(x, w_in, b_in)  # narrow, not chunk: two views for fewer calls
        return F.linear(activation(both.narrow(-1, 0, width)) * both.narrow(-1, width, width), w_out, b_out)

    return stacked_feed_forward


def residual_function(
    step: nn.Module,
    sublayer_function: Callable[[nn.Module], Callable[..., Tensor]] = direct,
    norm_of: Callable[[nn.Module], Callable[[Tensor], Tensor]] = norm_function,
) -> Callable[..., Tensor]:
    """``PreNorm`` and ``PostNorm`` in eval mode around ``sublayer_function(step.sublayer)`` and
    ``norm_of(step.norm)``; else :func:`direct`."""
    if type(step) not in (PreNorm, PostNorm) or not plain(step):
        return direct(step)
    norm, sublayer = norm_of(step.norm), sublayer_function(step.sublayer)
    if type(step) is PreNorm:  # x ─┬─ norm ─ sublayer ─(+)─▶

        def pre_norm(x: Tensor, *args, **kwargs) -> Tensor:
            return x + sublayer(norm(x), *args, **kwargs)

        return pre_norm

    def post_norm(x: Tensor, *args, **kwargs) -> Tensor:  # x ─┬─ sublayer ─(+)─ norm ─▶
        return norm(x + sublayer(x, *args, **kwargs))

    return post_norm
