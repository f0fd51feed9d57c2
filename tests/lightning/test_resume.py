"""Kill ``swapformer fit`` with SIGKILL mid-training, resume with ``--ckpt_path last``, and land on the same loss.

Exact resume needs: training windows that depend only on (seed, epoch) (the data's RandomOffsetSampler), the
training loader's position in the epoch in the checkpoint (ResumableDataLoader, for checkpoints taken mid-epoch),
dropout 0, and optimizer + scheduler state in the checkpoint. Checked with checkpoints at epoch ends and with
checkpoints every 7 steps of 20-batch epochs (the last one before the kill is mid-epoch).
Tolerance: 1e-6 relative; on one CPU thread the two runs are in fact bitwise equal.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from lightning_testlib import RECIPES

from swapformer.training.checkpoints import read_checkpoint

EPOCHS = 8


def _config(root, *, every_n_train_steps: int | None = None) -> dict:
    config = yaml.safe_load((RECIPES / "causal_lm" / "stdlib-tiny.yaml").read_text())
    config["model"]["init_args"].update(
        d_model=32, num_heads=4, num_layers=2, d_ff=64, max_seq_len=32, dropout=0.0
    )
    config["data"]["init_args"].update(seq_len=32, batch_size=8, max_chars=60000, train_samples_per_epoch=160)
    trainer = config["trainer"]
    trainer.update(
        max_steps=-1,
        max_epochs=EPOCHS,
        val_check_interval=None,
        check_val_every_n_epoch=1,
        limit_val_batches=2,
        default_root_dir=str(root),
        enable_progress_bar=False,
    )
    trainer["logger"]["init_args"]["save_dir"] = str(root)
    when = {"every_n_train_steps": every_n_train_steps} if every_n_train_steps else {"every_n_epochs": 1}
    trainer["callbacks"] = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {
                "dirpath": str(root / "checkpoints"),
                "filename": "{epoch}-{step}",
                "save_last": True,
                "save_top_k": -1,
                **when,
            },
        }
    ]
    return config


def _start(config_path, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "swapformer", "fit", "--config", str(config_path), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _final_metrics(root) -> tuple[list[dict], dict]:
    rows = []
    for path in sorted((root / "logs").glob("version_*/metrics.csv")):
        rows.append(list(csv.DictReader(path.open())))
    last = [r for r in rows[-1] if r.get("val/loss")][-1]
    return rows, last


def _checkpoint_steps(folder) -> list[int]:
    return sorted(int(p.stem.rsplit("step=", 1)[1]) for p in folder.glob("epoch=*-step=*.ckpt"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "every_n_train_steps", [None, 7], ids=["epoch-end checkpoints", "mid-epoch checkpoints"]
)
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, every_n_train_steps):
    runs = {}
    for name in ("straight", "killed"):
        root = tmp_path / name
        root.mkdir()
        config = _config(root, every_n_train_steps=every_n_train_steps)
        (root / "config.yaml").write_text(yaml.safe_dump(config))
        runs[name] = root

    straight = _start(runs["straight"] / "config.yaml")
    out, _ = straight.communicate(timeout=300)
    assert straight.returncode == 0, out[-3000:]

    killed = _start(runs["killed"] / "config.yaml")
    checkpoints = runs["killed"] / "checkpoints"
    deadline = time.monotonic() + 240
    first_seen = None
    while time.monotonic() < deadline and killed.poll() is None:
        saved = _checkpoint_steps(checkpoints)
        if first_seen is None and len(saved) >= 2:
            first_seen = time.monotonic()
        if len(saved) >= 3:
            # kill half a checkpoint interval later, well away from a checkpoint being written
            time.sleep(max(0.05, (time.monotonic() - first_seen) / 2) if first_seen else 0.2)
            killed.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    killed.wait(timeout=30)
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed; make it longer"
    # the step `--ckpt_path last` resumes from: ModelCheckpoint writes last.ckpt after the step's own file, so a
    # kill between the two leaves last.ckpt one checkpoint behind the newest file (still a whole checkpoint)
    last_saved = read_checkpoint(checkpoints / "last.ckpt")["global_step"]
    assert last_saved in _checkpoint_steps(checkpoints)
    assert last_saved < EPOCHS * 20 - 1
    if every_n_train_steps:
        assert last_saved % 20 != 0, (
            "the last checkpoint fell on an epoch end; this case must resume mid-epoch"
        )

    resumed = _start(runs["killed"] / "config.yaml", "--ckpt_path", "last")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out[-3000:]
    assert "Restoring states from the checkpoint" in out
    assert "ended before the epoch ended" not in out  # Lightning's warning for a loader it cannot resume

    straight_rows, straight_last = _final_metrics(runs["straight"])
    killed_rows, killed_last = _final_metrics(runs["killed"])
    first_resumed_step = min(int(r["step"]) for r in killed_rows[-1])
    assert first_resumed_step >= last_saved  # started from the checkpoint, not from scratch
    assert int(killed_last["step"]) == int(straight_last["step"]) == EPOCHS * 20 - 1
    assert int(killed_last["epoch"]) == EPOCHS - 1
    assert float(killed_last["val/loss"]) == pytest.approx(float(straight_last["val/loss"]), rel=1e-6)
    # the last logged training loss, too
    straight_train = [r for r in straight_rows[-1] if r.get("train/loss")][-1]
    killed_train = [r for r in killed_rows[-1] if r.get("train/loss")][-1]
    assert straight_train["step"] == killed_train["step"]
    assert float(killed_train["train/loss"]) == pytest.approx(float(straight_train["train/loss"]), rel=1e-6)
