"""DataLoader workers start forked (``swapformer.data.workers``) from every data module's loaders, also inside a
``ddp_spawn`` rank, whose own default is spawn: spawned workers import torch and Lightning again before their
first batch and finalize them at exit, which held the streaming loader's ranks for minutes on a busy machine."""

from __future__ import annotations

import json
import multiprocessing
import random
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from swapformer.data import CausalLMDataModule, Seq2SeqDataModule

linux = pytest.mark.skipif(
    sys.platform != "linux", reason="workers are forked where the platform forks safely"
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    path = tmp_path_factory.mktemp("corpus") / "input.txt"
    path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(10)) for _ in range(400)) + "\n")
    return path


def start_methods(loaders) -> list[str | None]:
    return [
        None if loader.multiprocessing_context is None else loader.multiprocessing_context.get_start_method()
        for loader in loaders
    ]


@linux
def test_every_loader_of_the_windows_and_the_pairs_forks_its_workers(corpus: Path) -> None:
    lm = CausalLMDataModule(path=str(corpus), seq_len=16, batch_size=8, num_workers=2)
    lm.setup("fit")
    seq2seq = Seq2SeqDataModule(num_train=64, num_val=16, batch_size=8, num_workers=2)
    seq2seq.setup("fit")
    loaders = [
        lm.train_dataloader(),
        lm.val_dataloader(),
        seq2seq.train_dataloader(),
        seq2seq.val_dataloader(),
    ]
    loaders.append(seq2seq.test_dataloader())
    assert start_methods(loaders) == ["fork"] * 5
    assert next(iter(loaders[0]))["input_ids"].shape == (8, 16)  # from a forked worker
    lm = CausalLMDataModule(path=str(corpus), seq_len=16, batch_size=8)  # num_workers=0: no worker to start
    lm.setup("fit")
    assert start_methods([lm.train_dataloader(), lm.val_dataloader()]) == [None, None]


class WorkerRecorder(pl.LightningModule):
    """In each ddp_spawn rank: the rank's default start method, and whether its DataLoader workers were forked
    from it (a forked process keeps its parent's command line; a spawned one is started with its own)."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.folder = folder
        self.workers: dict[int, bool] = {}

    def training_step(self, batch, batch_idx):
        own = Path("/proc/self/cmdline").read_bytes()
        for child in multiprocessing.active_children():  # the DataLoader's workers (persistent)
            self.workers[child.pid] = Path(f"/proc/{child.pid}/cmdline").read_bytes() == own
        return (self.weight * batch["input_ids"].float().mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_train_end(self) -> None:
        record = {"default": multiprocessing.get_start_method(), "forked": list(self.workers.values())}
        (self.folder / f"rank-{self.global_rank}.json").write_text(json.dumps(record))


@linux
@pytest.mark.slow
def test_a_ddp_spawn_rank_forks_the_workers_of_its_windows(corpus: Path, tmp_path: Path) -> None:
    pl.Trainer(
        accelerator="cpu",
        strategy="ddp_spawn",
        devices=2,
        max_steps=3,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    ).fit(
        WorkerRecorder(tmp_path),
        datamodule=CausalLMDataModule(path=str(corpus), seq_len=16, batch_size=4, num_workers=2),
    )
    for rank in (0, 1):
        record = json.loads((tmp_path / f"rank-{rank}.json").read_text())
        # spawn is the rank's default, so the forks are the data module's choice; both workers seen, both forked
        assert record == {"default": "spawn", "forked": [True, True]}, rank


@pytest.mark.parametrize("platform", [sys.platform, "darwin"])
def test_prepare_starts_its_tokenizing_pool_by_the_loaders_rule(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, platform: str
) -> None:
    """`swapformer prepare --workers N` forks its pool where the DataLoader workers fork, and takes the process's
    default on macOS (where forked children crash in system libraries), by the one rule of ``data.workers``."""
    from swapformer.data import prepare as preparing
    from swapformer.data.workers import worker_start_method

    asked: list[str | None] = []
    real = multiprocessing.get_context

    def get_context(method: str | None = None):
        asked.append(method)
        return real(method)

    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(preparing.multiprocessing, "get_context", get_context)
    meta = preparing.prepare(str(corpus), tokenizer="char", out=tmp_path / "out", workers=2, val_fraction=0.1)
    assert asked == [worker_start_method(2)]
    assert asked == ([None] if platform == "darwin" else ["fork"])
    assert meta["documents"]["train"] > 0
