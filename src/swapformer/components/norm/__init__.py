"""Norm family: normalization over the last (model) dimension.

``layernorm`` and ``rmsnorm`` are torch's own classes, whose parameters take no weight decay through
:data:`swapformer.components.declarations.TORCH_NO_DECAY`; ``ScaleNorm`` declares its own.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from swapformer.components.functions import register_function
from swapformer.components.norm.rms_norm import RMSNorm, UnitOffsetRMSNorm
from swapformer.components.norm.scalenorm import ScaleNorm
from swapformer.errors import ConfigError
from swapformer.registry import NORM


@NORM.register(
    "layernorm", description="LayerNorm: (x - mean) / sqrt(var + eps) * gamma + beta (Ba et al., 2016)"
)
def layernorm(*, d_model: int, eps: float = 1e-5, bias: bool = True) -> nn.LayerNorm:
    """LayerNorm over D with gain gamma and (if ``bias``) shift beta: torch's fused ``nn.LayerNorm``."""
    return nn.LayerNorm(d_model, eps=eps, bias=bias)


@NORM.register(
    "rmsnorm", description="RMSNorm: x / sqrt(mean(x^2) + eps) * gamma, no centering (Zhang & Sennrich, 2019)"
)
def rmsnorm(*, d_model: int, eps: float = 1e-6, unit_offset: bool = False) -> RMSNorm | UnitOffsetRMSNorm:
    """Root-mean-square norm (no mean subtraction, no beta): torch's ``nn.RMSNorm``, as in Llama and T5, with a
    faster CPU inference form (:class:`~swapformer.components.norm.rms_norm.RMSNorm`). ``unit_offset``: the
    gain is ``1 + w`` with ``w`` starting at zero, computed in float32, as in Gemma
    (:class:`~swapformer.components.norm.rms_norm.UnitOffsetRMSNorm`)."""
    if not isinstance(unit_offset, bool):
        raise ConfigError(f"rmsnorm: unit_offset={unit_offset!r} must be true or false")
    return UnitOffsetRMSNorm(d_model, eps=eps) if unit_offset else RMSNorm(d_model, eps=eps)


# torch's fused kernels with the module's weights, called without the module (decoding steps)
register_function(
    nn.LayerNorm,
    lambda norm, of: partial(
        torch.layer_norm,
        normalized_shape=norm.normalized_shape,
        weight=norm.weight,
        bias=norm.bias,
        eps=norm.eps,
    ),
)
register_function(
    nn.RMSNorm,
    lambda norm, of: partial(
        torch.rms_norm, normalized_shape=norm.normalized_shape, weight=norm.weight, eps=norm.eps
    ),
)

NORM.add(
    "scalenorm", ScaleNorm, description="ScaleNorm: g * x / ||x||, one scalar g (Nguyen & Salazar, 2019)"
)

__all__ = ["RMSNorm", "ScaleNorm", "UnitOffsetRMSNorm", "layernorm", "rmsnorm"]
