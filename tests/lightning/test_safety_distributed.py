"""Under DDP (2 CPU processes, gloo) an accident on one rank stops every rank at the same step: a non-finite loss
on rank 1 only (every rank raises before backward, none waits in the gradient all-reduce), and a SIGTERM that
reached rank 1 only (every rank saves last.ckpt together and exits 143). The SIGTERM case also runs under FSDP2,
whose last.ckpt is a sharded folder, and resumes from it. Run as real ``swapformer fit`` processes with a
timeout, as in ``test_distributed.py``: a hang fails the test instead of blocking CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning_testlib import CAUSAL_TINY, RECIPES

HERE = Path(__file__).resolve().parent
RECIPE = str(RECIPES / "causal_lm" / "stdlib-tiny.yaml")
STRATEGIES = {
    "ddp": ["--trainer.strategy=ddp"],
    "fsdp2": ["--config", str(RECIPES / "trainer" / "fsdp2.yaml")],
}


def _fit(root: Path, accident: str | None, strategy: str = "ddp", *extra: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        *(sys.executable, "-m", "swapformer", "fit", "--config", RECIPE, *CAUSAL_TINY, *STRATEGIES[strategy]),
        *("--trainer.accelerator=cpu", "--trainer.devices=2"),
        *("--trainer.max_steps=6", "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false"),
        f"--trainer.default_root_dir={root}",
        *extra,
    ]
    if accident:
        command += [
            "--trainer.callbacks+=safety_probe.OneRankAccident",
            "--trainer.callbacks.rank=1",
            "--trainer.callbacks.step=2",
            f"--trainer.callbacks.signal={accident}",
        ]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=240, cwd=root)


@pytest.mark.slow
def test_a_nan_loss_on_one_rank_stops_every_rank(tmp_path):
    done = _fit(tmp_path, "nan")
    output = done.stdout + done.stderr
    # Without the cross-rank agreement rank 1 alone raises, and rank 0 dies in backward with a gloo error and a
    # traceback: a bare "exit code != 0 and the message somewhere" passes that too. Both ranks inherit the
    # captured stderr, so the agreement shows as the one line twice (rank 0 exits 2 and is the return code);
    # any other line naming an error (gloo's, a rank's traceback) fails it.
    assert done.returncode == 2, output[-3000:]
    message = "swapformer fit: error: the training loss became nan at step 2 (epoch 2); stopped before"
    assert output.count(message) == 2, output[-3000:]
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    assert all(line.startswith(message) for line in errors), output[-3000:]
    assert "Traceback" not in output, output[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_a_sigterm_on_one_rank_saves_on_every_rank_and_stops(tmp_path, strategy):
    done = _fit(tmp_path, "SIGTERM", strategy)
    output = done.stdout + done.stderr
    assert done.returncode == 143, output[-3000:]
    assert output.count("stopped by SIGTERM at step 3; saved ") == 1, output[
        -3000:
    ]  # printed by rank 0 alone
    (last,) = tmp_path.rglob("last.ckpt")
    if strategy == "ddp":
        assert torch.load(last, weights_only=True, mmap=True)["global_step"] == 3
        return
    # FSDP2: one shard per rank and the metadata, written together by both ranks; the run resumes from them
    assert sorted(p.name for p in last.iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp", "meta.pt"]
    resumed = _fit(tmp_path, None, strategy, "--ckpt_path", "last")
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-3000:]
    assert f"Restored all states from the checkpoint at {last}" in output
    assert "`Trainer.fit` stopped: `max_steps=6` reached." in output
