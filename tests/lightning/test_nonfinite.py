"""A non-finite training loss: ``nonfinite_loss: stop`` ends the run at that step before backward, so every
checkpoint (``last`` included) stays finite; ``skip`` skips such batches (no update reaches the weights) and
counts them; ``ignore`` applies them like any other."""

from __future__ import annotations

import logging

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from swapformer.data import CausalLMDataModule
from swapformer.errors import TrainingError
from swapformer.tasks import CausalLMModule

TINY = {"d_model": 32, "num_heads": 4, "num_layers": 1, "d_ff": 64, "max_seq_len": 32, "dropout": 0.0}


class ScriptedLoss(CausalLMModule):
    """Its training loss is infinite at the optimizer steps listed in ``bad_steps``."""

    bad_steps: tuple[int, ...] = ()

    def _step(self, stage, batch, batch_idx):
        loss = super()._step(stage, batch, batch_idx)
        if stage == "train" and self.trainer.global_step in self.bad_steps:
            return loss * float("inf")
        return loss


def _fit(tmp_path, *, bad_steps, max_steps, **options):
    pl.seed_everything(0)
    data = CausalLMDataModule(
        tokenizer="char", seq_len=16, batch_size=4, max_chars=20000, train_samples_per_epoch=64,
        cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    module = ScriptedLoss(vocab_size=data.vocab_size, **TINY, **options)
    module.bad_steps = bad_steps
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path / "checkpoints",
        filename="{step}",
        every_n_train_steps=1,
        save_top_k=-1,
        save_last=True,
    )
    trainer = pl.Trainer(
        max_steps=max_steps, accelerator="cpu", logger=False, callbacks=[checkpoint], limit_val_batches=0,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    return module, trainer


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_stop_names_the_step_and_keeps_last_finite(tmp_path):
    with pytest.raises(TrainingError, match=r"loss became inf at step 3 .*learning rate \(lr=0\.0003.*skip"):
        _fit(tmp_path, bad_steps=(3,), max_steps=6)
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.glob("*.ckpt")) == [
        "last.ckpt",
        "step=1.ckpt",
        "step=2.ckpt",
        "step=3.ckpt",
    ]
    last, before = _weights(folder / "last.ckpt"), _weights(folder / "step=3.ckpt")
    assert all(torch.isfinite(t).all() for t in last.values())
    assert last.keys() == before.keys()
    assert all(torch.equal(last[k], before[k]) for k in last)


def _adam_steps(trainer) -> set[int]:
    """The update counts AdamW keeps per parameter: the optimizer steps that reached the weights."""
    return {int(state["step"]) for state in trainer.optimizers[0].state.values()}


def _changed(folder, before: int, after: int) -> bool:
    """Whether the weights differ between the checkpoints of steps ``before`` and ``after``."""
    old, new = _weights(folder / f"step={before}.ckpt"), _weights(folder / f"step={after}.ckpt")
    return any(not torch.equal(old[k], new[k]) for k in old)


def test_skip_leaves_the_weights_alone_on_the_skipped_batches(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        module, trainer = _fit(tmp_path, bad_steps=(2, 4), max_steps=6, nonfinite_loss="skip")
    # Lightning counts a batch whose training_step returned None as a step (global_step and the LR schedule
    # advance), but no gradient reached AdamW: it updated the weights 4 times, and the checkpoint written after
    # a skipped batch holds the weights of the one before (step=3 is the state after the batch at step 2).
    assert trainer.global_step == 6
    assert _adam_steps(trainer) == {4}
    folder = tmp_path / "checkpoints"
    assert [_changed(folder, step, step + 1) for step in range(1, 6)] == [True, False, True, False, True]
    assert module._skipped_batches == 2
    assert "2 batches with a non-finite loss were skipped" in caplog.text
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_ignore_applies_the_non_finite_loss(tmp_path):
    # ignore turns the check off: the infinite loss goes through backward and the optimizer step like any
    # other, so the weights after it are no longer finite (a run that skipped the batch would keep them finite)
    module, trainer = _fit(tmp_path, bad_steps=(2,), max_steps=3, nonfinite_loss="ignore")
    assert trainer.global_step == 3
    assert _adam_steps(trainer) == {3}
    folder = tmp_path / "checkpoints"
    assert all(torch.isfinite(t).all() for t in _weights(folder / "step=2.ckpt").values())
    assert not all(torch.isfinite(t).all() for t in _weights(folder / "step=3.ckpt").values())
    assert not all(torch.isfinite(p).all() for p in module.parameters())


def test_an_unknown_action_is_refused():
    with pytest.raises(
        ValueError, match=r"nonfinite_loss='halt' is unknown; choose one of stop, skip, ignore"
    ):
        CausalLMModule(vocab_size=64, **TINY, nonfinite_loss="halt")
