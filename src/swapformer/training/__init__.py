"""What every task's training shares: optimizer groups and schedules, scale-out strategies, callbacks.

The ``nn.Module`` code in :mod:`swapformer.models` and :mod:`swapformer.nn` never imports Lightning; this package
and :mod:`swapformer.tasks` do.
"""

from swapformer.training.attention_maps import AttentionMapLogger
from swapformer.training.callbacks import SampleCallback, TokenThroughput
from swapformer.training.checkpoint_io import AtomicCheckpointIO
from swapformer.training.expert_load import ExpertLoadLogger
from swapformer.training.optim import SCHEDULES, inverse_sqrt, param_groups, warmup_cosine
from swapformer.training.progress import ProgressBar
from swapformer.training.signals import SaveOnSignal
from swapformer.training.strategies import (
    BlockFSDPStrategy,
    FSDP2Strategy,
    TensorParallelStrategy,
    consolidate_checkpoint,
)

__all__ = [
    "SCHEDULES",
    "AtomicCheckpointIO",
    "AttentionMapLogger",
    "BlockFSDPStrategy",
    "ExpertLoadLogger",
    "FSDP2Strategy",
    "ProgressBar",
    "SampleCallback",
    "SaveOnSignal",
    "TensorParallelStrategy",
    "TokenThroughput",
    "consolidate_checkpoint",
    "inverse_sqrt",
    "param_groups",
    "warmup_cosine",
]
