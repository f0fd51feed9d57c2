"""RoPE scaling for contexts longer than training: position interpolation (Chen et al., 2023, "Extending Context
Window of Large Language Models via Positional Interpolation"), NTK-aware base scaling (bloc97, 2023; the
static form of Hugging Face's ``dynamic`` rope type) and Llama 3.1's frequency-dependent interpolation."""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from swapformer.components.positional.rope import RotaryPositionalEncoding
from swapformer.errors import ConfigError
from swapformer.registry import Capabilities

SCALINGS = ("linear", "ntk", "llama3")


def rope_inverse_frequencies(
    head_dim: int,
    *,
    base: float = 10000.0,
    scaling: str | None = None,
    factor: float = 1.0,
    low_freq_factor: float = 1.0,
    high_freq_factor: float = 4.0,
    original_max_seq_len: int = 8192,
) -> torch.Tensor:
    """theta_i = 1 / base^(2i / E), rescaled for a context ``factor`` times longer.

    - ``linear``: theta_i / factor, i.e. position p is rotated as p / factor (interpolation).
    - ``ntk``: base * factor^(E / (E - 2)): high frequencies (local order) barely move, the lowest one is
      interpolated by ``factor``. Hugging Face's ``dynamic`` type applies this with the factor recomputed from the
      current length; at length ``original * (2 factor - 1) / factor`` the two agree.
    - ``llama3``: wavelengths shorter than ``original_max_seq_len / high_freq_factor`` keep their frequency,
      those longer than ``original_max_seq_len / low_freq_factor`` are divided by ``factor``, and the band between
      blends the two linearly in ``original_max_seq_len / wavelength`` (Llama 3.1).

    Shape:
        output ``(E / 2,)``.
    """
    if scaling == "ntk":
        base = base * factor ** (head_dim / (head_dim - 2))
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    if scaling == "llama3":
        wavelength = 2 * math.pi / inv_freq
        smooth = (original_max_seq_len / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)
        blended = (1 - smooth.clamp(0, 1)) * inv_freq / factor + smooth.clamp(0, 1) * inv_freq
        return blended
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
        scaling: None, ``"linear"``, ``"ntk"`` or ``"llama3"``.
        factor: how many times longer the target context is (>= 1; 1 = no change).
        low_freq_factor, high_freq_factor, original_max_seq_len: ``llama3`` only: the band of wavelengths
            (``original_max_seq_len / high_freq_factor`` to ``original_max_seq_len / low_freq_factor``) over which
            the scaling fades in; Llama 3.1 uses 1, 4 and 8192.

    Raises:
        ConfigError: odd head_dim, unknown scaling, a factor below 1, or ``llama3`` options with another scaling.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(relative=True)  # every scaling rotates by position

    def __init__(
        self,
        *,
        head_dim: int,
        base: float = 10000.0,
        scaling: str | None = None,
        factor: float = 1.0,
        low_freq_factor: float | None = None,
        high_freq_factor: float | None = None,
        original_max_seq_len: int | None = None,
    ) -> None:
        super().__init__(head_dim=head_dim, base=base)
        band = {
            "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_seq_len": original_max_seq_len,
        }
        band = {key: value for key, value in band.items() if value is not None}
        if band and scaling != "llama3":
            raise ConfigError(
                f"rope options {', '.join(band)} belong to scaling: llama3, not scaling: {scaling}"
            )
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
        if band.get("high_freq_factor", 4.0) <= band.get("low_freq_factor", 1.0):
            raise ConfigError(f"rope llama3 needs high_freq_factor above low_freq_factor, got {band}")
        self.scaling, self.factor, self.band = scaling, float(factor), band
        self.inv_freq = rope_inverse_frequencies(
            head_dim, base=base, scaling=scaling, factor=self.factor, **band
        )

    def extra_repr(self) -> str:
        band = "".join(f", {key}={value}" for key, value in self.band.items())
        return (
            f"head_dim={self.head_dim}, base={self.base}, scaling={self.scaling}, factor={self.factor}{band}"
        )
