"""Lightning data modules: causal language modelling and sequence-to-sequence.

Each lives in its own file; this module gathers them under one import path for configs, e.g.
``class_path: swapformer.data.datamodules.CausalLMDataModule``.
"""

from __future__ import annotations

from swapformer.data.base_datamodule import TokenizedDataModule
from swapformer.data.lm_datamodule import CausalLMDataModule
from swapformer.data.seq2seq_datamodule import Seq2SeqDataModule

__all__ = ["CausalLMDataModule", "Seq2SeqDataModule", "TokenizedDataModule"]
