"""`none`: no positional information at all."""

from __future__ import annotations

from typing import ClassVar

from swapformer.components.positional.base import PositionalEncoding
from swapformer.registry import Capabilities


class NoPositionalEncoding(PositionalEncoding):
    """No position signal: attention alone is order-blind, but a causal mask still leaks order (NoPE)."""

    tensor_parallel_plan: ClassVar[dict[str, str]] = {}
    """Under tensor parallelism every rank runs it whole, on the full (replicated) activations."""

    capabilities: ClassVar[Capabilities] = Capabilities(relative=True)
