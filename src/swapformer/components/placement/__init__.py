"""Placement family: how x, a sublayer and a norm compose into a residual step."""

from swapformer.components.placement.residual import PostNorm, PreNorm, Residual
from swapformer.registry import PLACEMENT

PLACEMENT.add("post", PostNorm, description="Add & Norm after each sublayer: norm(x + f(x)) (Vaswani 2017)")
PLACEMENT.add(
    "pre", PreNorm, description="norm before each sublayer: x + f(norm(x)), final norm after the stack"
)

__all__ = ["PostNorm", "PreNorm", "Residual"]
