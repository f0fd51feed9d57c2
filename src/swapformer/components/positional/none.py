"""`none`: no positional information at all."""

from __future__ import annotations

from swapformer.components.positional.base import PositionalEncoding


class NoPositionalEncoding(PositionalEncoding):
    """No position signal: attention alone is order-blind, but a causal mask still leaks order (NoPE)."""
