"""The names recipes used before the modules moved to :mod:`swapformer.tasks` and the callbacks and strategies
to :mod:`swapformer.training`: ``class_path: swapformer.lightning.CausalLMModule`` keeps working."""

from swapformer.tasks import CausalLMModule, Seq2SeqModule, SwapformerModule
from swapformer.training import (
    AttentionMapLogger,
    BlockFSDPStrategy,
    FSDP2Strategy,
    SampleCallback,
    TokenThroughput,
    consolidate_checkpoint,
)

__all__ = [
    "AttentionMapLogger",
    "BlockFSDPStrategy",
    "CausalLMModule",
    "FSDP2Strategy",
    "SampleCallback",
    "Seq2SeqModule",
    "SwapformerModule",
    "TokenThroughput",
    "consolidate_checkpoint",
]
