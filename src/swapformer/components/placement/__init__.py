"""Placement family: how x, a sublayer and a norm compose into a residual step."""

from swapformer.components.placement.deepnorm import DeepNorm, deepnorm_constants
from swapformer.components.placement.residual import PostNorm, PreNorm, Residual, ResPostNorm, SandwichNorm
from swapformer.registry import PLACEMENT

PLACEMENT.add("post", PostNorm, description="Add & Norm after each sublayer: norm(x + f(x)) (Vaswani 2017)")
PLACEMENT.add(
    "pre", PreNorm, description="norm before each sublayer: x + f(norm(x)), final norm after the stack"
)
PLACEMENT.add(
    "sandwich",
    SandwichNorm,
    description="norm before and after each sublayer: x + norm'(f(norm(x))) (CogView, NormFormer)",
)
PLACEMENT.add(
    "res_post",
    ResPostNorm,
    description="norm on each sublayer's output, inside the residual: x + norm(f(x)) (Swin V2, OLMo 2)",
)
PLACEMENT.add(
    "deepnorm",
    DeepNorm,
    description="norm(alpha x + f(x)) with beta-scaled init, for very deep post-norm stacks (DeepNet, 2022)",
)

__all__ = ["DeepNorm", "PostNorm", "PreNorm", "ResPostNorm", "Residual", "SandwichNorm", "deepnorm_constants"]
