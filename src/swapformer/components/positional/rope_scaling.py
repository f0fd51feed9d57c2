"""RoPE scaling for contexts longer than training: position interpolation (Chen et al., 2023, "Extending Context
Window of Large Language Models via Positional Interpolation"), NTK-aware base scaling (bloc97, 2023; the
static form of Hugging Face's ``dynamic`` rope type), Llama 3.1's frequency-dependent interpolation and YaRN (Peng
et al., 2023, "YaRN: Efficient Context Window Extension of Large Language Models")."""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from swapformer.components.positional.rope import RotaryPositionalEncoding
from swapformer.errors import ConfigError
from swapformer.registry import Capabilities

SCALINGS = ("linear", "ntk", "llama3", "yarn")

SCALING_OPTIONS = {
    "llama3": ("low_freq_factor", "high_freq_factor", "original_max_seq_len"),
    "yarn": ("original_max_seq_len", "beta_fast", "beta_slow", "attention_factor", "truncate"),
}
"""The options each scaling reads besides ``factor`` (None where left out: the scaling's default)."""


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    """YaRN's Eq. 21, ``0.1 mscale ln(factor) + 1`` (1 when ``factor <= 1``): the scale on cos and sin, and
    DeepSeek's scale on the whole softmax (``mla``'s ``mscale`` is this of ``mscale_all_dim``)."""
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def yarn_attention_factor(factor: float, mscale: float = 1.0, mscale_all_dim: float | None = None) -> float:
    """YaRN's scale on cos and sin (so on q and k: ``attention_factor ** 2`` on the scores): 0.1 ln(factor) + 1
    (the paper's Eq. 21), or DeepSeek's ratio of two such terms when ``mscale`` and ``mscale_all_dim`` are set,
    as Hugging Face derives it when ``attention_factor`` is absent."""
    if mscale and mscale_all_dim:
        return float(yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim))
    return yarn_mscale(factor)


