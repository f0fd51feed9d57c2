"""Built-in members of every family; importing this package registers them."""

from swapformer.components import attention, ffn, norm, placement, positional
from swapformer.components.auxiliary import AddsLosses, take_losses

__all__ = ["AddsLosses", "attention", "ffn", "norm", "placement", "positional", "take_losses"]
