"""What both LightningModules share: loss, metrics, AdamW groups, schedules, tokenizer in the checkpoint."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from swapformer.config import ModelConfig
from swapformer.errors import ConfigError
from swapformer.training import distributed
from swapformer.training.optim import SCHEDULES, fused_adamw_supported, param_groups, schedule_fn

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
        if hp.get("meta_init"):  # parameters allocated later, in configure_model (sharded first under FSDP2)
            with distributed.parameters_on_meta():
                self.model = type(self).builder(self.config)
            distributed.check_meta_initializable(self.model)
        else:
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
        if stage == "train":  # logged once per optimizer step, in on_train_batch_end
            mean_loss.update(loss.detach())
            ppl.update(nll, weight=count)
            acc.update(preds, labels)
        else:
            mean_loss.update(loss.detach(), weight=count)
            ppl.update(nll, weight=count)
            acc.update(preds, labels)
            self.log(f"{stage}/loss", mean_loss, prog_bar=True, batch_size=batch_size)
            self.log(f"{stage}/ppl", ppl, batch_size=batch_size)
            self.log(f"{stage}/acc", acc, batch_size=batch_size)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Log ``train/loss``, ``train/ppl`` and ``train/acc`` once per optimizer step, over all its
        micro-batches (gradient accumulation) and all processes: the figures of the global batch, the same
        whatever the device count. ``train/loss`` is the mean of the micro-batch losses (what the gradient
        is taken of); ppl and acc are token-weighted."""
        trainer = self.trainer
        if (batch_idx + 1) % trainer.accumulate_grad_batches and not trainer.is_last_batch:
            return
        # compute() gathers across processes (a host sync on GPUs): only on the steps the loggers write
        every = trainer.log_every_n_steps
        log_now = trainer.fast_dev_run or (every and trainer.global_step % every == 0)
        for name in ("loss", "ppl", "acc"):
            metric = getattr(self, f"train_{name}")
            if log_now:
                self.log(f"train/{name}", metric.compute(), prog_bar=name == "loss")
            metric.reset()

    def on_train_start(self) -> None:
        # Lightning drops the training loader's checkpointed position when the loaders were built before the
        # checkpoint was restored, which `estimated_stepping_batches` in configure_optimizers does (Lightning
        # issue #20550, open in 2.6.6). Load it now: after the restore, before the first batch is drawn.
        loop = self.trainer.fit_loop
        if getattr(loop, "_combined_loader_states_to_load", None):
            loop._load_combined_loader_states()

    def on_train_epoch_start(self) -> None:  # before the epoch's data iterator is made (and after reloads)
        distributed.keep_sampler_order(self.trainer)

    # ---- scale out -------------------------------------------------------------------------------------
    def configure_model(self) -> None:
        """Apply the scale-out options once, and allocate meta-device parameters.

        In torchtitan's order: activation checkpointing per block, ``torch.compile`` per block, FSDP2
        ``fully_shard`` per block then the root (under ``ModelParallelStrategy`` only), and last the
        allocation of meta-device parameters (only the local shards under FSDP2). DDP and FSDP1 wrap the
        model themselves after this hook. Lightning calls it before every fit/validate/test, and
        ``load_from_checkpoint`` calls it without a trainer: then only the allocation happens, and the training
        options wait for the trainer. See :mod:`swapformer.training.distributed`.
        """
        strategy = self._trainer.strategy if self._trainer is not None else None
        if strategy is not None and not getattr(self, "_model_configured", False):
            self._model_configured = True
            hp = self.hparams
            if hp.get("activation_checkpointing"):
                if isinstance(strategy, FSDPStrategy) and strategy._activation_checkpointing_kwargs:
                    raise ConfigError(
                        "activation checkpointing is set twice: the model's activation_checkpointing: true and "
                        "the FSDP strategy's activation_checkpointing; keep one."
                    )
                distributed.checkpoint_blocks(self.model)
            if hp.get("compile"):
                distributed.compile_blocks(self.model, hp.compile if isinstance(hp.compile, dict) else None)
            if isinstance(strategy, ModelParallelStrategy):
                distributed.shard_fsdp2(self.model, self.device_mesh["data_parallel"])
        device = strategy.root_device if strategy is not None else torch.device("cpu")
        distributed.materialize(self.model, device, self._init_weights)

    def _decodes(self, stage: str) -> bool:
        """Whether this stage runs autoregressive decoding (greedy_eval, SampleCallback, predict)."""
        if stage == "predict" or (stage in ("validate", "test") and self.hparams.get("greedy_eval")):
            return True
        from swapformer.training.callbacks import SampleCallback

        return stage == "validate" and any(isinstance(c, SampleCallback) for c in self.trainer.callbacks)

    def _gather_if_decoding(self, stage: str) -> None:
        # FSDP2 only: decoding cannot run on sharded parameters (see distributed.gather_for_decoding)
        self._gathered = self._decodes(stage) and distributed.gather_for_decoding(self.model)

    def _release_gathered(self) -> None:
        if getattr(self, "_gathered", False):
            distributed.release_gathered(self.model)
            self._gathered = False

    def on_validation_start(self) -> None:
        self._gather_if_decoding("validate")

    def on_validation_end(self) -> None:
        # runs after the callbacks' on_validation_end, where SampleCallback prints
        self._release_gathered()

    def on_test_start(self) -> None:
        self._gather_if_decoding("test")

    def on_test_end(self) -> None:
        self._release_gathered()

    def on_predict_start(self) -> None:
        self._gather_if_decoding("predict")

    def on_predict_end(self) -> None:
        self._release_gathered()

    def _init_weights(self, model: torch.nn.Module) -> None:
        from swapformer.models.builders import init_weights

        init_weights(model, std=self.config.init_std, num_layers=len(distributed.blocks(model)))

    def configure_gradient_clipping(
        self,
        optimizer: Any,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        # FSDP1's precision plugin refuses norm clipping (it has no handle on the root module); the wrapped
        # model has the sharding-aware clip_grad_norm_ (Lightning's documented workaround).
        strategy = self.trainer.strategy
        if (
            gradient_clip_val
            and gradient_clip_algorithm in (None, "norm")
            and isinstance(strategy, FSDPStrategy)
        ):
            self.trainer.model.clip_grad_norm_(gradient_clip_val)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # ---- optimizer -----------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        hp = self.hparams
        groups = param_groups(self.model, weight_decay=hp.weight_decay)
        params = [p for g in groups for p in g["params"]]
        # One fused kernel for the whole step where torch has it. Lightning's AMP plugin (16-mixed, bf16-mixed)
        # refuses gradient clipping with optimizers that unscale internally, as fused ones do: multi-tensor there.
        amp = self._trainer is not None and isinstance(self.trainer.precision_plugin, MixedPrecision)
        fused = fused_adamw_supported(params) and not amp
        optimizer = torch.optim.AdamW(
            [{k: v for k, v in g.items() if k != "names"} for g in groups],
            lr=hp.lr,
            betas=tuple(hp.betas),
            eps=hp.eps,
            fused=fused or None,
            foreach=None if fused else True,
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
        tokens = self.hparams.get("global_batch_tokens")
        if stage == "fit" and tokens is not None and self._trainer is not None:
            summary = distributed.apply_global_batch(self.trainer, global_batch_tokens=tokens)
            rank_zero_info(
                "global batch: {tokens} tokens = {sequences} sequences of {seq_len} = {batch_size_per_process} "
                "per process x {processes} processes x {accumulate_grad_batches} accumulated micro-batches".format(
                    **summary
                )
            )
            for logger in self.trainer.loggers:
                logger.log_hyperparams({"global_batch": summary})

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
