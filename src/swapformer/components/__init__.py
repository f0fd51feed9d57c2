"""Built-in members of every family; importing this package registers them."""

from swapformer.components import attention, ffn, norm, placement, positional

__all__ = ["attention", "ffn", "norm", "placement", "positional"]
