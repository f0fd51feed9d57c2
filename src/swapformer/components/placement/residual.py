"""Where the norm sits around a residual sublayer."""

from __future__ import annotations

import copy
from typing import ClassVar

from torch import Tensor, nn

from swapformer.components.functions import Function, Of, forward_of, keep


class Residual(nn.Module):
    """A sublayer (attention or feed-forward), its norm and residual dropout, composed into one residual step.

    Args:
        sublayer: the module to wrap; receives the (maybe normalized) input and any further arguments.
        norm: the norm module.
        dropout: dropout on the sublayer output before the addition.
    """

    tensor_parallel_plan: ClassVar[dict[str, str]] = {}
    """Under tensor parallelism every rank runs it whole, on the full (replicated) activations."""

    final_norm: ClassVar[bool] = False
    """Whether a stack built of these steps needs a norm after its last layer."""

    def __init__(self, *, sublayer: nn.Module, norm: nn.Module, dropout: float = 0.0) -> None:
        super().__init__()
        self.sublayer, self.norm, self.dropout = sublayer, norm, nn.Dropout(dropout)

    def drop(self, x: Tensor) -> Tensor:
        """Residual dropout; skipped outright in eval mode or at p = 0, where it is the identity (a decoding step,
        and a training step without dropout, save the module call)."""
        return self.dropout(x) if self.training and self.dropout.p else x

    def function(self, of: Of) -> Function | None:
        """Eval-mode ``forward`` over the functions of the norms and the sublayer (:func:`forward_of`); None where
        a subclass defines ``forward`` below the built-in placement it derives from."""
        forward = type(self).forward
        if forward not in (PostNorm.forward, PreNorm.forward, SandwichNorm.forward, ResPostNorm.forward):
            return None
        norms = {name: of(child) for name, child in self.named_children() if name.endswith("norm")}
        return forward_of(forward, sublayer=of(self.sublayer), drop=keep, **norms)


class PostNorm(Residual):
    """Add & Norm, as in the paper::

    x ──┬── sublayer ── dropout ──(+)── norm ──▶
        └──────────────────────────┘
    """

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        return self.norm(x + self.drop(self.sublayer(x, *args, **kwargs)))


class PreNorm(Residual):
    """Norm first (GPT-2 onward); the residual path stays an identity, and the stack ends with a norm::

    x ──┬── norm ── sublayer ── dropout ──(+)──▶
        └──────────────────────────────────┘
    """

    final_norm = True

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        return x + self.drop(self.sublayer(self.norm(x), *args, **kwargs))


class SandwichNorm(Residual):
    """Pre-norm plus a second norm on the sublayer's output (sandwich-LN: Ding et al., 2021, "CogView";
    NormFormer, Shleifer et al., 2021), which keeps the branch's scale in check in deep or low-precision runs::

    x ──┬── norm ── sublayer ── norm' ── dropout ──(+)──▶
        └──────────────────────────────────────────┘

    ``norm'`` is a copy of ``norm`` with its own parameters. The residual stream itself stays unnormalized,
    so the stack ends with a norm, as with pre-norm.
    """

    final_norm = True

    def __init__(self, *, sublayer: nn.Module, norm: nn.Module, dropout: float = 0.0) -> None:
        super().__init__(sublayer=sublayer, norm=norm, dropout=dropout)
        self.post_norm = copy.deepcopy(norm)

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        return x + self.drop(self.post_norm(self.sublayer(self.norm(x), *args, **kwargs)))


class ResPostNorm(Residual):
    """The norm on the sublayer's output, inside the residual branch (res-post-norm: Swin Transformer V2, Liu et
    al., 2022; OLMo 2, 2024)::

    x ──┬── sublayer ── norm ── dropout ──(+)──▶
        └──────────────────────────────────┘

    Each branch's output is normalized before it is added, and the residual stream itself never is, so the stack
    ends with a norm, as with pre-norm.
    """

    final_norm = True

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        return x + self.drop(self.norm(self.sublayer(x, *args, **kwargs)))
