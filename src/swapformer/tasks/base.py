"""What both LightningModules share: loss, metrics, AdamW groups, schedules, tokenizer in the checkpoint."""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import typing
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from functools import partial, partialmethod
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from swapformer.compat import document_mask_problem, training_problem
from swapformer.components.auxiliary import after_optimizer_step, keeps_expert_loads
from swapformer.config import COMPONENT_KEYS, MODEL_KEYS, ModelConfig
from swapformer.data.base_datamodule import load_tokenizer
from swapformer.data.tokenizers import Tokenizer
from swapformer.errors import CheckpointError, ConfigError, did_you_mean
from swapformer.interop import load as load_model
from swapformer.models import init_weights
from swapformer.nn.lm_loss import LMLoss, check_loss_device, chunk_tokens, lm_loss
from swapformer.registry import Registry, kind
from swapformer.tasks.flops import Shapes, TrainingFlops
from swapformer.training import distributed
from swapformer.training.callbacks import SampleCallback
from swapformer.training.checkpoint_io import use_atomic_checkpoints
from swapformer.training.checkpoints import (
    GENERATION_KEY,
    checkpoint_generation_defaults,
    load_weights,
    read_checkpoint,
)
from swapformer.training.compiling import CompileReport, compile_blocker
from swapformer.training.expert_load import ExpertLoadLogger
from swapformer.training.fit_end import SaveLastAtEnd, ValidateAtEnd
from swapformer.training.guards import nonfinite, nonfinite_loss_error
from swapformer.training.optim import fused_adamw_supported, mixes_dtensors, param_groups, schedule_fn
from swapformer.training.options import TRAINING_KEYS, training_options
from swapformer.training.progress import ProgressBar
from swapformer.training.resume import carry_epoch_position
from swapformer.training.signals import SaveOnSignal

STAGES = ("train", "val", "test")
TASK_MODULES = Registry("task module", "the LightningModule that trains a model kind", order="registration")
"""The task module of each model kind: a :class:`SwapformerModule` subclass that declares its own ``kind`` and
``__init__`` is registered under that kind when the class is made (a second one for a kind is an error)."""
ComponentName = str | dict[str, Any]
"""A registry name, or ``{name: ..., **options}``; checked by the registry, not by the type."""
_CHECKPOINT_MODEL: ContextVar[dict[str, Any] | None] = ContextVar("checkpoint_model", default=None)
"""The hyperparameters of the checkpoint whose model is being built (:func:`building_checkpoint_model`)."""


@contextlib.contextmanager
def building_checkpoint_model(hyperparameters: dict[str, Any] | None) -> Iterator[None]:
    """Build task modules for the model a checkpoint holds: its weights come from the checkpoint, so ``init_from``
    is not read (the folder may have moved or changed since), and its vocabulary sizes are the checkpoint's (which
    may exceed the tokenizer's: an imported model's). ``SwapformerModule.load`` and the CLI's
    ``--ckpt_path`` (resume, validate, test, predict) build inside it; None: an ordinary build."""
    token = _CHECKPOINT_MODEL.set(hyperparameters)
    try:
        yield
    finally:
        _CHECKPOINT_MODEL.reset(token)


class PerplexityFromNLL(MeanMetric):
    """exp(token-weighted mean negative log-likelihood); fed the NLL the loss already computed, so perplexity
    costs no second softmax over the vocabulary (torchmetrics' ``Perplexity`` recomputes it)."""

    def compute(self) -> Tensor:
        return super().compute().exp()


