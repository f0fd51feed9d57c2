"""Progress that a log file can show: a plain line every N steps when stdout is not a terminal.

Rich's progress bar redraws one line in place; written to a file (CI, a SLURM log) it shows nothing until the
run ends. :class:`ProgressBar` keeps the rich bar for terminals and, anywhere else, prints::

    step 250/1500 | epoch 0 | loss 2.3105 | 48,211 tokens/s | elapsed 0:00:41 | ETA 0:03:25

every ``every_n_steps`` optimizer steps, and one line per validation. The task modules install it in place of
Lightning's default bar (see ``SwapformerModule.configure_callbacks``); a recipe may list it to change
``every_n_steps``.
"""

from __future__ import annotations

import datetime
import math
import sys
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.utilities import rank_zero_only


class ProgressBar(RichProgressBar):
    """Lightning's rich bar in a terminal; plain, flushed lines elsewhere.

    Args:
        every_n_steps: optimizer steps between two plain lines.
        plain: force plain lines (True) or the rich bar (False); None = plain when stdout is not a terminal.
        **kwargs: forwarded to :class:`~lightning.pytorch.callbacks.RichProgressBar`.

    Raises:
        ValueError: ``every_n_steps`` below 1.
    """

    def __init__(self, every_n_steps: int = 50, *, plain: bool | None = None, **kwargs: Any) -> None:
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps!r} must be an integer >= 1, e.g. 50")
        super().__init__(**kwargs)
        self.every_n_steps = every_n_steps
        self.plain = plain
        self._start: float | None = None
        self._window: tuple[float, int, int] | None = None  # (time, step, tokens) at the last line
        self._tokens = 0
        self._printed_step = -1

    @property
    def is_plain(self) -> bool:
        return not sys.stdout.isatty() if self.plain is None else self.plain

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self.is_plain:
            self.disable()  # the rich bar would print nothing until the end

    def _get_train_description(self, current_epoch: int) -> str:
        # Lightning writes f"Epoch {e}/{max_epochs - 1}", which reads "Epoch 2/-2" when max_steps ends the run
        # (max_epochs is then -1): name the last epoch only when epochs end the run.
        description = f"Epoch {current_epoch}"
        max_epochs = self.trainer.max_epochs
        if max_epochs is not None and max_epochs > 0 and self.trainer.max_steps in (None, -1):
            description += f"/{max_epochs - 1}"
        width = len(self.validation_description)
        return f"{description:{width}}" if width > len(description) else description

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._start = time.perf_counter()
        self._window = (self._start, trainer.global_step, 0)
        self._tokens = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if not self.is_plain:
            return
        count = getattr(pl_module, "batch_tokens", None)
        self._tokens += count(batch) if count is not None else 0
        step = trainer.global_step
        if step != self._printed_step and (
            step % self.every_n_steps == 0 or step == self._last_step(trainer)
        ):
            self._printed_step = step
            self._print_line(self._train_line(trainer, pl_module))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self.is_plain or trainer.sanity_checking:
            return
        metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        shown = " | ".join(f"{k} {_number(v)}" for k, v in sorted(metrics.items()))
        self._print_line(f"validation at step {trainer.global_step} | {shown}")

    @staticmethod
    def _last_step(trainer: pl.Trainer) -> float:
        if trainer.max_steps is not None and trainer.max_steps > 0:
            return trainer.max_steps
        try:
            return float(trainer.estimated_stepping_batches)
        except Exception:  # an iterable loader without a length: no end known
            return math.inf

    def _train_line(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
        now, step = time.perf_counter(), trainer.global_step
        last_time, last_step, last_tokens = self._window or (now, step, 0)
        self._window = (now, step, self._tokens)
        elapsed = now - (self._start or now)
        rate = (self._tokens - last_tokens) / (now - last_time) if now > last_time else 0.0
        total = self._last_step(trainer)
        parts = [
            f"step {step}" + (f"/{int(total)}" if math.isfinite(total) else ""),
            f"epoch {trainer.current_epoch}",
        ]
        loss = trainer.progress_bar_metrics.get("train/loss")
        if loss is not None:
            parts.append(f"loss {_number(loss)}")
        if rate:
            parts.append(f"{rate:,.0f} tokens/s")
        parts.append(f"elapsed {_duration(elapsed)}")
        if math.isfinite(total) and step > last_step and now > last_time:
            seconds_per_step = (now - last_time) / (step - last_step)
            parts.append(f"ETA {_duration(seconds_per_step * max(total - step, 0))}")
        return " | ".join(parts)

    @staticmethod
    @rank_zero_only
    def _print_line(line: str) -> None:
        print(line, file=sys.stdout, flush=True)


def _number(value: Any) -> str:
    value = float(value)
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"


def _duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))
