"""Lightning side of swapformer: thin LightningModules around the core models, callbacks, optimization.

The ``nn.Module`` code in :mod:`swapformer.models` never imports Lightning; only this package does.
"""

from swapformer.lightning.base import SwapformerModule
from swapformer.lightning.callbacks import SampleCallback, TokenThroughput
from swapformer.lightning.causal_lm import CausalLMModule
from swapformer.lightning.generation import greedy_decode, sample
from swapformer.lightning.optim import SCHEDULES, inverse_sqrt, param_groups, warmup_cosine
from swapformer.lightning.seq2seq import Seq2SeqModule

__all__ = [
    "SCHEDULES",
    "CausalLMModule",
    "SampleCallback",
    "Seq2SeqModule",
    "SwapformerModule",
    "TokenThroughput",
    "greedy_decode",
    "inverse_sqrt",
    "param_groups",
    "sample",
    "warmup_cosine",
]