class SwapformerModule(pl.LightningModule):
    """Base class of the task modules (:class:`CausalLMModule`, :class:`Seq2SeqModule`, :class:`MaskedLMModule`).

    A task module sets ``kind`` (and ``training_defaults`` where its defaults differ from
    :func:`training_options`'), declares ``__init__(self, vocab_size, *, <its own options>, **options)`` and
    passes ``locals()`` on to this class. Its signature then lists every :class:`ModelConfig` field with the kind's
    defaults and every training option (the CLI and ``--help`` see them all; a field added to ModelConfig reaches
    every module), and the hyperparameters saved are the whole resolved config plus the options.
    """

    kind: ClassVar[str]
    training_defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in vars(cls) and "kind" in vars(cls):
            cls.__init__.__signature__ = _full_signature(cls)
            TASK_MODULES.add(cls.kind, cls)

    @staticmethod
    def for_kind(name: str) -> type[SwapformerModule]:
        """The module class that trains models of kind ``name`` (a checkpoint's ``kind`` hyperparameter).

        Raises:
            ConfigError: no module trains that kind; the message lists the kinds that have one.
        """
        return TASK_MODULES[name]

    def __init__(self, arguments: dict[str, Any]) -> None:
        # Subclasses call SwapformerModule.__init__(self, locals()) rather than super().__init__(): a method
        # that names super() gets a __class__ cell, and Lightning would then read the subclass's frame against
        # its generated signature.
        super().__init__()
        options = arguments.pop("options")
        own = {k: v for k, v in arguments.items() if k not in ("self", "__class__", "vocab_size")}
        unknown = [k for k in options if k not in MODEL_KEYS and k not in TRAINING_KEYS]
        if unknown:
            keys = [*MODEL_KEYS, *TRAINING_KEYS, *own]
            raise ConfigError([f"unknown argument '{k}'{did_you_mean(k, keys)}" for k in unknown])
        if options.get("kind", self.kind) != self.kind:
            raise ConfigError(
                f"kind={options['kind']!r} does not match {type(self).__name__}, which trains {self.kind} models"
            )
        training = training_options(
            **{**self.training_defaults, **{k: v for k, v in options.items() if k in TRAINING_KEYS}}
        )
        model = {k: v for k, v in options.items() if k not in TRAINING_KEYS}
        model.update(vocab_size=arguments["vocab_size"], kind=self.kind)
        source, checkpoint = None, _CHECKPOINT_MODEL.get()
        if checkpoint is not None:  # init_from mattered when that run started; the checkpoint has the weights
            model.update(_checkpoint_vocabulary(checkpoint, model))
        elif training["init_from"] is not None:
            if training["meta_init"]:
                raise ConfigError("init_from loads whole weights; it does not combine with meta_init")
            source = load_weights(training["init_from"])
            model.update(_source_vocabulary(source[0], model, training["init_from"]))
        self.config = ModelConfig.from_dict(model)
        # _class_path, as LightningCLI writes it: `swapformer predict --ckpt_path` reads the model back from it;
        # tuples as lists, so the hyperparameters stay plain YAML
        class_path = f"{type(self).__module__}.{type(self).__qualname__}"
        plain = {k: list(v) if isinstance(v, tuple) else v for k, v in {**training, **own}.items()}
        self.save_hyperparameters({"_class_path": class_path, **self.config.to_dict(), **plain})
        # meta_init: parameters allocated in configure_model, after FSDP2 has sharded them
        with distributed.parameters_on_meta() if training["meta_init"] else contextlib.nullcontext():
            self.model = kind(self.kind).build(self.config)
        if training["meta_init"]:
            distributed.check_meta_initializable(self.model)
        if source is not None:
            _load_weights(self.model, source[1], training["init_from"])
            if source[2] is not None:  # an imported model's generate() settings go on with its weights
                self.model.generation_config = source[2]
        self.pad_id = self.config.pad_token_id if self.config.pad_token_id is not None else -100
        self.tokenizer = None  # set from the datamodule in setup() or from the checkpoint on load
        vocab_size = self.config.vocab_size
        for stage in STAGES:  # one metric object per stage: states never mix between stages
            setattr(self, f"{stage}_loss", MeanMetric())
            setattr(self, f"{stage}_ppl", PerplexityFromNLL())
            accuracy = MulticlassAccuracy(
                num_classes=vocab_size, average="micro", ignore_index=self.pad_id, validate_args=False
            )
            setattr(self, f"{stage}_acc", accuracy)

    # ---- what generic code asks a task ----------------------------------------------------------------
    @staticmethod
    def batch_size(batch: Mapping[str, Any]) -> int:
        """Examples in ``batch`` (TokenThroughput)."""
        return int(batch["input_ids"].size(0))

    @staticmethod
    def batch_tokens(batch: Mapping[str, Any]) -> int:
        """Tokens a step processes: every input position, padding included, as the hardware sees it."""
        return int(batch["input_ids"].numel())

    def sample_lines(self, **options: Any) -> list[str]:
        """Lines showing what the model does now (:class:`~swapformer.training.SampleCallback`); none by default."""
        return []

    def attention_inputs(self, batch: Mapping[str, Tensor], max_tokens: int) -> AttentionInputs:
        """How :class:`~swapformer.training.AttentionMapLogger` runs the model on ``batch`` and labels its maps."""
        ids, mask = batch["input_ids"][:, :max_tokens], batch.get("attention_mask")
        if mask is not None:
            mask = mask[:, :max_tokens]
        return AttentionInputs(run=lambda: self.model(ids, mask), keys=ids, queries=ids, layers="self")

    def flop_shapes(self, batch: Mapping[str, Any]) -> Shapes:
        """The shapes of the id tensors the model's forward sees for ``batch`` (FLOPs are counted for them)."""
        return (tuple(batch["input_ids"].shape),)

    @staticmethod
    def flop_forward(model: torch.nn.Module, inputs: list[Tensor]) -> Tensor:
        """The training forward of ``model`` on id tensors of :meth:`flop_shapes`' shapes."""
        return model(*inputs)

    @staticmethod
    def data_shapes(datamodule: Any) -> Shapes | None:
        """:meth:`flop_shapes` of a full training batch, from the data module's settings (None: unknown)."""
        if not all(hasattr(datamodule, a) for a in ("batch_size", "seq_len")):
            return None
        return ((datamodule.batch_size, datamodule.seq_len),)

    @property
    def flops_per_batch(self) -> int | None:
        """FLOPs of forward and backward of the last training batch's shape (Lightning's ``ThroughputMonitor``
        reads this after each batch); measured on the meta device (see :mod:`swapformer.tasks.flops`). None before
        the first batch, or where a component cannot run on the meta device."""
        shapes = getattr(self, "_flop_shapes", None)
        if shapes is None or getattr(self, "_flops_failed", False):
            return None
        if getattr(self, "_flop_counter", None) is None:
            self._flop_counter = TrainingFlops(self.config, self.flop_forward)
        try:
            return self._flop_counter(shapes)
        except (NotImplementedError, RuntimeError) as err:  # a plug-in kernel without a meta implementation
            rank_zero_info(f"flops_per_batch: cannot measure on the meta device ({err}); FLOPs not logged")
            self._flops_failed = True
            return None

    # ---- steps: each task's _step(stage, batch, batch_idx) makes the logits and returns the loss ---------
    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor | None:
        self._flop_shapes = self.flop_shapes(batch)
        loss = self._step("train", batch, batch_idx)
        action = self.hparams.get("nonfinite_loss", "stop")
        value = None if action == "ignore" else nonfinite(loss, self._trainer)
        if value is None:
            return loss
        if action == "skip":  # None: Lightning skips backward and the optimizer step (all processes agreed)
            self._skipped_batches = getattr(self, "_skipped_batches", 0) + 1
            return None
        raise nonfinite_loss_error(value, self.trainer, lr=self.hparams.lr)

    def on_train_end(self) -> None:
        skipped = getattr(self, "_skipped_batches", 0)
        if skipped:
            rank_zero_info(f"nonfinite_loss: skip: {skipped} batches with a non-finite loss were skipped")

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._step("val", batch, batch_idx)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._step("test", batch, batch_idx)

    # ---- loss ----------------------------------------------------------------------------------------
    def lm_loss(self, hidden: Tensor, labels: Tensor, *, predictions: bool = False) -> LMLoss:
        """The LM head and the cross-entropy over non-pad labels (label smoothing, the model's logit soft-cap),
        a chunk of ``loss_chunk`` tokens at a time, or with the whole logits where ``loss_chunk`` is 0; the pad
        labels' hidden states never reach the head. See :func:`swapformer.nn.lm_loss.lm_loss`.

        Shape:
            hidden ``(N, L, D)`` (the model's output with ``head=False``); labels ``(N, L)``.
        """
        hp, head = self.hparams, self.model.lm_head
        return lm_loss(
            hidden,
            labels,
            weight=head.weight,
            bias=head.bias,
            softcap=self.model.logit_softcap,
            ignore_index=self.pad_id,
            label_smoothing=hp.label_smoothing,
            chunk=chunk_tokens(hp.get("loss_chunk"), self.config.vocab_size),
            impl=hp.get("loss_impl", "torch"),
            predictions=predictions,
        )

    def _shared_step(
        self, stage: str, hidden: Tensor, labels: Tensor, losses: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """The step's loss: the token cross-entropy of the LM head on ``hidden`` (:meth:`lm_loss`) plus, in
        training, the auxiliary losses the model's members added (``losses``, by name:
        :mod:`swapformer.components.auxiliary`). Logs the metrics, and each auxiliary loss as ``{stage}/{name}``;
        ``train/loss`` is the total (what the gradient is taken of), ``val/loss`` the cross-entropy alone,
        comparable between models with and without such members."""
        logged = (
            stage != "train"
            or self._trainer is None
            or self._logs_train_metrics(self.trainer.global_step + 1)
        )
        loss, nll, count, predictions, counted = self.lm_loss(hidden, labels, predictions=logged)
        if losses:
            clash = sorted(set(losses) & {"loss", "ppl", "acc", "bleu", "exact"})
            if clash:
                raise ValueError(
                    f"a member adds an auxiliary loss named {clash[0]!r}, which is a metric's name; rename it "
                    "in the member's add_loss"
                )
            if stage == "train":
                loss = loss + sum(losses.values())
            if logged and self._trainer is not None:
                for name, value in losses.items():
                    self.log(
                        f"{stage}/{name}",
                        value.detach(),
                        batch_size=labels.size(0),
                        sync_dist=stage != "train",
                    )
        if not logged:
            return loss  # the metrics of a step no logger writes would be reset unread: skip their updates
        acc, ppl, mean_loss = (getattr(self, f"{stage}_{m}") for m in ("acc", "ppl", "loss"))
        # train/loss: the mean of the micro-batch losses (what the gradient is taken of); else token-weighted
        mean_loss.update(loss.detach(), weight=1.0 if stage == "train" else count)
        ppl.update(nll, weight=count)
        acc.update(predictions, counted)
        if stage != "train":  # train metrics are logged once per optimizer step, in on_train_batch_end
            batch_size = labels.size(0)
            self.log(f"{stage}/loss", mean_loss, prog_bar=True, batch_size=batch_size)
            self.log(f"{stage}/ppl", ppl, batch_size=batch_size)
            self.log(f"{stage}/acc", acc, batch_size=batch_size)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Log ``train/loss``, ``train/ppl`` and ``train/acc`` once per optimizer step, over all its
        micro-batches (gradient accumulation) and all processes: the figures of the global batch, the same
        whatever the device count. ``train/loss`` is the mean of the micro-batch losses (what the gradient
        is taken of); ppl and acc are token-weighted. Then the members' ``after_optimizer_step`` runs (an MoE's
        loss-free balancing) and the statistics they report are logged (``train/moe_imbalance``)."""
        trainer = self.trainer
        if (batch_idx + 1) % trainer.accumulate_grad_batches and not trainer.is_last_batch:
            return
        # compute() gathers across processes (a host sync on GPUs): only on the steps the loggers write
        log_now = self._logs_train_metrics(trainer.global_step)
        # members' state that an optimizer step ends (an MoE's loads, summed over processes, move its balance bias)
        statistics = after_optimizer_step(self.model, partial(trainer.strategy.reduce, reduce_op="sum"))
        for name, value in statistics.items() if log_now else ():
            self.log(f"train/{name}", value)
        for name in ("loss", "ppl", "acc"):
            metric = getattr(self, f"train_{name}")
            if not metric.update_count:  # a step not logged: _shared_step left the metrics alone
                continue
            if log_now:
                self.log(f"train/{name}", metric.compute(), prog_bar=name == "loss")
            metric.reset()

    def _logs_train_metrics(self, step: int) -> bool:
        """Whether ``train/*`` is logged when the optimizer step count reaches ``step``.

        The training step asks with ``global_step + 1`` (the count its optimizer step will reach), so the metric
        updates, a few small kernels and an argmax over the vocabulary per micro-batch, run only for the steps
        that are logged; the figures logged are the same as with an update on every step."""
        trainer = self.trainer
        every = trainer.log_every_n_steps
        return bool(trainer.fast_dev_run or (every and step % every == 0))

    def on_train_start(self) -> None:
        # Lightning drops the training loader's checkpointed position when the loaders were built before the
        # checkpoint was restored, which `estimated_stepping_batches` in configure_optimizers does (Lightning
        # issue #20550, open in 2.6.6). Load it now: after the restore, before the first batch is drawn.
        self._skipped_batches = 0  # nonfinite_loss: skip counts per fit
        loop = self.trainer.fit_loop
        if getattr(loop, "_combined_loader_states_to_load", None):
            loop._load_combined_loader_states()
        carry_epoch_position(self.trainer)  # resumed on another number of processes
        # a run resumed in the middle of an epoch skips on_train_epoch_start: the sampler order is kept here too,
        # before the resumed epoch's first batch is drawn (else the rest of the epoch is read in another order)
        distributed.keep_sampler_order(self.trainer)

    def on_train_epoch_start(self) -> None:  # before the epoch's data iterator is made (and after reloads)
        distributed.keep_sampler_order(self.trainer)

    def configure_callbacks(self) -> list[pl.Callback]:
        """Add :class:`~swapformer.training.signals.SaveOnSignal` (a checkpoint on SIGTERM / SIGINT) and
        :class:`~swapformer.training.fit_end.SaveLastAtEnd` (``last.ckpt`` holds the final step),
        :class:`~swapformer.training.fit_end.ValidateAtEnd` (validation and samples at the final step),
        :class:`~swapformer.training.compiling.CompileReport` with ``compile``,
        :class:`~swapformer.training.ExpertLoadLogger` to a model with an MoE layer (unless ``expert_load_every``
        is 0), and put
        :class:`~swapformer.training.ProgressBar` (plain lines in log files) in place of Lightning's default rich
        bar; a bar the recipe chose, or none, is left alone."""
        # SIGTERM / SIGINT save last.ckpt and end the run; a run that ends is validated at its final step, which
        # last.ckpt holds
        callbacks: list[pl.Callback] = [SaveOnSignal(), ValidateAtEnd(), SaveLastAtEnd()]
        if self.hparams.get("compile"):  # the compile time once, and each member that breaks the graph
            callbacks.append(CompileReport())
        if type(self.trainer.progress_bar_callback) is RichProgressBar:
            callbacks.append(ProgressBar())
        # a picture of each MoE layer's expert load; one the recipe added itself is left alone
        every = self.hparams.get("expert_load_every")
        added = any(isinstance(c, ExpertLoadLogger) for c in self.trainer.callbacks)
        logs = self.trainer.loggers and not self.trainer.fast_dev_run  # fast_dev_run's logger writes nothing
        if every != 0 and logs and not added and keeps_expert_loads(self.model):
            callbacks.append(ExpertLoadLogger(every_n_steps=every))
        return callbacks

    # ---- scale out -------------------------------------------------------------------------------------
    def configure_model(self) -> None:
        """Apply the scale-out options once, and allocate meta-device parameters.

        In torchtitan's order: the tensor-parallel split (``TensorParallelStrategy``), activation checkpointing
        per block, ``torch.compile`` per block, FSDP2 ``fully_shard`` per block then the root (under
        ``ModelParallelStrategy`` only), and last the allocation of meta-device parameters (only the local
        shards under FSDP2). DDP and FSDP1 wrap the
        model themselves after this hook. Lightning calls it before every fit/validate/test, and
        ``load_from_checkpoint`` calls it without a trainer: then only the allocation happens, and the training
        options wait for the trainer. See :mod:`swapformer.training.distributed`.
        """
        strategy = self._trainer.strategy if self._trainer is not None else None
        if strategy is not None and not getattr(self, "_model_configured", False):
            self._model_configured = True
            hp = self.hparams
            tensor_parallel = distributed.tensor_parallel_size(self.trainer) > 1
            if tensor_parallel:  # first, on the plain modules (torchtitan's order: TP, AC, compile, FSDP)
                # replicated weights must be equal on every rank, and materialize draws each rank's apart
                if hp.get("meta_init"):
                    raise ConfigError(
                        "meta_init: true with tensor parallelism: the whole (replicated) weights would differ "
                        "between ranks; set meta_init: false"
                    )
                distributed.shard_tensor_parallel(self.model, self.device_mesh["tensor_parallel"])
            if hp.get("activation_checkpointing"):
                if isinstance(strategy, FSDPStrategy) and strategy._activation_checkpointing_kwargs:
                    raise ConfigError(
                        "activation checkpointing is set twice: the model's activation_checkpointing: true and "
                        "the FSDP strategy's activation_checkpointing; keep one."
                    )
                distributed.checkpoint_blocks(self.model)
            if hp.get("compile"):
                problem = compile_blocker(hp.compile, strategy.root_device.type)
                if problem is not None:  # a Trainer built in Python: the CLI refused it before reading data
                    raise ConfigError(f"model.init_args.{problem}")
                distributed.compile_blocks(self.model, hp.compile if isinstance(hp.compile, dict) else None)
            # FSDP2 under FSDP2Strategy, and across data parallel on a 2-D mesh (sharding the split weights too)
            sharded = not tensor_parallel or self.device_mesh["data_parallel"].size() > 1
            if isinstance(strategy, ModelParallelStrategy) and sharded:
                distributed.shard_fsdp2(self.model, self.device_mesh["data_parallel"])
        device = strategy.root_device if strategy is not None else torch.device("cpu")
        distributed.materialize(self.model, device, self._init_weights)

    def _decodes(self, stage: str) -> bool:
        """Whether this stage runs autoregressive decoding (greedy_eval, SampleCallback, predict)."""
        if stage == "predict" or (stage in ("validate", "test") and self.hparams.get("greedy_eval")):
            return True
        return stage == "validate" and any(isinstance(c, SampleCallback) for c in self.trainer.callbacks)

    def _gather_if_decoding(self, stage: str) -> None:
        # FSDP2 only: decoding cannot run on sharded parameters (see distributed.gather_for_decoding)
        self._gathered = self._decodes(stage) and distributed.gather_for_decoding(self.model)

    def _release_gathered(self) -> None:
        if getattr(self, "_gathered", False):
            distributed.release_gathered(self.model)
            self._gathered = False

    on_validation_start = partialmethod(_gather_if_decoding, "validate")
    on_test_start = partialmethod(_gather_if_decoding, "test")
    on_predict_start = partialmethod(_gather_if_decoding, "predict")
    # the end hooks run after the callbacks' (SampleCallback prints in on_validation_end)
    on_validation_end = on_test_end = on_predict_end = _release_gathered

    def _init_weights(self, model: torch.nn.Module) -> None:
        init_weights(model, std=self.config.init_std, num_layers=len(distributed.blocks(model)))

    def configure_gradient_clipping(
        self,
        optimizer: Any,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        # FSDP1's precision plugin refuses norm clipping (it has no handle on the root module); the wrapped
        # model has the sharding-aware clip_grad_norm_ (Lightning's documented workaround).
        fsdp1 = isinstance(self.trainer.strategy, FSDPStrategy)
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm") and fsdp1:
            self.trainer.model.clip_grad_norm_(gradient_clip_val)
            return
        # tensor parallel: split (DTensor) and whole gradients, which torch's clip_grad_norm_ cannot mix
        tensor_parallel = distributed.tensor_parallel_size(self.trainer) > 1
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm") and tensor_parallel:
            distributed.clip_grad_norm(self.parameters(), gradient_clip_val)
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
            foreach=None if fused else not mixes_dtensors(params),  # (tensor parallel: per-tensor loop)
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
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- tokenizer travels with the checkpoint --------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if stage == "fit" and self._trainer is not None:
            use_atomic_checkpoints(self.trainer)  # a kill during a save never leaves a corrupt last.ckpt
        if self._trainer is not None:  # a fused loss kernel on a device it cannot run on: before any data
            check_loss_device(self.hparams.get("loss_impl", "torch"), self.trainer.strategy.root_device)
        if stage == "fit" and self._trainer is not None:  # a kernel without a backward here: before any data
            problem = training_problem(self.config, self.trainer.strategy.root_device.type)
            if problem is not None:
                raise ConfigError(problem)
        if getattr(datamodule, "document_mask", False):  # packed rows: every kernel must keep to its document
            problem = document_mask_problem(self.config)
            if problem is not None:
                raise ConfigError(f"data.document_mask is true, but {problem}")
        tokenizer = getattr(datamodule, "tokenizer", None)
        if tokenizer is not None and self.tokenizer is None:
            self.tokenizer = tokenizer
        shapes = self.data_shapes(datamodule) if datamodule is not None else None
        sharded = isinstance(self.trainer.strategy, (FSDPStrategy, ModelParallelStrategy))
        summarizable = not sharded and not self.hparams.get("compile")
        if stage == "fit" and shapes is not None and self.example_input_array is None and summarizable:
            # the model summary's FLOPs column runs one eval forward of this on rank 0 alone: never on sharded
            # models (the others would not join the gathers), nor compiled ones (a second graph to compile)
            inputs = tuple(torch.zeros(shape, dtype=torch.long) for shape in shapes)
            self.example_input_array = inputs if len(inputs) > 1 else inputs[0]
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
        defaults = getattr(self.model, "generation_config", None)  # masked LMs do not generate: none
        if defaults is not None:  # generation_config.json's fields: plain values, safe for weights_only
            checkpoint[GENERATION_KEY] = defaults.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("tokenizer")
        if state is not None:
            self.tokenizer = Tokenizer.from_dict(state)
        defaults = checkpoint_generation_defaults(checkpoint, "the checkpoint")
        if defaults is not None:
            self.model.generation_config = defaults

    @classmethod
    def load(cls, checkpoint_path: str | os.PathLike, *, map_location: Any = "cpu") -> SwapformerModule:
        """Rebuild a trained module (model, hyperparameters, tokenizer) from a checkpoint, in eval mode.

        ``checkpoint_path`` is a ``.ckpt`` of ``swapformer fit``, a distributed checkpoint folder of ``swapformer
        fit`` under FSDP2 (its shards, read in this process), or a model folder: one written by ``swapformer
        export`` or ``save_pretrained`` (``config.json`` + ``model.safetensors``, its ``tokenizer.json`` when it
        has one), by ``swapformer import-hf``, or a Hugging Face model folder; the ``model.safetensors`` inside
        such a folder stands for the folder. A checkpoint stands alone: ``init_from`` (where its run started) is
        not read.

        A ``.ckpt`` is read with ``torch.load(weights_only=True)``: tensors and plain Python values only, so a
        checkpoint that would run code on load (a pickled object with ``__reduce__``) is refused with an
        ``CheckpointError`` (nothing in it runs). Called on ``SwapformerModule`` itself, it picks the task
        module of the checkpoint's model kind.

        Raises:
            CheckpointError: the file is missing, not a checkpoint, truncated, written by another program,
                refused because loading it would run code, or holds another kind of model than ``cls`` trains.
            ConfigError: a model folder whose config or weights do not make a model.
        """
        folder = model_folder(checkpoint_path)
        if folder is not None:
            return cls._load_folder(folder, map_location=map_location)
        checkpoint = read_checkpoint(checkpoint_path)
        hyperparameters = checkpoint["hyper_parameters"]
        module = cls._module_for(hyperparameters["kind"], checkpoint_path)
        source: Any = checkpoint_path
        if Path(checkpoint_path).is_dir():  # FSDP2's folder, read in this process: Lightning reads files only
            source = io.BytesIO()
            torch.save(checkpoint, source)
            source.seek(0)
        del checkpoint
        with building_checkpoint_model(hyperparameters):
            loaded = module.load_from_checkpoint(source, map_location=map_location, weights_only=True)
        return loaded.eval()

    @classmethod
    def _module_for(cls, model_kind: str, where: str | os.PathLike) -> type[SwapformerModule]:
        module = SwapformerModule.for_kind(model_kind) if cls is SwapformerModule else cls
        if module.kind != model_kind:
            raise CheckpointError(
                f"{where} holds a {model_kind} model, not one {cls.__name__} trains: load it with "
                f"SwapformerModule.load, which picks the module"
            )
        return module

    @classmethod
    def _load_folder(cls, folder: Path, *, map_location: Any) -> SwapformerModule:
        """The module of a model folder (:func:`model_folder`), with the folder's tokenizer.json when it has one."""

        model = load_model(folder)
        config = model.config.to_dict()
        module_class = cls._module_for(config.pop("kind"), folder)
        module = module_class(**config)
        module.model = model  # the folder's weights in place of the freshly initialized ones
        if (folder / "tokenizer.json").is_file():
            module.tokenizer = load_tokenizer(folder)
        return module.to(map_location).eval()

    def num_parameters(self) -> int:
        """Trainable parameters, a tied embedding counted once."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


class AttentionInputs(NamedTuple):
    """A forward pass to record attention maps from: ``run()`` runs it; ``keys`` ``(N, S)`` and ``queries``
    ``(N, L)`` label the maps' columns and rows; ``layers`` is the default choice of layers to draw."""

    run: Callable[[], Any]
    keys: Tensor
    queries: Tensor
    layers: str


def model_folder(path: str | os.PathLike) -> Path | None:
    """The model folder ``path`` names (one with a ``config.json``; the ``model.safetensors`` inside one names
    it too), or None: a checkpoint file, or nothing."""
    path = Path(path)
    if path.is_file() and path.suffix == ".safetensors":
        path = path.parent
    return path if path.is_dir() and (path / "config.json").is_file() else None


def _full_signature(cls: type[SwapformerModule]) -> inspect.Signature:
    """``cls.__init__``'s signature with ``**options`` spelled out: every ModelConfig field (``kind`` aside) with
    the kind's default, then every training option with the class's default, then the class's own options."""
    own = inspect.signature(cls.__init__).parameters
    hints = typing.get_type_hints(ModelConfig)
    model_defaults = ModelConfig.defaults(cls.kind)
    fields = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=model_defaults[name],
            annotation=ComponentName | None if name in COMPONENT_KEYS else hints[name],
        )
        for name in MODEL_KEYS
        if name not in ("vocab_size", "kind")
    ]
    training_hints = typing.get_type_hints(training_options)
    training = [
        p.replace(default=cls.training_defaults.get(name, p.default), annotation=training_hints[name])
        for name, p in inspect.signature(training_options).parameters.items()
    ]
    rest = [
        p for name, p in own.items() if name not in ("self", "vocab_size") and p.kind is not p.VAR_KEYWORD
    ]
    cls.__init__.__annotations__.update({p.name: p.annotation for p in [*fields, *training]})
    return inspect.Signature([own["self"], own["vocab_size"], *fields, *training, *rest])


def _source_vocabulary(source: ModelConfig, model: dict[str, Any], where: str) -> dict[str, Any]:
    """The vocabulary sizes of ``init_from``'s model, checked against the data's tokenizer (``model``'s)."""
    sizes = {"vocab_size": source.vocab_size}
    if model["vocab_size"] > source.vocab_size:
        raise ConfigError(
            f"the data's tokenizer has {model['vocab_size']} ids but init_from={where} has a vocabulary of "
            f"{source.vocab_size}: use that model's tokenizer (data.init_args.tokenizer: {where})"
        )
    if source.src_vocab_size is not None:
        sizes["src_vocab_size"] = source.src_vocab_size
    return sizes


def _checkpoint_vocabulary(checkpoint: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """The vocabulary sizes of the checkpoint's model, checked against the data's tokenizer (``model``'s)."""
    sizes = {k: checkpoint[k] for k in ("vocab_size", "src_vocab_size") if checkpoint.get(k) is not None}
    if "vocab_size" in sizes and model["vocab_size"] > sizes["vocab_size"]:
        raise ConfigError(
            f"the data's tokenizer has {model['vocab_size']} ids but the checkpoint's model has a vocabulary of "
            f"{sizes['vocab_size']}: read the data with the checkpoint's tokenizer (data.init_args.tokenizer: "
            "the .ckpt)"
        )
    return sizes


def _load_weights(model: torch.nn.Module, state: Mapping[str, Tensor], where: str) -> None:
    """Copy ``init_from``'s tensors into ``model``: shapes must match; new and unused tensors are reported."""
    ours = model.state_dict()
    mismatched = [
        f"{key} {tuple(state[key].shape)} -> {tuple(value.shape)}"
        for key, value in ours.items()
        if key in state and state[key].shape != value.shape
    ]
    if mismatched:
        raise ConfigError(
            f"init_from={where} does not fit the recipe's model: {'; '.join(mismatched[:3])}; the model fields "
            "must describe that model (import-hf writes them all to recipe.yaml)"
        )
    missing, unused = model.load_state_dict(state, strict=False)
    rank_zero_info(
        f"init_from {where}: {len(ours) - len(missing)} tensors loaded"
        + (f", {len(missing)} new ({', '.join(missing[:3])}...)" if missing else "")
        + (f", {len(unused)} unused ({', '.join(unused[:3])}...)" if unused else "")
    )
