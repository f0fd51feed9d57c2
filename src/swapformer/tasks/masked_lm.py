"""MaskedLMModule: BERT's masked-token training of an :class:`~swapformer.EncoderOnly` model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from swapformer.data.tokenizer_base import NUM_SPECIAL_TOKENS, UNK_ID
from swapformer.errors import ConfigError
from swapformer.tasks.base import SwapformerModule

VALIDATION_SEED = 1234
"""Validation and test batches are masked with generators seeded from this and the batch index, so every
evaluation scores the same masks."""


class MaskedLMModule(SwapformerModule):
    """Trains a bidirectional encoder to fill in masked tokens (Devlin et al., 2019).

    In each sequence ``mask_probability`` of the tokens (never padding or special tokens) are chosen; of those,
    80% are replaced by ``mask_token_id``, 10% by a random token and 10% kept, and the loss is the cross-entropy
    of the chosen tokens only. ``val/acc`` and ``val/ppl`` are the masked-token accuracy and perplexity.

    Args:
        vocab_size ... init_std: see :class:`~swapformer.ModelConfig` (defaults: BERT's post-norm, GELU, learned
            positions).
        lr ... meta_init: see :func:`~swapformer.training.options.training_options` (defaults: BERT's weight decay 0.01,
            betas (0.9, 0.999), eps 1e-6; lr 5e-4).
        mask_probability: fraction of tokens chosen for prediction, in (0, 1).
        mask_token_id: the id that hides a chosen token. swapformer's tokenizers reserve no mask id; the default
            is their unknown-token id, which text the tokenizer was fitted on never produces.

    Batches: ``{"input_ids": (N, L)}``, optional ``"attention_mask"`` and ``"document_ids"`` (other keys, such as a causal LM's
    ``labels``, are ignored), so the causal-LM data modules serve it unchanged.
    """

    kind = "masked_lm"

    training_defaults: ClassVar[dict[str, Any]] = dict(
        lr=5e-4, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-6
    )

    def __init__(
        self, vocab_size: int, *, mask_probability: float = 0.15, mask_token_id: int = UNK_ID, **options: Any
    ) -> None:
        SwapformerModule.__init__(self, locals())
        if not 0.0 < mask_probability < 1.0:
            raise ConfigError(f"mask_probability={mask_probability} must be in (0, 1); BERT uses 0.15")
        if not 0 <= mask_token_id < self.config.vocab_size:
            raise ConfigError(
                f"mask_token_id={mask_token_id} is outside the vocabulary (vocab_size={self.config.vocab_size})"
            )
        self._val_ids: Tensor | None = None

    def mask_tokens(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """BERT's 80/10/10 corruption: ``(inputs, labels)``, labels the pad id (ignored) where nothing is asked.

        Shape:
            input_ids, attention_mask, inputs, labels ``(N, L)``.
        """
        random = {"generator": generator, "device": input_ids.device}
        maskable = input_ids >= NUM_SPECIAL_TOKENS
        if attention_mask is not None:
            maskable &= attention_mask != 0
        chosen = (torch.rand(input_ids.shape, **random) < self.hparams.mask_probability) & maskable
        if not bool(chosen.any()):  # a tiny batch drew nothing: ask for its first maskable token
            chosen = maskable & (maskable.flatten().cumsum(0) == 1).view_as(maskable)
        labels = torch.where(chosen, input_ids, self.pad_id)
        roll = torch.rand(input_ids.shape, **random)
        inputs = torch.where(chosen & (roll < 0.8), self.hparams.mask_token_id, input_ids)
        random_ids = torch.randint(NUM_SPECIAL_TOKENS, self.config.vocab_size, input_ids.shape, **random)
        inputs = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_ids, inputs)
        return inputs, labels

    def _step(self, stage: str, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        if stage == "val" and batch_idx == 0:  # shown by SampleCallback
            self._val_ids = ids.detach()
        generator = None
        if stage != "train":  # the same masks at every evaluation
            generator = torch.Generator(device=ids.device).manual_seed(VALIDATION_SEED + batch_idx)
        inputs, labels = self.mask_tokens(ids, mask, generator=generator)
        losses: dict[str, Tensor] = {}
        types = batch.get("token_type_ids")  # BERT-style data: sentence A and B (the model's token_types)
        documents = batch.get("document_ids")  # packed rows: each document seen alone
        hidden = self.model(
            inputs, mask, token_type_ids=types, losses=losses, head=False, document_ids=documents
        )
        return self._shared_step(stage, hidden, labels, losses)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        """Logits ``(N, L, V)`` of the token at every position (``token_type_ids``: each token's row of the
        token-type table; None: row 0)."""
        return self.model(input_ids, attention_mask, token_type_ids=token_type_ids)

    @torch.no_grad()
    def fill_masks(self, inputs: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """``inputs`` with every ``mask_token_id`` replaced by the model's most likely token."""
        predicted = self.model(inputs, attention_mask).argmax(-1)
        return torch.where(inputs == self.hparams.mask_token_id, predicted, inputs)

    def sample_lines(self, *, num_samples: int, prompt_len: int, seed: int, **options: Any) -> list[str]:
        """The first validation texts with masks (shown as �), the model's fill, and how many it got right."""
        if self._val_ids is None or self.tokenizer is None:
            return []
        ids = self._val_ids[:num_samples, :prompt_len]
        generator = torch.Generator(device=ids.device).manual_seed(seed)
        _, labels = self.mask_tokens(ids, generator=generator)
        # every chosen token hidden
        inputs = torch.where(labels != self.pad_id, self.hparams.mask_token_id, ids)
        was_training = self.model.training
        self.model.eval()
        try:
            filled = self.fill_masks(inputs)
        finally:
            self.model.train(was_training)
        lines = []
        for row in range(ids.size(0)):
            asked = labels[row] != self.pad_id
            right = int((filled[row][asked] == ids[row][asked]).sum())
            lines.append(
                f"[masked]{self.tokenizer.decode(inputs[row].tolist())}\n"
                f"[filled]{self.tokenizer.decode(filled[row].tolist())}\n"
                f"({right} of {int(asked.sum())} masked tokens right)"
            )
        return lines
