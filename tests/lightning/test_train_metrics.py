"""Training metrics are fed only on the optimizer steps that are logged, and what is logged is unchanged."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from swapformer.tasks import CausalLMModule

TINY = dict(vocab_size=30, d_model=16, num_heads=2, num_layers=1, d_ff=32, max_seq_len=16, dropout=0.0)


class Record(pl.Callback):
    """Per micro-batch: the train_loss metric's update count and the loss of the batch (recomputed)."""

    def __init__(self) -> None:
        self.updates: list[tuple[int, int]] = []
        self.losses: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        with torch.no_grad():
            logits = pl_module.model(batch["input_ids"])
        self.losses.append(float(F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # callbacks run before the module's own on_train_batch_end, which logs and resets the metrics
        self.updates.append((trainer.global_step, pl_module.train_loss.update_count))


def _batches(count: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 30, (count, 2, 17), generator=g)
    return [{"input_ids": x[:, :-1], "labels": x[:, 1:]} for x in ids]


def test_train_metrics_update_only_on_logged_steps_and_log_the_micro_batch_mean():
    torch.manual_seed(0)
    module = CausalLMModule(**TINY, lr=0.0, warmup_steps=0, schedule="constant")  # lr 0: the losses stay put
    record = Record()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=6,
        accumulate_grad_batches=2,
        log_every_n_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[record],
    )
    trainer.fit(module, DataLoader(_batches(12), batch_size=None))
    # micro-batches 5 and 6 make optimizer step 3, micro-batches 11 and 12 step 6: only those update
    updated = [i for i, (_, count) in enumerate(record.updates) if count]
    assert updated == [4, 5, 10, 11]
    assert [count for _, count in record.updates[4:6]] == [1, 2]
    # the logged train/loss of step 6 is the mean of its two micro-batch losses
    torch.testing.assert_close(
        float(trainer.callback_metrics["train/loss"]), sum(record.losses[10:12]) / 2, rtol=1e-5, atol=1e-6
    )
