"""Atomic checkpoint writes: a save that fails half way leaves the previous ``last.ckpt`` whole."""

from __future__ import annotations

import os

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from swapformer.training.checkpoint_io import AtomicCheckpointIO, use_atomic_checkpoints


def test_a_save_that_fails_half_way_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)

    def half_save(obj, file, *args, **kwargs):
        file.write(b"PK\x03\x04 half a zip file")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", half_save)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    monkeypatch.undo()
    loaded = torch.load(path, weights_only=True)
    assert loaded["global_step"] == 1 and torch.equal(loaded["state_dict"]["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["last.ckpt"]  # no temporary file left behind


def test_a_save_replaces_the_file(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "sub" / "last.ckpt"
    for step in (1, 2):
        io.save_checkpoint({"global_step": step}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 2
    assert os.listdir(path.parent) == ["last.ckpt"]


def test_the_trainer_gets_the_atomic_writer_and_link(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last="link")
    trainer = pl.Trainer(accelerator="cpu", logger=False, callbacks=[checkpoint], default_root_dir=tmp_path)
    use_atomic_checkpoints(trainer)
    assert type(trainer.strategy.checkpoint_io) is AtomicCheckpointIO
    first, second, link = (tmp_path / name for name in ("step=1.ckpt", "step=2.ckpt", "last.ckpt"))
    for target in (first, second):
        torch.save({"target": target.name}, target)
        checkpoint._link_checkpoint(trainer, str(target), str(link))
        assert torch.load(link, weights_only=True)["target"] == target.name
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt", "step=1.ckpt", "step=2.ckpt"]


def test_a_chosen_checkpoint_io_is_left_alone(tmp_path):
    class Mine(AtomicCheckpointIO):
        pass

    trainer = pl.Trainer(accelerator="cpu", logger=False, plugins=[Mine()], default_root_dir=tmp_path)
    use_atomic_checkpoints(trainer)
    assert type(trainer.strategy.checkpoint_io) is Mine
