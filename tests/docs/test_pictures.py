"""The scripts that draw the site's pictures still run (on small or synthetic inputs: no training here)."""

from __future__ import annotations

import importlib.util
import sys

import torch

from .conftest import REPO


def script(name: str):
    spec = importlib.util.spec_from_file_location(
        f"docs_script_{name}", REPO / "scripts" / "docs" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sinusoidal_picture(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["sinusoidal.py", "--out", str(tmp_path / "s.png")])
    script("sinusoidal").main()
    assert (tmp_path / "s.png").stat().st_size > 10_000


def test_training_curves_from_a_csv_log(tmp_path, monkeypatch):
    rows = ["epoch,lr-AdamW/pg1,step,train/loss,val/loss"]
    rows += [f"0,{1e-3 * (1 - s / 100):.6f},{s},{3 - s / 50:.3f}," for s in range(0, 100, 10)]
    rows += ["0,,99,,1.500"]
    (tmp_path / "metrics.csv").write_text("\n".join(rows) + "\n")
    curves = script("training_curves")
    series = curves.read(tmp_path / "metrics.csv")
    assert series["val/loss"] == [(99, 1.5)] and len(series["train/loss"]) == 10
    out = tmp_path / "curves.png"
    monkeypatch.setattr(
        sys, "argv", ["training_curves.py", "--metrics", str(tmp_path / "metrics.csv"), "--out", str(out)]
    )
    curves.main()
    assert out.stat().st_size > 10_000


def test_attention_picture_from_an_untrained_dates_model(tmp_path):
    from swapformer.data import Seq2SeqDataModule
    from swapformer.tasks import Seq2SeqModule

    data = Seq2SeqDataModule(task="dates", num_train=16, num_val=4, batch_size=4)
    module = Seq2SeqModule(
        vocab_size=data.vocab_size, d_model=16, num_heads=2, num_layers=2, d_ff=32, max_decode_len=12
    )
    module.tokenizer = data.tokenizer
    maps = script("attention_maps")
    prediction, keys, queries, weights = maps.cross_attention(module, "March 5, 2021")
    assert keys[-1] == "</s>" and len(keys) == len("March 5, 2021") + 1
    assert weights.shape == (2, 2, len(queries), len(keys))  # (layers, H, L, S)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    maps.draw("March 5, 2021", prediction, keys, queries, weights).savefig(tmp_path / "a.png")


def test_layer_option_pictures_from_the_members(tmp_path, monkeypatch):
    pictures = script("layer_options")
    monkeypatch.setattr(sys, "argv", ["layer_options.py", "--out", str(tmp_path)])
    pictures.main()
    for name in pictures.PICTURES:
        assert (tmp_path / name).stat().st_size > 10_000, name
