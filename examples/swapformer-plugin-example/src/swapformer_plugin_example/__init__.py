"""An example swapformer plug-in: one attention kernel and one feed-forward layer, registered by name."""

from __future__ import annotations

from swapformer.registry import ATTENTION, FFN
from swapformer_plugin_example.reglu import reglu
from swapformer_plugin_example.softcap import SoftCapAttention


def register() -> None:
    """Called once by swapformer (entry point group ``swapformer.components``) on its first lookup."""
    ATTENTION.add("softcap", SoftCapAttention)  # no description given: the docstring's first line is used
    FFN.add("reglu", reglu, description="ReLU-gated linear unit: down(relu(gate x) * up x) (Shazeer 2020)")


__all__ = ["SoftCapAttention", "register", "reglu"]
