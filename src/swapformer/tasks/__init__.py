"""One file per model kind: its LightningModule, batch schema, metrics and decoding."""

from swapformer.tasks.base import TASK_MODULES, SwapformerModule
from swapformer.tasks.causal_lm import CausalLMModule
from swapformer.tasks.masked_lm import MaskedLMModule
from swapformer.tasks.seq2seq import Seq2SeqModule

__all__ = ["TASK_MODULES", "CausalLMModule", "MaskedLMModule", "Seq2SeqModule", "SwapformerModule"]