def yarn_inverse_frequencies(
    head_dim: int,
    *,
    base: float,
    factor: float,
    original_max_seq_len: int,
    beta_fast: float,
    beta_slow: float,
    truncate: bool,
) -> torch.Tensor:
    """YaRN's blend of theta_i = 1 / base^(2i / E) (extrapolation) and theta_i / factor (interpolation): dimensions that turn
    more than ``beta_fast`` times over ``original_max_seq_len`` positions keep their frequency, those that turn
    fewer than ``beta_slow`` times are interpolated, and a linear ramp over the dimension index blends between.

    Shape:
        output ``(E / 2,)``.
    """
    dim = head_dim

    def correction_dim(rotations: float) -> float:  # the dimension that turns ``rotations`` times
        return dim * math.log(original_max_seq_len / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # a ramp of zero width
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolated = 1 - ramp  # 1: the dimension keeps its frequency
    powers = base ** (
        torch.arange(0, dim, 2, dtype=torch.float32) / dim
    )  # base^(2i/E), as Hugging Face rounds it
    return (1.0 / (factor * powers)) * (1 - extrapolated) + (1.0 / powers) * extrapolated


def rope_inverse_frequencies(
    head_dim: int,
    *,
    base: float = 10000.0,
    scaling: str | None = None,
    factor: float = 1.0,
    low_freq_factor: float = 1.0,
    high_freq_factor: float = 4.0,
    original_max_seq_len: int = 8192,
    beta_fast: float = 32.0,
    beta_slow: float = 1.0,
    truncate: bool = True,
) -> torch.Tensor:
    """theta_i = 1 / base^(2i / E), rescaled for a context ``factor`` times longer.

    - ``linear``: theta_i / factor, i.e. position p is rotated as p / factor (interpolation).
    - ``ntk``: base * factor^(E / (E - 2)): high frequencies (local order) barely move, the lowest one is
      interpolated by ``factor``. Hugging Face's ``dynamic`` type applies this with the factor recomputed from the
      current length; at length ``original * (2 factor - 1) / factor`` the two agree.
    - ``llama3``: wavelengths shorter than ``original_max_seq_len / high_freq_factor`` keep their frequency,
      those longer than ``original_max_seq_len / low_freq_factor`` are divided by ``factor``, and the band between
      blends the two linearly in ``original_max_seq_len / wavelength`` (Llama 3.1).
    - ``yarn``: dimensions that turn more than ``beta_fast`` times in ``original_max_seq_len`` positions keep
      their frequency, those turning fewer than ``beta_slow`` times are divided by ``factor``, a linear ramp over
      the dimension index between (bounds rounded outward when ``truncate``); see
      :func:`yarn_inverse_frequencies`. Its attention factor is the rope member's, not a frequency.

    Shape:
        output ``(E / 2,)``.
    """
    if scaling == "ntk" and head_dim > 2:  # (E = 2: one frequency, base^0 = 1, which no base change moves)
        base = base * factor ** (head_dim / (head_dim - 2))
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    if scaling == "yarn":
        return yarn_inverse_frequencies(
            head_dim,
            base=base,
            factor=factor,
            original_max_seq_len=original_max_seq_len,
            beta_fast=beta_fast,
            beta_slow=beta_slow,
            truncate=truncate,
        )
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
    raises the base instead (works reasonably even without fine-tuning), ``{"name": "rope", "scaling": "yarn",
    "factor": 4, "original_max_seq_len": 4096}`` blends the two per dimension and sharpens the scores. The
    frequencies are fixed at build time, so cached and uncached decoding agree.

    Args:
        head_dim: per-head dimension E (must be even).
        base: frequency base (10000 in RoFormer and Llama 2; 500000 in Llama 3).
        scaling: None, ``"linear"``, ``"ntk"``, ``"llama3"`` or ``"yarn"``.
        factor: how many times longer the target context is (>= 1; 1 = no change).
        low_freq_factor, high_freq_factor: ``llama3`` only: the band of wavelengths (``original_max_seq_len /
            high_freq_factor`` to ``original_max_seq_len / low_freq_factor``) over which the scaling fades in;
            Llama 3.1 uses 1, 4 and 8192.
        original_max_seq_len: ``llama3`` and ``yarn``: the context trained on (Hugging Face's
            ``original_max_position_embeddings``); None = 8192.
        beta_fast, beta_slow: ``yarn`` only: dimensions turning more than ``beta_fast`` times (None = 32) over
            ``original_max_seq_len`` keep their frequency, fewer than ``beta_slow`` times (None = 1) are
            interpolated.
        attention_factor: ``yarn`` only: the factor on cos and sin, so on q and k (the scores get its square);
            None = 0.1 ln(factor) + 1, as Hugging Face derives it.
        truncate: ``yarn`` only: round the ramp's bounds outward to whole dimensions (None = true; gpt-oss: false).

    Raises:
        ConfigError: odd head_dim, unknown scaling, a factor below 1, options of another scaling, or a
            ``beta_fast`` not above ``beta_slow``.
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
        beta_fast: float | None = None,
        beta_slow: float | None = None,
        attention_factor: float | None = None,
        truncate: bool | None = None,
    ) -> None:
        super().__init__(head_dim=head_dim, base=base)
        given = {
            "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_seq_len": original_max_seq_len,
            "beta_fast": beta_fast,
            "beta_slow": beta_slow,
            "attention_factor": attention_factor,
            "truncate": truncate,
        }
        band = {key: value for key, value in given.items() if value is not None}
        if scaling is not None and scaling not in SCALINGS:
            raise ConfigError(
                f"rope scaling '{scaling}' is not one of {', '.join(SCALINGS)} (or null for none)"
            )
        foreign = [key for key in band if key not in SCALING_OPTIONS.get(scaling or "", ())]
        if foreign:
            owners = sorted({name for name, keys in SCALING_OPTIONS.items() if foreign[0] in keys})
            raise ConfigError(
                f"rope options {', '.join(foreign)} belong to scaling: {' or '.join(owners)}, not scaling: {scaling}"
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
        if band.get("beta_fast", 32.0) <= band.get("beta_slow", 1.0):
            raise ConfigError(
                f"rope yarn needs beta_fast above beta_slow (Hugging Face's defaults: 32 and 1), got "
                f"beta_fast={band.get('beta_fast', 32.0)}, beta_slow={band.get('beta_slow', 1.0)}: swap them"
            )
        if attention_factor is not None and (
            isinstance(attention_factor, bool)
            or not isinstance(attention_factor, int | float)
            or not attention_factor > 0
        ):
            raise ConfigError(
                f"rope attention_factor={attention_factor!r} must be a number > 0 (or null: 0.1 ln(factor) + 1)"
            )
        self.scaling, self.factor, self.band = scaling, float(factor), band
        if scaling == "yarn":
            self.table_scale = float(
                yarn_attention_factor(self.factor) if attention_factor is None else attention_factor
            )
        frequency_options = {key: value for key, value in band.items() if key != "attention_factor"}
        self.inv_freq = rope_inverse_frequencies(
            head_dim, base=base, scaling=scaling, factor=self.factor, **frequency_options
        )

    def extra_repr(self) -> str:
        band = "".join(f", {key}={value}" for key, value in self.band.items())
        return (
            f"head_dim={self.head_dim}, base={self.base}, scaling={self.scaling}, factor={self.factor}{band}"
        )
