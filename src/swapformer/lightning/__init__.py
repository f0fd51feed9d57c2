"""Lightning side of swapformer: thin LightningModules around the core models, callbacks, optimization.

The ``nn.Module`` code in :mod:`swapformer.models` never imports Lightning; only this package does.
"""

from swapformer.lightning.attention_maps import AttentionMapLogger
from swapformer.lightning.base import SwapformerModule
from swapformer.lightning.callbacks import SampleCallback, TokenThroughput
from swapformer.lightning.causal_lm import CausalLMModule
from swapformer.lightning.optim import SCHEDULES, inverse_sqrt, param_groups, warmup_cosine
from swapformer.lightning.seq2seq import Seq2SeqModule
from swapformer.lightning.strategies import BlockFSDPStrategy, FSDP2Strategy, consolidate_checkpoint

__all__ = [
    "SCHEDULES",
    "AttentionMapLogger",
    "BlockFSDPStrategy",
    "CausalLMModule",
    "FSDP2Strategy",
    "SampleCallback",
    "Seq2SeqModule",
    "SwapformerModule",
    "TokenThroughput",
    "consolidate_checkpoint",
    "inverse_sqrt",
    "param_groups",
    "warmup_cosine",
]
