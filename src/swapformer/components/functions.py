"""Members as plain functions, for decoding steps: a member's eval-mode ``forward`` with its weights bound.

A decoding step of a small model costs its Python calls, not its arithmetic: every ``module(x)`` passes through
``nn.Module.__call__`` (two frames and the hook checks) and every ``self.linear`` through ``__getattr__``. A member
that can say so defines, in its own file, ``function(self, of)``: its own ``forward`` in eval mode run over the
functions of its parts (:func:`forward_of`: the math stays written once, and the numbers are the module's);
``of(child)`` gives the function of each member it holds (a placement asks it for its norm and its sublayer). It
returns None where it cannot (a hook or a subclass inside it), and a member without the method is simply called::

    PreNorm(RMSNorm, GatedFeedForward).function(of)  ─▶  x + linear(silu(g) * u, W_down)
                                                         g, u = linear(rms_norm(x), [W_gate; W_up])

Functions are made once per generation (the caches keep them), so hooks registered while a generation runs take
effect at the next one. A plug-in member gets the same treatment by defining ``function``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from types import SimpleNamespace
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as torch_module

Function = Callable[..., Tensor]
Of = Callable[[nn.Module], Function]


def forward_of(forward: Callable[..., Tensor], **parts: Any) -> Function:
    """A member's own ``forward`` run over the functions of its parts: ``forward(parts, x, ...)``, where ``parts``
    has the attributes ``forward`` reads (``self.norm``, ``self.sublayer``, ...) as functions. The member's math
    stays written once, in ``forward``; its function only swaps the modules for their functions."""
    return partial(forward, SimpleNamespace(**parts))


def keep(x: Tensor) -> Tensor:
    """The identity: what dropout is in eval mode (a member's ``drop`` in :func:`forward_of`)."""
    return x


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


def direct(module: nn.Module) -> Function:
    """``module.forward`` where the call would add nothing to it, else the module."""
    return module.forward if plain(module) else module


FOREIGN: dict[type[nn.Module], Callable[[Any, Of], Function | None]] = {}
"""``function`` for classes that are not ours to give a method (torch's norms), by exact class: a subclass may
compute something else. The family that uses such a class registers it (:func:`register_function`)."""


def register_function(cls: type[nn.Module], make: Callable[[Any, Of], Function | None]) -> None:
    """Give instances of exactly ``cls`` the ``function`` ``make(module, of)`` (for classes defined elsewhere)."""
    FOREIGN[cls] = make


def own_function(module: nn.Module, of: Of | None = None) -> Function | None:
    """``module``'s own ``function(of)`` (or the one :data:`FOREIGN` has for its class) where it has one,
    nothing hooks it and it is in eval mode; else None. ``of`` resolves the members it holds (default:
    :func:`function_of`)."""
    make: Any = getattr(module, "function", None)
    if make is None and type(module) in FOREIGN:
        make = FOREIGN[type(module)].__get__(module)
    if make is None or module.training or not plain(module):
        return None
    return make(function_of if of is None else of)


def function_of(module: nn.Module, of: Of | None = None) -> Function:
    """:func:`own_function`, or :func:`direct` where there is none: what to call for ``module``."""
    made = own_function(module, of)
    return direct(module) if made is None else made


# torch's Linear, which every member uses: its GEMM with the module's weights
register_function(nn.Linear, lambda linear, of: partial(F.linear, weight=linear.weight, bias=linear.bias))
