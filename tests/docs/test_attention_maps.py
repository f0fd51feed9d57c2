"""Attention maps: recording weights through hooks, drawing them, and the opt-in callback logging to W&B."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from swapformer import build_causal_lm, build_seq2seq
from swapformer.data import Seq2SeqDataModule
from swapformer.tasks import Seq2SeqModule
from swapformer.training.attention_maps import AttentionMapLogger, plot_attention, record_attention

TINY = dict(d_model=16, num_heads=2, num_layers=1, d_ff=32, dropout=0.0)


def test_recorded_weights_are_the_layers_own_and_outputs_are_unchanged():
    model = build_seq2seq({"vocab_size": 20, **TINY, "num_layers": 2, "attention": "sdpa"}).eval()
    src, tgt = torch.randint(3, 20, (2, 7)), torch.randint(3, 20, (2, 5))
    expected = model(src, tgt)
    with record_attention(model) as maps:
        logits = model(src, tgt)
    torch.testing.assert_close(logits, expected)
    assert sorted(maps) == sorted(
        f"{side}.layers.{i}.{kind}.sublayer"
        for side, kinds in (
            ("encoder", ["self_attention"]),
            ("decoder", ["self_attention", "cross_attention"]),
        )
        for i in range(2)
        for kind in kinds
    )
    cross = maps["decoder.layers.1.cross_attention.sublayer"][0]
    assert cross.shape == (2, 2, 5, 7)
    torch.testing.assert_close(cross.sum(-1), torch.ones(2, 2, 5))
    # the same weights the layer returns when asked directly
    layer = model.decoder.layers[0].self_attention
    x = torch.randn(2, 5, 16)
    with record_attention(layer) as maps:
        _, direct = layer.sublayer(layer.norm(x), is_causal=True, need_weights=True)
    torch.testing.assert_close(maps["sublayer"][0], direct)
    assert not layer.sublayer._forward_hooks and not layer.sublayer._forward_pre_hooks  # hooks removed


def test_causal_self_attention_maps_are_lower_triangular():
    model = build_causal_lm({"vocab_size": 20, **TINY}).eval()
    with record_attention(model, include=lambda name: "self_attention" in name) as maps:
        model(torch.randint(20, (1, 6)))
    (weights,) = maps["decoder.layers.0.self_attention.sublayer"]
    assert torch.equal(weights[0, 0] > 0, torch.ones(6, 6, dtype=torch.bool).tril())


def test_plot_attention_checks_its_labels():
    weights = torch.softmax(torch.randn(2, 3, 4), -1)
    fig = plot_attention(weights, keys=list("abcd"), queries=list("xyz"), title="t")
    assert len(fig.axes) == 3  # two heads and the colorbar
    with pytest.raises(ValueError, match=r"3 queries x 4 keys but 3 query labels and 2 key labels"):
        plot_attention(weights, keys=["a", "b"], queries=list("xyz"))


def test_callback_arguments_are_checked():
    with pytest.raises(ValueError, match=r"layers='encoder' is unknown; choose 'cross', 'self' or 'all'"):
        AttentionMapLogger(layers="encoder")
    with pytest.raises(ValueError, match=r"num_examples=0 must be at least 1"):
        AttentionMapLogger(num_examples=0)


def _fit(tmp_path, logger, callback):
    data = Seq2SeqDataModule(task="dates", num_train=32, num_val=8, batch_size=8)
    module = Seq2SeqModule(vocab_size=data.vocab_size, **TINY, max_decode_len=12, warmup_steps=1)
    trainer = pl.Trainer(
        max_steps=2,
        limit_val_batches=1,
        val_check_interval=2,
        num_sanity_val_steps=1,
        logger=logger,
        callbacks=[callback],
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=data)
    return trainer


def test_callback_logs_cross_attention_images_to_wandb_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(project="swapformer-test", save_dir=str(tmp_path), offline=True)
    logged = []
    original = WandbLogger.log_image
    monkeypatch.setattr(
        WandbLogger,
        "log_image",
        lambda self, key, images, step=None, **kw: (
            logged.append((key, images, step)),
            original(self, key, images, step, **kw),
        ),
    )
    callback = AttentionMapLogger(num_examples=2)
    try:
        _fit(tmp_path, logger, callback)
    finally:
        logger.experiment.finish()
    assert callback.logged == ["attention/decoder.layers.0.cross_attention"]
    ((key, images, step),) = logged  # once: the sanity check is skipped
    assert key == "attention/decoder.layers.0.cross_attention" and step == 2
    assert len(images) == 2 and images[0].ndim == 3 and images[0].shape[-1] == 3
    assert images[0].dtype.name == "uint8" and images[0].std() > 0  # a real picture, not a blank


def test_callback_writes_png_files_for_a_csv_logger(tmp_path):
    logger = CSVLogger(tmp_path, name="logs")
    _fit(tmp_path, logger, AttentionMapLogger(layers="all"))
    files = sorted(p.name for p in (tmp_path / "logs" / "version_0" / "attention_maps").iterdir())
    assert files == [
        "step2-decoder.layers.0.cross_attention-0.png",
        "step2-decoder.layers.0.self_attention-0.png",
        "step2-encoder.layers.0.self_attention-0.png",
    ]
