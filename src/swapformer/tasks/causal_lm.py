"""CausalLMModule: next-token training of a :class:`~swapformer.DecoderOnly` model."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from swapformer.tasks.base import SwapformerModule


class CausalLMModule(SwapformerModule):
    """Trains a decoder-only LM with teacher forcing: position i predicts ``labels[i]`` (the datamodule shifts).

    The model arguments are the :class:`~swapformer.ModelConfig` keys (``vocab_size`` is linked from the
    datamodule in recipes); the rest configure training.

    Args:
        vocab_size ... init_std: see :class:`~swapformer.ModelConfig`.
        lr ... meta_init: see :func:`~swapformer.training.options.training_options`.

    Batches: ``{"input_ids": (N, L), "labels": (N, L)}``, optional ``"attention_mask"`` and ``"document_ids"``
    (packed rows: attention within each document); pad labels are ignored.
    """

    kind = "causal_lm"

    def __init__(self, vocab_size: int, **options: Any) -> None:
        SwapformerModule.__init__(self, locals())
        self._val_prompt: Tensor | None = None

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Logits ``(N, L, V)``."""
        return self.model(input_ids, attention_mask)

    def _step(self, stage: str, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if stage == "val" and batch_idx == 0:  # remembered as the SampleCallback's prompt
            self._val_prompt = batch["input_ids"][:, :32].detach()
        losses: dict[str, Tensor] = {}
        hidden = self.model(
            batch["input_ids"],
            batch.get("attention_mask"),
            losses=losses,
            head=False,
            document_ids=batch.get("document_ids"),
        )
        return self._shared_step(stage, hidden, batch["labels"], losses)

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
        max_new_tokens: int | None = None,
        max_context: int | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Continue ``input_ids`` ``(N, P)`` with :func:`swapformer.generation.decoding`, whose arguments it takes
        (Hugging Face's names). Returns the prompts and new ids.

        A model with generation defaults (``model.generation_config``: an imported checkpoint's) takes every
        setting not passed from them, in one call; for another, ``max_new_tokens`` defaults to 20 and
        ``pad_token_id`` to the module's.

        Args:
            max_context: how far a sample may run past the length the model trained on. Unpadded prompts whose
                continuation would pass ``max_context`` tokens (``max_seq_len`` by default) are continued in
                rounds, each re-prompted with the last ``max_context / 2`` tokens, as nanoGPT's sampler crops its
                context; 0 turns this off (then a learned positional table refuses the length).
        """
        if self.model.generation_config is not None and max_new_tokens is None:
            return self.model.generate(input_ids, attention_mask, **kwargs)
        if self.model.generation_config is None:
            kwargs.setdefault("pad_token_id", max(self.pad_id, 0))
        max_new_tokens = 20 if max_new_tokens is None else max_new_tokens
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

    def sample_lines(
        self,
        *,
        num_samples: int,
        max_new_tokens: int,
        temperature: float,
        top_k: int | None,
        prompt_len: int,
        seed: int,
    ) -> list[str]:
        """Continuations of the first validation batch's rows: ``[prompt]...[generated]...`` (``temperature`` 0:
        greedy)."""
        if self._val_prompt is None or self.tokenizer is None:
            return []
        prompt = self._val_prompt[:num_samples, :prompt_len]
        sampling = {"do_sample": True, "temperature": temperature, "top_k": top_k, "seed": seed}
        out = self.generate(prompt, max_new_tokens=max_new_tokens, **(sampling if temperature > 0 else {}))
        decode, cut = self.tokenizer.decode, prompt.size(1)
        return [f"[prompt]{decode(row[:cut])}[generated]{decode(row[cut:])}" for row in out.tolist()]

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
