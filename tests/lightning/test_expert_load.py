"""The expert-load picture of MoE layers: the counts are the router's own top-k choices, the grid their shares, and a
fit logs the picture to W&B (offline), TensorBoard or PNG files, and none for a dense model."""

from __future__ import annotations

import io

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning_testlib import RECIPES
from torch.utils.data import DataLoader

from swapformer import family
from swapformer.cli import main
from swapformer.components import after_optimizer_step, take_expert_loads
from swapformer.errors import ConfigError
from swapformer.tasks import CausalLMModule
from swapformer.training import ExpertLoadLogger
from swapformer.training.expert_load import KEY, expert_load_shares, plot_expert_load

TINY = dict(vocab_size=30, d_model=16, num_heads=2, num_layers=3, d_ff=16, max_seq_len=32, dropout=0.0)
MOE = {"name": "moe", "experts": 4, "top_k": 2}
# MoE in layers 0 and 2: the picture's rows are those layers
MOE_PATTERN = {"pattern": ["moe", "plain", "moe"], "types": {"moe": {"ffn": MOE}, "plain": {}}}


def _hand_count(moe: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Tokens per expert from the router's formula: softmax over x W_r^T, the top-k experts of each token."""
    probabilities = F.softmax(x.reshape(-1, x.size(-1)) @ moe.router.weight.detach().T, dim=-1)
    return torch.bincount(probabilities.topk(moe.top_k, dim=-1).indices.reshape(-1), minlength=4).float()


def test_running_counts_are_the_routers_top_k_choices_summed_over_steps_and_processes():
    torch.manual_seed(0)
    moe = family("ffn").build(MOE, d_model=8, d_ff=16).train()
    with torch.no_grad():
        moe.router.weight.mul_(20)  # a router far from uniform: every expert's count differs
    first, second = torch.randn(2, 5, 8), torch.randn(3, 4, 8)
    moe(first)
    after_optimizer_step(moe)  # one process
    moe(second)
    after_optimizer_step(moe, lambda t: 2 * t)  # two processes that counted alike: the sum over them
    expected = _hand_count(moe, first) + 2 * _hand_count(moe, second)
    assert len(set(expected.tolist())) > 1  # not an even split, which any counting would give
    (load,) = take_expert_loads(moe).values()
    torch.testing.assert_close(load, expected)
    assert not take_expert_loads(moe)[""].any()  # taken: the next picture starts from zero
    moe.eval()(first)
    after_optimizer_step(moe)
    assert not take_expert_loads(moe)[""].any()  # evaluation routes count for neither statistic


def test_grid_rows_are_each_layers_shares_and_labels_their_layer_index():
    loads = {
        "model.encoder.layers.1.feed_forward.sublayer": torch.tensor([3.0, 1.0, 0.0, 4.0]),
        "model.decoder.layers.0.feed_forward.sublayer": torch.tensor([5.0, 5.0]),
        "model.decoder.layers.2.feed_forward.sublayer": torch.zeros(4),
    }
    labels, shares = expert_load_shares(loads)
    assert labels == ["encoder 1", "decoder 0", "decoder 2"]
    torch.testing.assert_close(shares[0], torch.tensor([3.0, 1.0, 0.0, 4.0]) / 8)
    torch.testing.assert_close(shares[1, :2], torch.tensor([0.5, 0.5]))
    assert shares[1, 2:].isnan().all() and not shares[2].any()  # fewer experts: blank; nothing routed: zeros
    single = {"decoder.layers.3.ffn": torch.ones(2)}
    assert expert_load_shares(single)[0] == ["3"]


def test_picture_writes_each_share_in_its_cell_and_states_the_even_share():
    counts = torch.tensor([[3.0, 1.0, 0.0, 4.0], [1.0, 1.0, 1.0, 5.0]])
    shares = counts / counts.sum(-1, keepdim=True)
    fig = plot_expert_load(shares, layers=["0", "2"], title="expert load")
    ax = fig.axes[0]
    written = [float(t.get_text()) for t in ax.texts]
    assert written == pytest.approx((shares.flatten() * 100).tolist(), abs=0.05)
    assert "even share 1/4 = 25.00%" in ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "2"]
    with pytest.raises(ValueError, match=r"shares have 2 rows but 1 layer labels were given"):
        plot_expert_load(shares, layers=["0"])


def test_callback_arguments_and_option_are_checked():
    with pytest.raises(ValueError, match=r"every_n_steps=0 must be a whole number >= 1, or None"):
        ExpertLoadLogger(every_n_steps=0)
    with pytest.raises(ConfigError, match=r"expert_load_every=-1 must be a whole number >= 0"):
        CausalLMModule(**TINY, expert_load_every=-1)


def _batches(count: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 30, (count, 2, 17), generator=g)
    return [{"input_ids": x[:, :-1], "labels": x[:, 1:]} for x in ids]


