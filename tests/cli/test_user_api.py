"""The Python API as a user meets it: a built model's mode, files with the process's permissions."""

from __future__ import annotations

import os
import stat

import pytest
import torch

import swapformer


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield 0o027
    os.umask(previous)


def test_saved_and_exported_weights_follow_the_umask(tmp_path, umask_027):
    config = dict(vocab_size=40, d_model=16, num_heads=2, num_layers=1, positional="learned")  # GPT-2-like
    model = swapformer.build_causal_lm(config)
    (tmp_path / "plain.txt").write_text("x")  # what any new file of this process gets
    expected = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert expected == 0o640
    for folder in (model.save_pretrained(tmp_path / "native"), swapformer.to_hf(model, tmp_path / "hf")):
        assert stat.S_IMODE((folder / "model.safetensors").stat().st_mode) == expected
        assert stat.S_IMODE((folder / "config.json").stat().st_mode) == expected


def test_a_built_model_starts_in_training_mode_and_a_loaded_one_in_eval_mode(tmp_path):
    # README: "A built model is in training mode, as every freshly made torch.nn.Module is"
    model = swapformer.build_causal_lm(
        dict(vocab_size=40, d_model=16, num_heads=2, num_layers=1, dropout=0.1)
    )
    ids = torch.randint(40, (1, 12))
    assert model.training and not torch.equal(model(ids), model(ids))  # dropout on
    model.eval()
    assert torch.equal(model(ids), model(ids))
    assert not swapformer.load(model.save_pretrained(tmp_path / "m")).training
