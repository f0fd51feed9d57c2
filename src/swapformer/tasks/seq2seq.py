"""Seq2SeqModule: teacher-forced training of an :class:`~swapformer.EncoderDecoder`, greedy-decoded validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.text import SacreBLEUScore

from swapformer.data import encode_sources
from swapformer.tasks.base import STAGES, AttentionInputs, SwapformerModule


class Seq2SeqModule(SwapformerModule):
    """Trains an encoder-decoder on ``(source, target)`` pairs; validation and test also decode greedily.

    Teacher forcing: the decoder reads ``tgt_ids[:, :-1]`` (``<s> y1 .. yn``) and predicts ``tgt_ids[:, 1:]``
    (``y1 .. yn </s>``); padding after ``</s>`` is ignored by the loss. With ``greedy_eval`` the val/test steps
    also decode greedily with the KV cache (:func:`swapformer.generation.decoding`) and log exact match (whole target equal) and
    corpus BLEU (sacreBLEU, ``13a`` tokenization) of the decoded text.

    Args:
        vocab_size ... init_std: see :class:`~swapformer.ModelConfig` (defaults: the paper's base model).
        lr ... meta_init: see :func:`~swapformer.training.options.training_options` (defaults: lr 5e-4, weight decay
            0.01, betas (0.9, 0.98), eps 1e-9).
        greedy_eval: decode greedily in validation and test.
        max_decode_len: most generated tokens; None = target length of the batch + 16.
        bos_id, eos_id: kept so that checkpoints written before 0.2 load; ignored. The model config is the one
            source of special ids: decoding starts from its ``decoder_start_token_id`` (``bos_token_id`` when
            None) and stops at its ``eos_token_id``. A value that differs from the config's is reported.

    Batches: ``src_ids, src_mask, tgt_ids, tgt_mask`` tensors and ``src_text, tgt_text`` lists.
    """

    kind = "seq2seq"

    training_defaults: ClassVar[dict[str, Any]] = dict(
        lr=5e-4, weight_decay=0.01, betas=(0.9, 0.98), eps=1e-9
    )

    def __init__(
        self,
        vocab_size: int,
        *,
        greedy_eval: bool = True,
        max_decode_len: int | None = None,
        bos_id: int | None = None,
        eos_id: int | None = None,
        **options: Any,
    ) -> None:
        SwapformerModule.__init__(self, locals())
        for name, given, ours in (
            ("bos_id", bos_id, ("decoder_start_token_id", self.config.start_token_id)),
            ("eos_id", eos_id, ("eos_token_id", self.config.eos_token_id)),
        ):
            if given is not None and given != ours[1]:
                rank_zero_warn(
                    f"{name}={given} is ignored: special ids come from the model config, whose {ours[0]} is "
                    f"{ours[1]}; set model {ours[0]} to change it"
                )
        for stage in STAGES[1:]:
            setattr(self, f"{stage}_exact", MeanMetric())
            setattr(self, f"{stage}_bleu", SacreBLEUScore(tokenize="13a"))
        # (source, prediction, reference) of the first validation batch, for SampleCallback
        self.val_examples: list[tuple[str, str, str]] = []

    @staticmethod
    def batch_size(batch: Mapping[str, Any]) -> int:
        return int(batch["src_ids"].size(0))

    @staticmethod
    def batch_tokens(batch: Mapping[str, Any]) -> int:
        return int(batch["src_ids"].numel() + batch["tgt_ids"].numel())

    @staticmethod
    def flop_shapes(batch: Mapping[str, Any]) -> tuple[tuple[int, ...], ...]:
        n, length = batch["tgt_ids"].shape
        return tuple(batch["src_ids"].shape), (n, length - 1)  # the decoder reads tgt_ids[:, :-1]

    @staticmethod
    def data_shapes(datamodule: Any) -> tuple[tuple[int, ...], ...] | None:
        if not all(hasattr(datamodule, a) for a in ("batch_size", "max_src_len", "max_tgt_len")):
            return None
        n = datamodule.batch_size
        return (n, datamodule.max_src_len), (n, datamodule.max_tgt_len - 1)

    def sample_lines(self, *, num_samples: int, **options: Any) -> list[str]:
        """``source -> prediction | reference`` for the first validation batch (greedy decoding)."""
        return [f"{src!r} -> {pred!r} | ref {ref!r}" for src, pred, ref in self.val_examples[:num_samples]]

    def attention_inputs(self, batch: Mapping[str, Tensor], max_tokens: int) -> AttentionInputs:
        """Cross-attention by default: each target token written (a row) against the source (columns)."""
        src, tgt = batch["src_ids"], batch["tgt_ids"]
        return AttentionInputs(
            run=lambda: self.model(src, tgt[:, :-1], batch.get("src_mask")),
            keys=src,
            queries=tgt[:, 1:],  # label each query with the token it writes
            layers="cross",
        )

    def forward(self, src_ids: Tensor, tgt_ids: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Teacher-forced logits ``(N, L, V)``."""
        return self.model(src_ids, tgt_ids, src_mask)

    def _step(self, stage: str, batch: dict[str, Any], batch_idx: int) -> Tensor:
        tgt = batch["tgt_ids"]
        # Right padding: the causal mask already keeps real positions from seeing the pads after them, so
        # the decoder needs no padding mask (and SDPA keeps its is_causal fast path).
        losses: dict[str, Tensor] = {}
        hidden = self.model(batch["src_ids"], tgt[:, :-1], batch["src_mask"], losses=losses, head=False)
        loss = self._shared_step(stage, hidden, tgt[:, 1:], losses)
        if stage != "train" and self.hparams.greedy_eval:
            self._decode_metrics(stage, batch, keep_examples=stage == "val" and batch_idx == 0)
        return loss

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[str] | list[list[int]]:
        """Greedy translations of ``src_ids``: text when a tokenizer is known, else id lists."""
        ids = self.translate_ids(batch["src_ids"], batch.get("src_mask"))
        return [self.tokenizer.decode(x) for x in ids] if self.tokenizer is not None else ids

    def translate_ids(
        self, src_ids: Tensor, src_mask: Tensor | None = None, max_len: int | None = None, **kwargs: Any
    ) -> list[list[int]]:
        """Decoded ids, one list per source (eos and what follows removed); greedy unless ``kwargs`` (arguments
        of :func:`~swapformer.generation.generate`) say otherwise. A model with generation defaults
        (``model.generation_config``: an imported checkpoint's) decodes with them unless ``max_len`` or
        ``kwargs`` say otherwise."""
        defaults = self.model.generation_config
        if defaults is None or max_len is not None:
            kwargs = {
                "max_new_tokens": max_len
                or self.hparams.max_decode_len
                or min(self.config.max_seq_len - 1, src_ids.size(1) + 16),
                **kwargs,
            }
        if defaults is None:
            kwargs = {
                "eos_token_id": self.config.eos_token_id,
                "pad_token_id": max(self.pad_id, 0),
                "decoder_start_token_id": self.config.start_token_id,
                **kwargs,
            }
        out = self.model.generate(src_ids, src_mask, **kwargs)[:, 1:]  # without the start id
        eos = kwargs.get("eos_token_id", defaults and defaults.eos_token_id) or self.config.eos_token_id
        return [strip_after_eos(row, eos) for row in out.tolist()]

    def translate(self, sources: list[str], max_len: int | None = None, **kwargs: Any) -> list[str]:
        """Translations of ``sources`` (needs the tokenizer: datamodule or checkpoint); see :meth:`translate_ids`."""
        if self.tokenizer is None:
            raise ValueError(
                "no tokenizer: load the module from a checkpoint, or train it with a datamodule first"
            )
        src, mask = encode_sources(self.tokenizer, sources, pad_id=max(self.pad_id, 0))
        ids = self.translate_ids(src.to(self.device), mask.to(self.device), max_len, **kwargs)
        return [self.tokenizer.decode(x) for x in ids]

    def _decode_metrics(self, stage: str, batch: dict[str, Any], keep_examples: bool = False) -> None:
        tgt = batch["tgt_ids"]
        max_len = self.hparams.max_decode_len or min(self.config.max_seq_len - 1, tgt.size(1) + 16)
        predictions = self.translate_ids(batch["src_ids"], batch["src_mask"], max_len)
        references = [strip_after_eos(row, self.config.eos_token_id) for row in tgt[:, 1:].tolist()]
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


def strip_after_eos(ids: list[int], eos_id: int | list[int] | None) -> list[int]:
    """Tokens before the first ``eos_id`` (or any of a list of them; all of the tokens when it is None)."""
    ends = {eos_id} if isinstance(eos_id, int) else set(eos_id or ())
    return next((ids[:i] for i, token in enumerate(ids) if token in ends), ids)