def _fit(tmp_path, logger, **options) -> pl.Trainer:
    torch.manual_seed(0)
    module = CausalLMModule(**{**TINY, **options}, warmup_steps=0)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=5,
        log_every_n_steps=1,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, DataLoader(_batches(5), batch_size=None))
    return trainer


def _pictures(trainer: pl.Trainer) -> list[int] | None:
    added = [c for c in trainer.callbacks if isinstance(c, ExpertLoadLogger)]
    return added[0].logged_steps if added else None


def _wandb(tmp_path, monkeypatch) -> WandbLogger:
    monkeypatch.setenv("WANDB_MODE", "offline")
    return WandbLogger(project="swapformer-test", save_dir=str(tmp_path), offline=True)


def test_moe_fit_logs_the_picture_into_the_offline_wandb_run(tmp_path, monkeypatch):
    logger = _wandb(tmp_path, monkeypatch)
    try:
        trainer = _fit(tmp_path, logger, layers=MOE_PATTERN, expert_load_every=2)
    finally:
        logger.experiment.finish()
    assert _pictures(trainer) == [2, 4, 5]  # every 2 steps, and the last step at the end of the fit
    (run,) = tmp_path.glob("wandb/offline-run-*")
    media = list(run.glob(f"files/media/images/{KEY}_*.png"))
    assert len(media) == 3
    # the run's history (protobuf records, JSON values) names each file under the key, with its steps' caption
    history = next(run.glob("*.wandb")).read_bytes()
    for path in media:
        assert f'["{path.relative_to(run / "files").as_posix()}"]'.encode() in history
    for caption in ("steps 1-2", "steps 3-4", "step 5"):
        assert f'["{caption}"]'.encode() in history
    from PIL import Image

    image = Image.open(media[0])
    assert image.size[0] > 200 and len(set(image.getdata())) > 20  # a drawn picture, not a blank


@pytest.mark.parametrize(
    "options", [{}, {"layers": MOE_PATTERN, "expert_load_every": 0}], ids=["dense", "off"]
)
def test_dense_model_or_zero_period_logs_no_picture(tmp_path, monkeypatch, options):
    logger = _wandb(tmp_path, monkeypatch)
    try:
        trainer = _fit(tmp_path, logger, **options)
    finally:
        logger.experiment.finish()
    assert _pictures(trainer) is None
    assert not list(tmp_path.glob("wandb/offline-run-*/files/media/images/*"))


def test_csv_logger_gets_png_files_of_the_rows_and_counts(tmp_path):
    trainer = _fit(tmp_path, CSVLogger(tmp_path, name="logs"), layers=MOE_PATTERN)
    # default period: 10 x log_every_n_steps = 10 steps, so the 5-step fit's one picture is at its end
    assert _pictures(trainer) == [5]
    files = sorted(p.name for p in (tmp_path / "logs" / "version_0" / "moe_expert_load").iterdir())
    assert files == ["step5-moe_expert_load-0.png"]


def test_print_config_shows_the_period_a_recipe_sets(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = str(RECIPES / "causal_lm" / "moe-tiny.yaml")
    with pytest.raises(SystemExit):
        main(["fit", "--config", recipe, "--model.init_args.expert_load_every", "50", "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]["expert_load_every"] == 50


def test_tensorboard_logger_gets_each_picture_as_an_image_of_its_step(tmp_path):
    """The TensorBoard path of ``log_images``: each picture is an image summary under the key, at its step, whose
    PNG is the picture the CSV logger writes for the same fit (seeded alike), pixel for pixel."""
    # not in the dev extra: installed, tensorboard becomes Lightning's default logger in place of the CSV logger
    # that other tests read; this test runs where a user has it
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (not a dependency, nor in dev)")
    from lightning.pytorch.loggers import TensorBoardLogger
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    logger = TensorBoardLogger(tmp_path / "tb", name="logs")
    trainer = _fit(tmp_path / "tb", logger, layers=MOE_PATTERN, expert_load_every=2)
    logger.experiment.flush()
    assert _pictures(trainer) == [2, 4, 5]
    events = EventAccumulator(logger.log_dir, size_guidance={IMAGES: 0}).Reload()
    images = events.Images(f"{KEY}/0")
    assert [image.step for image in images] == [2, 4, 5]
    _fit(tmp_path / "csv", CSVLogger(tmp_path / "csv", name="logs"), layers=MOE_PATTERN, expert_load_every=2)
    for image in images:
        png = (
            tmp_path
            / "csv"
            / "logs"
            / "version_0"
            / "moe_expert_load"
            / f"step{image.step}-moe_expert_load-0.png"
        )
        with Image.open(png) as written:
            expected = written.convert("RGB").tobytes()
            assert (image.width, image.height) == written.size
        with Image.open(io.BytesIO(image.encoded_image_string)) as logged:
            assert logged.convert("RGB").tobytes() == expected
