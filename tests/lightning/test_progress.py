"""ProgressBar: plain lines while stdout is a file or a pipe, the rich bar in a terminal, no "Epoch 2/-2"."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning_testlib import CAUSAL_TINY, RECIPES, REPO

from swapformer.cli import run
from swapformer.tasks import CausalLMModule
from swapformer.training import ProgressBar

TINY = dict(vocab_size=50, d_model=16, num_heads=2, num_layers=1, d_ff=32, max_seq_len=16, dropout=0.0)
LINE = re.compile(
    r"^step (\d+)/(\d+) \| epoch \d+ \| (loss \d+\.\d+ \| )?[\d,]+ tokens/s \| elapsed [\d:]+ \| ETA [\d:]+$"
)


class _Data(pl.LightningDataModule):
    def train_dataloader(self):
        ids = torch.randint(4, 50, (8, 8))
        return torch.utils.data.DataLoader([{"input_ids": i, "labels": i} for i in ids], batch_size=2)


def _trainer(tmp_path, **kwargs):
    options = dict(max_steps=6, logger=False, enable_checkpointing=False, enable_model_summary=False)
    return pl.Trainer(default_root_dir=tmp_path, log_every_n_steps=1, **{**options, **kwargs})


def test_task_modules_replace_the_default_rich_bar_and_print_plain_lines_off_a_terminal(tmp_path, capsys):
    trainer = _trainer(tmp_path)
    assert type(trainer.progress_bar_callback) is RichProgressBar  # Lightning's default, as rich is installed
    trainer.fit(CausalLMModule(**TINY), datamodule=_Data())
    assert type(trainer.progress_bar_callback) is ProgressBar
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert [LINE.match(line).group(1) for line in lines] == ["6"]  # every 50 steps, and the last one
    assert "loss" in lines[0]


def test_a_bar_the_recipe_chose_is_left_alone(tmp_path):
    trainer = _trainer(tmp_path, max_steps=1, callbacks=[TQDMProgressBar()])
    trainer.fit(CausalLMModule(**TINY), datamodule=_Data())
    assert type(trainer.progress_bar_callback) is TQDMProgressBar


def test_epoch_description_names_no_last_epoch_when_steps_end_the_run(tmp_path):
    bar = ProgressBar(plain=False)
    trainer = _trainer(tmp_path, max_steps=6, callbacks=[bar])
    trainer.fit_loop.max_epochs = -1  # what fit() makes of max_epochs=None with max_steps; Lightning: "2/-2"
    bar._trainer = trainer
    assert bar._get_train_description(2).strip() == "Epoch 2"
    trainer = _trainer(tmp_path, max_epochs=3, max_steps=-1, callbacks=[bar := ProgressBar(plain=False)])
    bar._trainer = trainer
    assert bar._get_train_description(1).strip() == "Epoch 1/2"


def test_every_n_steps_is_checked():
    with pytest.raises(ValueError, match="every_n_steps=0 must be an integer >= 1"):
        ProgressBar(every_n_steps=0)


def test_lines_reach_a_pipe_while_the_fit_is_still_running(tmp_path):
    """A SLURM log is a file: the lines must arrive during the run, not at its end."""
    command = [
        sys.executable,
        "-m",
        "swapformer",
        "fit",
        f"--config={RECIPES / 'causal_lm' / 'stdlib-tiny.yaml'}",
        *CAUSAL_TINY,
        "--trainer.max_steps=40",
        "--trainer.val_check_interval=20",
        "--trainer.limit_val_batches=2",
        "--trainer.callbacks+=swapformer.training.ProgressBar",
        "--trainer.callbacks.every_n_steps=5",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    arrivals = []  # (seconds, line, whether the fit was still running)
    try:
        for line in process.stdout:
            if line.startswith(("step ", "validation at step")):
                arrivals.append((time.perf_counter() - started, line.rstrip(), process.poll() is None))
    finally:
        process.wait(timeout=300)
    ended = time.perf_counter() - started
    assert process.returncode == 0
    steps = [int(LINE.match(line).group(1)) for _, line, _ in arrivals if line.startswith("step")]
    assert steps == [5, 10, 15, 20, 25, 30, 35, 40]
    assert any(line.startswith("validation at step 20 | val/acc") for _, line, _ in arrivals)
    assert arrivals[0][2], "the first line came only when the fit had ended"
    print(f"\nfirst progress line after {arrivals[0][0]:.1f} s, fit ended after {ended:.1f} s")


def test_the_command_gives_the_trainer_its_bar_so_lightning_has_nothing_to_replace(
    tmp_path, monkeypatch, recwarn
):
    # configure_callbacks replacing Lightning's default rich bar made Lightning print, on every fit, that a
    # callback "will override existing callbacks passed to Trainer: RichProgressBar"
    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")  # where rank_zero_info writes
    monkeypatch.setattr(logger, "level", logging.INFO)
    monkeypatch.chdir(tmp_path)
    config = f"--config={RECIPES / 'causal_lm' / 'stdlib-tiny.yaml'}"
    logger.addHandler(handler)
    try:
        cli = run(["fit", config, *CAUSAL_TINY, "--trainer.fast_dev_run=1"])
    finally:
        logger.removeHandler(handler)
    assert type(cli.trainer.progress_bar_callback) is ProgressBar
    assert [type(c) for c in cli.trainer.callbacks].count(ProgressBar) == 1
    assert said and not [message for message in said if "will override" in message]
    # nor its advertisement, nor torch's FutureWarning about a LeafSpec Lightning builds: nothing a recipe can act on
    assert not [message for message in said if "litlogger" in message]
    assert not [str(w.message) for w in recwarn if "LeafSpec" in str(w.message)]
    chosen = run(
        ["fit", config, *CAUSAL_TINY, "--trainer.fast_dev_run=1", "--trainer.callbacks+=TQDMProgressBar"]
    )
    assert type(chosen.trainer.progress_bar_callback) is TQDMProgressBar
    quiet = run(
        ["fit", config, *CAUSAL_TINY, "--trainer.fast_dev_run=1", "--trainer.enable_progress_bar=false"]
    )
    assert quiet.trainer.progress_bar_callback is None
