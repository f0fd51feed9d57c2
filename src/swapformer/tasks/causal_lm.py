"""CausalLMModule: next-token training of a :class:`~swapformer.DecoderOnly` model."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from swapformer.models.builders import build_causal_lm
from swapformer.tasks.base import SwapformerModule

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
        schedule: ``warmup_cosine``, ``inverse_sqrt`` or ``constant`` (see :mod:`swapformer.training.optim`).
        warmup_steps: optimizer steps of linear warmup.
        total_steps: end of the cosine decay; None = the trainer's ``estimated_stepping_batches``.
        min_lr_ratio: the cosine's floor, as a fraction of ``lr``.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        global_batch_tokens: tokens per optimizer step over all processes; sets
            ``trainer.accumulate_grad_batches = global_batch_tokens / (batch_size x seq_len x processes)`` at fit
            start, so the effective batch does not depend on the device count. None = the trainer's setting.
        activation_checkpointing: recompute each block's activations in backward (less memory, ~1/3 more time).
        compile: ``torch.compile`` each block (True, or a dict of ``torch.compile`` options); off by default.
        meta_init: create the parameters on the meta device and allocate them in ``configure_model``, after
            FSDP2 has sharded them (each process then holds only its shards); for models too big for one device.

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
        # scale out (see swapformer.training.distributed)
        global_batch_tokens: int | None = None,
        activation_checkpointing: bool = False,
        compile: bool | dict[str, Any] = False,
        meta_init: bool = False,
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
        out = self.generate(batch["input_ids"], max_new_tokens=64)
        if self.tokenizer is None:
            return out
        return [self.tokenizer.decode(row) for row in out.tolist()]

    def generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        max_new_tokens: int = 20,
        max_context: int | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Continue ``input_ids`` ``(N, P)`` with :func:`swapformer.generation.generate`, whose arguments it takes
        (Hugging Face's names); ``pad_token_id`` defaults to the model's. Returns the prompts and new ids.

        Args:
            max_context: how far a sample may run past the length the model trained on. Unpadded prompts whose
                continuation would pass ``max_context`` tokens (``max_seq_len`` by default) are continued in
                rounds, each re-prompted with the last ``max_context / 2`` tokens, as nanoGPT's sampler crops its
                context; 0 turns this off (then a learned positional table refuses the length).
        """
        kwargs.setdefault("pad_token_id", max(self.pad_id, 0))
        window = self.config.max_seq_len if max_context is None else max_context
        fits = input_ids.size(1) + max_new_tokens <= window
        if not window or fits or attention_mask is not None or kwargs.get("num_beams", 1) > 1:
            return self.model.generate(input_ids, attention_mask, max_new_tokens=max_new_tokens, **kwargs)
        seed = kwargs.pop("seed", None)
        if seed is not None:  # one generator across the rounds, so the sample repeats as a whole
            kwargs["generator"] = torch.Generator(device=input_ids.device).manual_seed(seed)
        streamer = kwargs.pop("streamer", None)
        if streamer is not None:
            kwargs["streamer"] = _RoundStreamer(streamer)
        out, remaining = input_ids, max_new_tokens
        while remaining > 0:
            context = out[:, -max(1, window // 2) :] if out.size(1) > window // 2 else out
            step = min(remaining, window - context.size(1))
            more = self.model.generate(context, max_new_tokens=step, **kwargs)[:, context.size(1) :]
            out, remaining = torch.cat([out, more], dim=1), remaining - more.size(1)
            if more.size(1) < step:  # every row reached an eos
                break
        if streamer is not None:
            streamer.end()
        return out

    def generate_text(self, prompt: str, **kwargs: Any) -> str:
        """Continue ``prompt`` (needs the tokenizer: from the datamodule or the checkpoint)."""
        if self.tokenizer is None:
            raise ValueError(
                "no tokenizer: load the module from a checkpoint, or train it with a datamodule first"
            )
        ids = torch.tensor([self.tokenizer.encode(prompt) or [self.tokenizer.bos_id]], device=self.device)
        return self.tokenizer.decode(self.generate(ids, **kwargs)[0].tolist())


class _RoundStreamer:
    """Passes tokens on, but not the ``end()`` of each round of a windowed generation."""

    def __init__(self, streamer: Any) -> None:
        self.streamer = streamer

    def put(self, value: Tensor) -> None:
        self.streamer.put(value)

    def end(self) -> None:
        pass
