"""SIGTERM and SIGINT mid-epoch on a real ``swapformer fit``: the run finishes its step, saves ``last.ckpt``,
says so and exits 128 + the signal; ``--ckpt_path last`` then ends at the loss of an uninterrupted run.

Same recipe and tolerance as ``test_resume.py`` (the SIGKILL version), with fewer epochs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from test_resume import _checkpoint_steps, _config, _final_metrics, _start

from swapformer.training.signals import SaveOnSignal

EPOCHS = 2
STEPS_PER_EPOCH = 20


def _write_config(root) -> None:
    root.mkdir()
    config = _config(root, every_n_train_steps=7)
    config["trainer"]["max_epochs"] = EPOCHS
    (root / "config.yaml").write_text(yaml.safe_dump(config))


def _signal_after_first_checkpoint(process, root, signum) -> str:
    """Send ``signum`` once the step-7 checkpoint is written (mid-epoch); return the run's output."""
    deadline = time.monotonic() + 240
    while (
        time.monotonic() < deadline and process.poll() is None and not _checkpoint_steps(root / "checkpoints")
    ):
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be signalled"
    process.send_signal(signum)
    out, _ = process.communicate(timeout=120)
    return out


def _stopped_at(out: str, name: str) -> tuple[int, str]:
    found = re.search(rf"stopped by {name} at step (\d+); saved (\S+); resume with --ckpt_path last", out)
    assert found, out[-3000:]
    return int(found[1]), found[2]


@pytest.mark.slow
def test_sigterm_saves_last_and_resume_matches_uninterrupted_run(tmp_path):
    straight_root, stopped_root = tmp_path / "straight", tmp_path / "stopped"
    for root in (straight_root, stopped_root):
        _write_config(root)
    straight = _start(straight_root / "config.yaml")  # the two runs side by side: one process thread each
    stopped = _start(stopped_root / "config.yaml")
    out = _signal_after_first_checkpoint(stopped, stopped_root, signal.SIGTERM)
    straight_out, _ = straight.communicate(timeout=300)
    assert straight.returncode == 0, straight_out[-3000:]
    assert stopped.returncode == 128 + signal.SIGTERM, out[-3000:]
    step, path = _stopped_at(out, "SIGTERM")
    assert path == str(stopped_root / "checkpoints" / "last.ckpt")
    assert torch.load(path, weights_only=True, mmap=True)["global_step"] == step
    assert step % STEPS_PER_EPOCH != 0, "the signal fell on an epoch end; this case must stop mid-epoch"

    resumed = _start(stopped_root / "config.yaml", "--ckpt_path", "last")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out[-3000:]
    assert "Restoring states from the checkpoint" in out

    straight_rows, straight_last = _final_metrics(straight_root)
    stopped_rows, stopped_last = _final_metrics(stopped_root)
    assert min(int(r["step"]) for r in stopped_rows[-1]) >= step  # from the signal's checkpoint, not earlier
    assert int(stopped_last["step"]) == int(straight_last["step"]) == EPOCHS * STEPS_PER_EPOCH - 1
    assert float(stopped_last["val/loss"]) == pytest.approx(float(straight_last["val/loss"]), rel=1e-6)
    straight_train = [r for r in straight_rows[-1] if r.get("train/loss")][-1]
    stopped_train = [r for r in stopped_rows[-1] if r.get("train/loss")][-1]
    assert straight_train["step"] == stopped_train["step"]
    assert float(stopped_train["train/loss"]) == pytest.approx(float(straight_train["train/loss"]), rel=1e-6)


@pytest.mark.slow
def test_sigint_saves_last(tmp_path):
    root = tmp_path / "run"
    _write_config(root)
    process = _start(root / "config.yaml")
    out = _signal_after_first_checkpoint(process, root, signal.SIGINT)
    assert process.returncode == 128 + signal.SIGINT, out[-3000:]
    step, path = _stopped_at(out, "SIGINT")
    assert torch.load(path, weights_only=True, mmap=True)["global_step"] == step
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert "weights_only" not in out  # no notice that nobody can act on


@pytest.mark.slow
def test_sigterm_to_the_process_group_spares_the_loader_workers(tmp_path):
    # scancel and Ctrl-C signal every process of the job: a DataLoader worker killed by it would end the run
    # with "DataLoader worker ... is killed by signal" before the checkpoint is saved
    root = tmp_path / "run"
    _write_config(root)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*(sys.executable, "-m", "swapformer", "fit"), "--config", str(root / "config.yaml"), "--data.init_args.num_workers=2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while (
        time.monotonic() < deadline and process.poll() is None and not _checkpoint_steps(root / "checkpoints")
    ):
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be signalled"
    os.killpg(process.pid, signal.SIGTERM)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, out[-3000:]
    step, path = _stopped_at(out, "SIGTERM")
    assert torch.load(path, weights_only=True, mmap=True)["global_step"] == step


def test_a_second_signal_gets_the_default_handler(monkeypatch):
    installed = {}
    monkeypatch.setattr(signal, "signal", lambda signum, handler: installed.update({signum: handler}))
    callback = SaveOnSignal()
    callback._handle(signal.SIGTERM, None)
    assert callback.received == signal.SIGTERM
    assert installed == {signal.SIGTERM: signal.SIG_DFL}  # the next SIGTERM ends the process at once


def test_the_handlers_are_put_back_after_fit(tmp_path):
    import lightning.pytorch as pl
    from lightning.pytorch.demos.boring_classes import BoringModel

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    trainer = pl.Trainer(
        max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[SaveOnSignal()], default_root_dir=tmp_path, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(BoringModel())
    assert {signum: signal.getsignal(signum) for signum in before} == before
