"""CausalLMModule: next-token training of a :class:`~swapformer.DecoderOnly` model."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from swapformer.lightning.base import SwapformerModule
from swapformer.lightning.generation import sample
from swapformer.models.builders import build_causal_lm

ComponentName = str | dict[str, Any]
"""A registry name, or ``{name: ..., **options}``; checked by the registry, not by the type."""


class CausalLMModule(SwapformerModule):
    """Trains a decoder-only LM with teacher forcing: position i predicts ``labels[i]`` (the datamodule shifts).

    The model arguments are the :class:`~swapformer.ModelConfig` keys (``vocab_size`` is linked from the
    datamodule in recipes); the rest configure training.

    Args:
        vocab_size ... init_std: see :class:`~swapformer.ModelConfig`.
        lr: peak learning rate (``inverse_sqrt``: a scale on the paper's formula, 1.0 = the paper).
        weight_decay: AdamW decoupled weight decay of weight matrices (never norms, biases, embeddings).
        betas, eps: AdamW.
        schedule: ``warmup_cosine``, ``inverse_sqrt`` or ``constant`` (see :mod:`swapformer.lightning.optim`).
        warmup_steps: optimizer steps of linear warmup.
        total_steps: end of the cosine decay; None = the trainer's ``estimated_stepping_batches``.
        min_lr_ratio: the cosine's floor, as a fraction of ``lr``.
        label_smoothing: cross-entropy label smoothing in [0, 1).

    Batches: ``{"input_ids": (N, L), "labels": (N, L)}``, optional ``"attention_mask"``; pad labels are ignored.
    """

    builder = staticmethod(build_causal_lm)

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 512,
        num_heads: int = 8,
        num_kv_heads: int | None = None,
        num_layers: int = 6,
        d_ff: int = 2048,
        max_seq_len: int = 512,
        dropout: float = 0.1,
        attention: ComponentName = "sdpa",
        positional: ComponentName = "sinusoidal",
        norm: ComponentName = "layernorm",
        placement: ComponentName = "pre",
        ffn: ComponentName = "gelu",
        tie_embeddings: bool = True,
        scale_embeddings: bool = False,
        final_norm: bool | None = None,
        bias: bool = True,
        pad_token_id: int | None = 0,
        init_std: float = 0.02,
        *,
        lr: float = 3e-4,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        schedule: Literal["warmup_cosine", "inverse_sqrt", "constant"] = "warmup_cosine",
        warmup_steps: int = 100,
        total_steps: int | None = None,
        min_lr_ratio: float = 0.1,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._setup(label_smoothing=label_smoothing, schedule=schedule)
        self._val_prompt: Tensor | None = None

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Logits ``(N, L, V)``."""
        return self.model(input_ids, attention_mask)

    def _step(self, stage: str, batch: dict[str, Tensor]) -> Tensor:
        logits = self.model(batch["input_ids"], batch.get("attention_mask"))
        return self._shared_step(stage, logits, batch["labels"])

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step("train", batch)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        if batch_idx == 0:  # remembered as the SampleCallback's prompt
            self._val_prompt = batch["input_ids"][:, :32].detach()
        self._step("val", batch)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._step("test", batch)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> list[str] | Tensor:
        """Greedy continuation (64 tokens) of each row of ``input_ids``; text when a tokenizer is known."""
        out = self.generate(batch["input_ids"], max_new_tokens=64, temperature=0.0)
        if self.tokenizer is None:
            return out
        return [self.tokenizer.decode(row) for row in out.tolist()]

    @torch.no_grad()
    def generate(
        self,
        prompt_ids: Tensor,
        *,
        max_new_tokens: int = 200,
        temperature: float = 0.8,
        top_k: int | None = None,
        seed: int | None = None,
    ) -> Tensor:
        """Continue ``prompt_ids`` ``(N, L)``; returns prompt + new ids ``(N, L + T)``."""
        was_training = self.model.training
        self.model.eval()
        generator = None
        if seed is not None:
            generator = torch.Generator(device=prompt_ids.device).manual_seed(seed)
        try:
            return sample(
                self.model,
                prompt_ids,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_k=top_k,
                max_context=self.config.max_seq_len,
                generator=generator,
            )
        finally:
            self.model.train(was_training)

    def generate_text(self, prompt: str, **kwargs: Any) -> str:
        """Continue ``prompt`` (needs the tokenizer: from the datamodule or the checkpoint)."""
        if self.tokenizer is None:
            raise ValueError(
                "no tokenizer: load the module from a checkpoint, or train it with a datamodule first"
            )
        ids = torch.tensor([self.tokenizer.encode(prompt) or [self.tokenizer.bos_id]], device=self.device)
        return self.tokenizer.decode(self.generate(ids, **kwargs)[0].tolist())
