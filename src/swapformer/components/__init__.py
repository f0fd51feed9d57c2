"""Built-in members of every family; importing this package registers them."""

from swapformer.components import attention, ffn, norm, placement, positional
from swapformer.components.auxiliary import AddsLosses, after_optimizer_step, take_losses

__all__ = [
    "AddsLosses",
    "after_optimizer_step",
    "attention",
    "ffn",
    "norm",
    "placement",
    "positional",
    "take_losses",
]
