"""Seq2SeqModule: teacher-forced training of an :class:`~swapformer.EncoderDecoder`, greedy-decoded validation."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.text import SacreBLEUScore

from swapformer.models.builders import build_seq2seq
from swapformer.tasks.base import STAGES, SwapformerModule

ComponentName = str | dict[str, Any]


class Seq2SeqModule(SwapformerModule):
    """Trains an encoder-decoder on ``(source, target)`` pairs; validation and test also decode greedily.

    Teacher forcing: the decoder reads ``tgt_ids[:, :-1]`` (``<s> y1 .. yn``) and predicts ``tgt_ids[:, 1:]``
    (``y1 .. yn </s>``); padding after ``</s>`` is ignored by the loss. With ``greedy_eval`` the val/test steps
    also decode greedily with the KV cache (:func:`swapformer.generation.generate`) and log exact match (whole target equal) and
    corpus BLEU (sacreBLEU, ``13a`` tokenization) of the decoded text.

    Args:
        vocab_size ... init_std: see :class:`~swapformer.ModelConfig` (defaults: the paper's base model).
        lr ... label_smoothing: as in :class:`~swapformer.tasks.CausalLMModule`.
        greedy_eval: decode greedily in validation and test.
        max_decode_len: most generated tokens; None = target length of the batch + 16.
        bos_id, eos_id: special ids (the data layer fixes them at 1 and 2).
        activation_checkpointing, compile, meta_init: as in :class:`~swapformer.tasks.CausalLMModule`.

    Batches: ``src_ids, src_mask, tgt_ids, tgt_mask`` tensors and ``src_text, tgt_text`` lists.
    """

    builder = staticmethod(build_seq2seq)

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 512,
        num_heads: int = 8,
        num_kv_heads: int | None = None,
        num_layers: int = 6,
        num_encoder_layers: int | None = None,
        num_decoder_layers: int | None = None,
        d_ff: int = 2048,
        max_seq_len: int = 512,
        dropout: float = 0.1,
        attention: ComponentName = "sdpa",
        positional: ComponentName = "sinusoidal",
        norm: ComponentName = "layernorm",
        placement: ComponentName = "post",
        ffn: ComponentName = "relu",
        tie_embeddings: bool = True,
        scale_embeddings: bool = False,
        final_norm: bool | None = None,
        bias: bool = True,
        pad_token_id: int | None = 0,
        src_vocab_size: int | None = None,
        init_std: float = 0.02,
        *,
        lr: float = 5e-4,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-9,
        schedule: Literal["warmup_cosine", "inverse_sqrt", "constant"] = "warmup_cosine",
        warmup_steps: int = 100,
        total_steps: int | None = None,
        min_lr_ratio: float = 0.1,
        label_smoothing: float = 0.0,
        greedy_eval: bool = True,
        max_decode_len: int | None = None,
        bos_id: int = 1,
        eos_id: int = 2,
        # scale out (see swapformer.training.distributed)
        activation_checkpointing: bool = False,
        compile: bool | dict[str, Any] = False,
        meta_init: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._setup(label_smoothing=label_smoothing, schedule=schedule)
        for stage in STAGES[1:]:
            setattr(self, f"{stage}_exact", MeanMetric())
            setattr(self, f"{stage}_bleu", SacreBLEUScore(tokenize="13a"))
        self.val_examples: list[
            tuple[str, str, str]
        ] = []  # (source, prediction, reference) for SampleCallback

    def forward(self, src_ids: Tensor, tgt_ids: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Teacher-forced logits ``(N, L, V)``."""
        return self.model(src_ids, tgt_ids, src_mask)

    def _step(self, stage: str, batch: dict[str, Any]) -> Tensor:
        tgt = batch["tgt_ids"]
        # Right padding: the causal mask already keeps real positions from seeing the pads after them, so
        # the decoder needs no padding mask (and SDPA keeps its is_causal fast path).
        logits = self.model(batch["src_ids"], tgt[:, :-1], batch["src_mask"])
        return self._shared_step(stage, logits, tgt[:, 1:])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._step("train", batch)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step("val", batch)
        if self.hparams.greedy_eval:
            self._decode_metrics("val", batch, keep_examples=batch_idx == 0)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step("test", batch)
        if self.hparams.greedy_eval:
            self._decode_metrics("test", batch)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[str] | list[list[int]]:
        """Greedy translations of ``src_ids``: text when a tokenizer is known, else id lists."""
        ids = self.translate_ids(batch["src_ids"], batch.get("src_mask"))
        return [self.tokenizer.decode(x) for x in ids] if self.tokenizer is not None else ids

    def translate_ids(
        self, src_ids: Tensor, src_mask: Tensor | None = None, max_len: int | None = None
    ) -> list[list[int]]:
        """Greedy decoding, one id list per source (eos and what follows removed)."""
        out = self.model.generate(
            src_ids,
            src_mask,
            max_new_tokens=max_len
            or self.hparams.max_decode_len
            or min(self.config.max_seq_len - 1, src_ids.size(1) + 16),
            eos_token_id=self.hparams.eos_id,
            pad_token_id=max(self.pad_id, 0),
            decoder_start_token_id=self.hparams.bos_id,
        )[:, 1:]  # without the start id
        return [strip_after_eos(row, self.hparams.eos_id) for row in out.tolist()]

    def translate(self, sources: list[str], max_len: int | None = None) -> list[str]:
        """Greedy translations of ``sources`` (needs the tokenizer: datamodule or checkpoint)."""
        if self.tokenizer is None:
            raise ValueError(
                "no tokenizer: load the module from a checkpoint, or train it with a datamodule first"
            )
        # sources as the data layer encodes them: ids + [eos]
        encoded = [[*self.tokenizer.encode(s), self.hparams.eos_id] for s in sources]
        width = max(1, *(len(e) for e in encoded))
        src = torch.full((len(encoded), width), max(self.pad_id, 0), dtype=torch.long, device=self.device)
        for i, e in enumerate(encoded):
            src[i, : len(e)] = torch.tensor(e, dtype=torch.long)
        mask = src != max(self.pad_id, 0)
        return [self.tokenizer.decode(x) for x in self.translate_ids(src, mask, max_len)]

    def _decode_metrics(self, stage: str, batch: dict[str, Any], keep_examples: bool = False) -> None:
        tgt = batch["tgt_ids"]
        max_len = self.hparams.max_decode_len or min(self.config.max_seq_len - 1, tgt.size(1) + 16)
        predictions = self.translate_ids(batch["src_ids"], batch["src_mask"], max_len)
        references = [strip_after_eos(row, self.hparams.eos_id) for row in tgt[:, 1:].tolist()]
        exact = torch.tensor([float(p == r) for p, r in zip(predictions, references)], device=tgt.device)
        exact_metric = getattr(self, f"{stage}_exact")
        exact_metric.update(exact)
        self.log(f"{stage}/exact_match", exact_metric, prog_bar=True, batch_size=tgt.size(0))
        if self.tokenizer is None:
            return
        texts = [self.tokenizer.decode(p) for p in predictions]
        refs = batch.get("tgt_text") or [self.tokenizer.decode(r) for r in references]
        bleu = getattr(self, f"{stage}_bleu")
        bleu.update(texts, [[r] for r in refs])
        self.log(f"{stage}/bleu", bleu, batch_size=tgt.size(0))
        if keep_examples:
            sources = batch.get("src_text") or [self.tokenizer.decode(s) for s in batch["src_ids"].tolist()]
            self.val_examples = list(zip(sources, texts, refs))[:8]


def strip_after_eos(ids: list[int], eos_id: int) -> list[int]:
    """Tokens before the first ``eos_id``."""
    return ids[: ids.index(eos_id)] if eos_id in ids else ids
