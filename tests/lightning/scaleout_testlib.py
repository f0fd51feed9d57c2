"""The multi-process runs the scale-out tests share (``runs``, a session fixture in ``conftest.py``) and the
helpers that start and read them: ``python -m swapformer fit`` in subprocesses with a timeout (DDP inside pytest
would re-run the test session in its children), ``OMP_NUM_THREADS=1`` so that 2 processes share 2 cores."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lightning_testlib import RECIPES

HERE = Path(__file__).resolve().parent
TWO_CPUS = ["--trainer.accelerator=cpu", "--trainer.devices=2"]
REL = 1e-5


def write_config(root: Path, *, wandb: bool = False, meta_init: bool = False, sample: bool = False) -> Path:
    config = yaml.safe_load((RECIPES / "causal_lm" / "stdlib-tiny.yaml").read_text())
    config["model"]["init_args"].update(
        d_model=32,
        num_heads=4,
        num_layers=2,
        d_ff=64,
        max_seq_len=32,
        dropout=0.0,
        warmup_steps=2,
        global_batch_tokens=256,  # 8 windows of 32 tokens per optimizer step
        meta_init=meta_init,
        activation_checkpointing=meta_init,
    )
    config["data"]["init_args"].update(seq_len=32, batch_size=4, max_chars=20000, train_samples_per_epoch=16)
    trainer = config["trainer"]
    trainer.update(
        max_steps=-1,
        max_epochs=3,  # 2 optimizer steps per epoch
        val_check_interval=None,
        check_val_every_n_epoch=1,
        limit_val_batches=0,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )
    loggers = [
        {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(root), "name": "logs"},
        }
    ]
    if wandb:
        loggers.append(
            {
                "class_path": "lightning.pytorch.loggers.WandbLogger",
                "init_args": {"save_dir": str(root), "project": "swapformer-test", "offline": True},
            }
        )
    trainer["logger"] = loggers
    trainer["callbacks"] = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"dirpath": str(root / "checkpoints"), "filename": "{epoch}", "save_top_k": -1},
        },
        {  # and one after every optimizer step, to resume in the middle of an epoch
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {
                "dirpath": str(root / "steps"),
                "filename": "{step}",
                "every_n_train_steps": 1,
                "save_top_k": -1,
            },
        },
        {"class_path": "scaleout_probe.Probe", "init_args": {"out": str(root / "probe")}},
    ]
    if sample:  # validation, and samples printed by rank 0 alone after it
        trainer["limit_val_batches"] = 2
        trainer["callbacks"].append(
            {"class_path": "swapformer.training.SampleCallback", "init_args": {"max_new_tokens": 8}}
        )
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fit_env() -> dict[str, str]:
    """The environment of a subprocess fit: this folder importable (the Probe), one thread, W&B offline."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }


def fit(root: Path, *args: str, timeout: int = 240, **config) -> str:
    """``swapformer fit`` of the tiny config (:func:`write_config`) with ``args``, in ``root``; its output."""
    command = [
        sys.executable,
        "-m",
        "swapformer",
        "fit",
        "--config",
        str(write_config(root, **config)),
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=fit_env(), timeout=timeout, cwd=root)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def read_losses(root: Path) -> dict[int, float]:
    (path,) = (root / "logs").glob("version_*/metrics.csv")
    return {
        int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(path.open()) if r.get("train/loss")
    }


def read_probe(root: Path, rank: int, hook: str) -> dict:
    return json.loads((root / "probe" / f"rank{rank}-{hook}.json").read_text())


def assert_same_trajectory(losses: dict[int, float], reference: dict[int, float]) -> None:
    assert losses and set(losses) <= set(reference)
    for step, loss in losses.items():
        assert loss == pytest.approx(reference[step], rel=REL), (step, loss, reference[step])


def make_runs(base: Path) -> dict[str, tuple[Path, str]]:
    """One process (accumulating 2), DDP and FSDP2 (2 processes each): 6 optimizer steps, a checkpoint a
    epoch (``checkpoints/epoch=E.ckpt``) and one a step (``steps/step=S.ckpt``). About 45 s on an idle 2-core
    machine."""
    out = {}
    out["single"] = (base / "single", fit(base / "single"))
    ddp = str(RECIPES / "trainer" / "ddp.yaml")
    out["ddp"] = (base / "ddp", fit(base / "ddp", "--config", ddp, *TWO_CPUS, wandb=True))
    fsdp2 = str(RECIPES / "trainer" / "fsdp2.yaml")
    out["fsdp2"] = (base / "fsdp2", fit(base / "fsdp2", "--config", fsdp2, *TWO_CPUS))
    return out
