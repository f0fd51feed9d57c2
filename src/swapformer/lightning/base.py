"""What both LightningModules share: loss, metrics, AdamW groups, schedules, tokenizer in the checkpoint."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from swapformer.config import ModelConfig
from swapformer.lightning.optim import SCHEDULES, param_groups, schedule_fn

STAGES = ("train", "val", "test")
MODEL_KEYS = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.init)


class PerplexityFromNLL(MeanMetric):
    """exp(token-weighted mean negative log-likelihood); fed the NLL the loss already computed, so perplexity
    costs no second softmax over the vocabulary (torchmetrics' ``Perplexity`` recomputes it)."""

    def compute(self) -> Tensor:
        return super().compute().exp()


class SwapformerModule(pl.LightningModule):
    """Base class of :class:`CausalLMModule` and :class:`Seq2SeqModule` (not used directly).

    Subclasses call :meth:`_setup` from ``__init__`` after ``save_hyperparameters()``, and implement
    ``build_model`` and ``_forward_loss``.
    """

    builder: ClassVar[Any]

    def _setup(self, *, label_smoothing: float, schedule: str) -> None:
        hp = self.hparams
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule='{schedule}' is unknown; choose one of {', '.join(SCHEDULES)}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 1)")
        self.config = ModelConfig.from_dict({k: hp[k] for k in MODEL_KEYS if k in hp})
        self.model = type(self).builder(self.config)
        self.pad_id = self.config.pad_token_id if self.config.pad_token_id is not None else -100
        self.tokenizer = None  # set from the datamodule in setup() or from the checkpoint on load
        for stage in STAGES:  # one metric object per stage: states never mix between stages
            setattr(self, f"{stage}_loss", MeanMetric())
            setattr(self, f"{stage}_ppl", PerplexityFromNLL())
            setattr(
                self,
                f"{stage}_acc",
                MulticlassAccuracy(
                    num_classes=self.config.vocab_size,
                    average="micro",
                    ignore_index=self.pad_id,
                    validate_args=False,
                ),
            )

    # ---- loss ----------------------------------------------------------------------------------------
    def token_loss(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, int]:
        """Cross-entropy over non-pad labels (with label smoothing) and the plain NLL (for perplexity).

        Shape:
            logits ``(N, L, V)``; labels ``(N, L)``. Returns (loss, nll, number of counted tokens).
        """
        flat_logits = logits.reshape(-1, logits.size(-1))
        flat_labels = labels.reshape(-1)
        smoothing = self.hparams.label_smoothing
        loss = F.cross_entropy(flat_logits, flat_labels, ignore_index=self.pad_id, label_smoothing=smoothing)
        if smoothing:
            with torch.no_grad():
                nll = F.cross_entropy(flat_logits, flat_labels, ignore_index=self.pad_id)
        else:
            nll = loss.detach()
        return loss, nll, int((flat_labels != self.pad_id).sum())

    def _shared_step(self, stage: str, logits: Tensor, labels: Tensor) -> Tensor:
        loss, nll, count = self.token_loss(logits, labels)
        batch_size = labels.size(0)
        acc, ppl, mean_loss = (getattr(self, f"{stage}_{m}") for m in ("acc", "ppl", "loss"))
        preds = logits.detach().argmax(dim=-1)
        if stage == "train":
            self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch_size)
            ppl(nll, weight=count)
            acc(preds, labels)
            self.log("train/ppl", ppl, on_step=True, on_epoch=False, batch_size=batch_size)
            self.log("train/acc", acc, on_step=True, on_epoch=False, batch_size=batch_size)
        else:
            mean_loss.update(loss.detach(), weight=count)
            ppl.update(nll, weight=count)
            acc.update(preds, labels)
            self.log(f"{stage}/loss", mean_loss, prog_bar=True, batch_size=batch_size)
            self.log(f"{stage}/ppl", ppl, batch_size=batch_size)
            self.log(f"{stage}/acc", acc, batch_size=batch_size)
        return loss

    # ---- optimizer -----------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        hp = self.hparams
        groups = param_groups(self.model, weight_decay=hp.weight_decay)
        optimizer = torch.optim.AdamW(
            [{k: v for k, v in g.items() if k != "names"} for g in groups],
            lr=hp.lr,
            betas=tuple(hp.betas),
            eps=hp.eps,
            fused=False,
        )
        total = hp.total_steps
        if total is None:
            total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 1
        fn = schedule_fn(
            hp.schedule,
            warmup_steps=hp.warmup_steps,
            total_steps=total,
            d_model=self.config.d_model,
            min_lr_ratio=hp.min_lr_ratio,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    # ---- tokenizer travels with the checkpoint --------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        tokenizer = getattr(datamodule, "tokenizer", None)
        if tokenizer is not None and self.tokenizer is None:
            self.tokenizer = tokenizer

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is not None:
            checkpoint["tokenizer"] = self.tokenizer.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("tokenizer")
        if state is not None:
            from swapformer.data.tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_dict(state)

    @classmethod
    def load(cls, checkpoint_path: str | os.PathLike, *, map_location: Any = "cpu") -> SwapformerModule:
        """Rebuild a trained module (model, hyperparameters, tokenizer) from a checkpoint.

        The file is read with ``torch.load(weights_only=True)``: tensors and plain Python values only, so a
        checkpoint that would run code on load (a pickled object with ``__reduce__``) is refused with an
        ``UnpicklingError`` instead of being executed.
        """
        module = cls.load_from_checkpoint(checkpoint_path, map_location=map_location, weights_only=True)
        module.eval()
        return module

    def num_parameters(self) -> int:
        """Trainable parameters, a tied embedding counted once."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)
