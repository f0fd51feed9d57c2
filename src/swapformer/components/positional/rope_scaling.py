"""RoPE scaling for contexts longer than training: position interpolation (Chen et al., 2023, "Extending Context
Window of Large Language Models via Positional Interpolation") and NTK-aware base scaling (bloc97, 2023; the
static form of Hugging Face's ``dynamic`` rope type)."""

from __future__ import annotations

import torch

from swapformer.components.positional.rope import RotaryPositionalEncoding
from swapformer.errors import ConfigError

SCALINGS = ("linear", "ntk")


def rope_inverse_frequencies(
    head_dim: int, *, base: float = 10000.0, scaling: str | None = None, factor: float = 1.0
) -> torch.Tensor:
    """theta_i = 1 / base^(2i / E), rescaled for a context ``factor`` times longer.

    - ``linear``: theta_i / factor, i.e. position p is rotated as p / factor (interpolation).
    - ``ntk``: base * factor^(E / (E - 2)): high frequencies (local order) barely move, the lowest one is
      interpolated by ``factor``. Hugging Face's ``dynamic`` type applies this with the factor recomputed from the
      current length; at length ``original * (2 factor - 1) / factor`` the two agree.

    Shape:
        output ``(E / 2,)``.
    """
    if scaling == "ntk":
        base = base * factor ** (head_dim / (head_dim - 2))
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    return inv_freq / factor if scaling == "linear" else inv_freq


class ScaledRotaryPositionalEncoding(RotaryPositionalEncoding):
    """RoPE, optionally stretched to a context ``factor`` times longer than the one trained on.

    ``{"name": "rope"}`` is plain RoPE; ``{"name": "rope", "scaling": "linear", "factor": 4}`` interpolates
    positions (fine-tune briefly on the long context), ``{"name": "rope", "scaling": "ntk", "factor": 4}``
    raises the base instead (works reasonably even without fine-tuning). The frequencies are fixed at build
    time, so cached and uncached decoding agree.

    Args:
        head_dim: per-head dimension E (must be even).
        base: frequency base (10000 in RoFormer and Llama 2; 500000 in Llama 3).
        scaling: None, ``"linear"`` or ``"ntk"``.
        factor: how many times longer the target context is (>= 1; 1 = no change).

    Raises:
        ConfigError: odd head_dim, unknown scaling, or a factor below 1.
    """

    def __init__(
        self, *, head_dim: int, base: float = 10000.0, scaling: str | None = None, factor: float = 1.0
    ) -> None:
        super().__init__(head_dim=head_dim, base=base)
        if scaling is not None and scaling not in SCALINGS:
            raise ConfigError(
                f"rope scaling '{scaling}' is not one of {', '.join(SCALINGS)} (or null for none)"
            )
        if isinstance(factor, bool) or not isinstance(factor, int | float) or factor < 1:
            raise ConfigError(
                f"rope scaling factor={factor!r} must be a number >= 1 (the context length ratio)"
            )
        if scaling is None and factor != 1:
            raise ConfigError(
                f"rope factor={factor} needs a scaling: write {{name: rope, scaling: linear, factor: {factor}}}"
            )
        self.scaling, self.factor = scaling, float(factor)
        self.inv_freq = rope_inverse_frequencies(head_dim, base=base, scaling=scaling, factor=self.factor)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}, scaling={self.scaling}, factor={self.factor}"
