"""Soft-capping: ``cap * tanh(x / cap)``, a smooth bound on attention scores or logits (Gemma 2).

Close to the identity for ``|x|`` well below ``cap`` and never beyond ``±cap``: it keeps a few large scores or
logits from saturating the softmax, without the hard clip's zero gradient.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from swapformer.errors import ConfigError


def soft_cap(x: Tensor, cap: float | None) -> Tensor:
    """``cap * tanh(x / cap)``, in Gemma 2's order of operations; ``x`` itself when ``cap`` is None."""
    return x if cap is None else torch.tanh(x / cap) * cap


def check_cap(cap: object, where: str, example: float) -> float | None:
    """``cap`` as a float, or None; a ConfigError naming ``where`` unless it is None or a finite number > 0."""
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, int | float) or not math.isfinite(cap) or cap <= 0:
        raise ConfigError(
            f"{where}={cap!r} must be a number > 0 (Gemma 2 uses {example}), or null for no soft-capping"
        )
    return float(cap)
