"""Callbacks the recipes use: printed samples at validation end, and tokens per second."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ThroughputMonitor
from lightning.pytorch.utilities import rank_zero_only

from swapformer.training import distributed


class SampleCallback(Callback):
    """Prints a few generated samples after each validation (and once when training ends).

    What a sample is depends on the task (its module's ``sample_lines``). Causal LM: continues prompts taken
    from the first validation batch. Seq2seq: shows ``source -> prediction | reference`` for the first
    validation batch (greedy decoding). Masked LM: the first validation texts with masks, and the model's fill.

    Args:
        num_samples: samples per print.
        max_new_tokens: tokens generated per causal-LM sample.
        temperature: 0 = greedy; otherwise sampling with this temperature.
        top_k: sample among the ``top_k`` most likely tokens.
        prompt_len: characters/tokens of the prompt taken from validation text.
        seed: generator seed, so samples are comparable across validations.
    """

    def __init__(
        self,
        num_samples: int = 2,
        max_new_tokens: int = 200,
        temperature: float = 0.8,
        top_k: int | None = None,
        prompt_len: int = 32,
        seed: int = 0,
    ) -> None:
        self.num_samples = num_samples
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.prompt_len = prompt_len
        self.seed = seed
        self._printed_at: int | None = None
        self._validated_at: int | None = None

    def samples(self, pl_module: pl.LightningModule) -> list[str]:
        """The lines this callback would print now (the task module makes them: ``sample_lines``)."""
        return pl_module.sample_lines(
            num_samples=self.num_samples,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_k=self.top_k,
            prompt_len=self.prompt_len,
            seed=self.seed,
        )

    def _print(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step == self._printed_at:
            return
        # Under tensor parallelism each forward needs every rank of the TP group (its all-reduces): all ranks
        # decode the same samples (same weights, same seed) and rank 0 prints them.
        if not (trainer.is_global_zero or distributed.tensor_parallel_size(trainer) > 1):
            return
        lines = self.samples(pl_module)
        if not lines or not trainer.is_global_zero:
            return
        self._printed_at = trainer.global_step
        bar = "-" * 72
        print(f"\n{bar}\nsamples at step {trainer.global_step}:", flush=True)
        for line in lines:
            print(line, flush=True)
            print(bar, flush=True)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._validated_at = trainer.global_step  # on every rank, unlike _printed_at
            self._print(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step == self._validated_at:
            return  # the last validation printed these samples already
        # Under FSDP2 rank 0 cannot decode alone on sharded parameters: every rank gathers them first.
        distributed.gather_for_decoding(pl_module.model)
        try:
            self._print(trainer, pl_module)
        finally:
            distributed.release_gathered(pl_module.model)  # nothing to do when nothing was gathered


class TokenThroughput(ThroughputMonitor):
    """Lightning's ThroughputMonitor with this project's batches: logs ``train|device/items_per_sec`` (tokens),
    and prints the mean tokens/s of the whole fit when training ends. The task module counts a batch's examples
    and tokens (``batch_size``, ``batch_tokens``).

    Args:
        window_size: batches averaged per logged rate (use 2 in tiny tests).
        **kwargs: forwarded to :class:`~lightning.pytorch.callbacks.ThroughputMonitor`.
    """

    def __init__(self, window_size: int = 20, **kwargs: Any) -> None:
        super().__init__(batch_size_fn=_unset, length_fn=_unset, window_size=window_size, **kwargs)
        self.total_tokens = 0
        self.train_seconds = 0.0
        self._t0: float | None = None
        self._first_step = (
            0  # a resumed fit starts at the checkpoint's step: its summary counts its own steps
        )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.batch_size_fn, self.length_fn = pl_module.batch_size, pl_module.batch_tokens
        super().setup(trainer, pl_module, stage)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._first_step = trainer.global_step  # after a resume's restore

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, *args: Any
    ) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, *args: Any
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, *args)
        if self._t0 is not None:
            self.train_seconds += time.perf_counter() - self._t0
            self.total_tokens += self.length_fn(batch)

    @property
    def tokens_per_second(self) -> float:
        """Training tokens per second of step time (data loading and validation excluded)."""
        return self.total_tokens / self.train_seconds if self.train_seconds else 0.0

    @rank_zero_only
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.total_tokens:
            print(
                f"throughput: {self.tokens_per_second:,.0f} tokens/s over {trainer.global_step - self._first_step} "
                "steps "
                f"({self.total_tokens:,} tokens in {self.train_seconds:.1f} s of training steps)",
                flush=True,
            )


def _unset(batch: Any) -> int:
    raise RuntimeError("TokenThroughput counts batches only once setup() has seen the task module")
