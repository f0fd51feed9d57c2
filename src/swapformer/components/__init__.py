"""Built-in members of every family; importing this package registers them."""

from swapformer.components import attention, ffn, norm, placement, positional
from swapformer.components.auxiliary import (
    AddsLosses,
    after_optimizer_step,
    keeps_expert_loads,
    take_expert_loads,
    take_losses,
)

__all__ = [
    "AddsLosses",
    "after_optimizer_step",
    "attention",
    "ffn",
    "keeps_expert_loads",
    "norm",
    "placement",
    "positional",
    "take_expert_loads",
    "take_losses",
]
