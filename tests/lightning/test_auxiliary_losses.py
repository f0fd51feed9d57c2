"""A member's auxiliary loss reaches the training loss in every training mode and is logged under its name, while
``model(ids)`` still returns logits. The member (``penalized_member.py``) adds ``c * sum(scale ** 2)`` for a
parameter used nowhere else, so its value and gradient are known in closed form."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from lightning_testlib import RECIPES
from penalized_member import NAME, registered
from PIL import Image
from torch.utils.data import DataLoader

from swapformer import build_causal_lm, build_masked_lm, build_seq2seq
from swapformer.components.ffn import MixtureOfExperts
from swapformer.tasks import CausalLMModule
from swapformer.training import distributed

HERE = Path(__file__).resolve().parent
C = 0.5
TINY = dict(vocab_size=30, d_model=16, num_heads=2, num_layers=3, d_ff=32, max_seq_len=32, dropout=0.0)
# the member in layers 0 and 2 only: the sum runs over the layers that hold it
PATTERN = {"pattern": ["penalized", "plain", "penalized"], "types": {"penalized": {"ffn": NAME}, "plain": {}}}
# the mixture of experts in the same layers, its losses weighted up so that a lost one shows
MOE = {"name": "moe", "experts": 4, "top_k": 2, "aux_loss": 1.0, "z_loss": 0.1, "balance_rate": 0.01}
MOE_PATTERN = {"pattern": ["moe", "plain", "moe"], "types": {"moe": {"ffn": MOE}, "plain": {}}}


@pytest.fixture(autouse=True)
def member():
    with registered():
        yield


def _scales(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for name, p in model.named_parameters() if name.endswith(".scale")]


def _penalty(model: torch.nn.Module) -> torch.Tensor:
    return sum(C * s.detach().square().sum() for s in _scales(model))


@pytest.mark.parametrize("build", [build_causal_lm, build_masked_lm])
def test_model_returns_logits_and_fills_losses_when_asked(build):
    model = build({**TINY, "layers": PATTERN})
    with torch.no_grad():
        for i, scale in enumerate(_scales(model)):
            scale.fill_(i + 2.0)  # 2 and 3: the sum, not one layer's value
    ids = torch.randint(30, (2, 9))
    logits = model(ids)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 9, 30)
    losses = {}
    again = model(ids, losses=losses)
    assert torch.equal(again, logits)
    assert list(losses) == ["penalty"]
    torch.testing.assert_close(losses["penalty"], torch.tensor(C * (2 * 4.0 + 2 * 9.0)))
    losses["penalty"].backward()
    for i, scale in enumerate(_scales(model)):
        torch.testing.assert_close(scale.grad, torch.full((2,), 2 * C * (i + 2.0)))  # d/ds c s^2 = 2 c s


def test_seq2seq_sums_both_stacks():
    model = build_seq2seq({**TINY, "num_encoder_layers": 1, "num_decoder_layers": 2, "ffn": NAME})
    losses = {}
    model(torch.randint(30, (2, 5)), torch.randint(30, (2, 4)), losses=losses)
    torch.testing.assert_close(losses["penalty"], torch.tensor(3 * C * 2.0))


def _loss_and_grads(model, ids):
    losses = {}
    loss = model(ids, losses=losses).logsumexp(-1).mean() + sum(losses.values())
    loss.backward()
    # names without the wrappers' prefixes (checkpoint_wrapper, compile), in the same order
    names = [
        n.replace("._checkpoint_wrapped_module", "").replace("._orig_mod", "")
        for n, _ in model.named_parameters()
    ]
    return loss.detach(), {n: p.grad.clone() for n, p in zip(names, model.parameters(), strict=True)}


@pytest.mark.parametrize("pattern", [PATTERN, MOE_PATTERN], ids=["penalized", "moe"])
@pytest.mark.parametrize("mode", ["checkpoint", "compile"])
def test_activation_checkpointing_and_compile_keep_the_losses_and_their_gradients(mode, pattern):
    torch.manual_seed(0)
    reference = build_causal_lm({**TINY, "layers": pattern})
    wrapped = build_causal_lm({**TINY, "layers": pattern})
    wrapped.load_state_dict(reference.state_dict())
    if mode == "checkpoint":
        assert distributed.checkpoint_blocks(wrapped) == 3
    else:
        assert distributed.compile_blocks(wrapped, {"backend": "aot_eager"}) == 3
    ids = torch.randint(30, (2, 9))
    loss, grads = _loss_and_grads(reference, ids)
    loss_wrapped, grads_wrapped = _loss_and_grads(wrapped, ids)
    torch.testing.assert_close(loss_wrapped, loss, rtol=1e-6, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_wrapped[name], grad, rtol=1e-5, atol=1e-6, msg=name)
    # the recomputed forward of a checkpointed layer counts no tokens twice: the loads are the reference's
    loads = [b for n, b in reference.named_buffers() if n.endswith(".load")]
    wrapped_loads = [b for n, b in wrapped.named_buffers() if n.endswith(".load")]
    for load, wrapped_load in zip(loads, wrapped_loads, strict=True):
        assert torch.equal(wrapped_load, load) and load.sum() == 2 * 9 * 2
    for name, grad in grads.items():
        if name.endswith(".scale"):
            torch.testing.assert_close(grad, torch.full((2,), 2 * C))


def _batches(count: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 30, (count, 2, 17), generator=g)
    return [{"input_ids": x[:, :-1], "labels": x[:, 1:]} for x in ids]


def test_training_step_adds_the_losses_and_validation_keeps_them_apart():
    module = CausalLMModule(**{**TINY, "layers": PATTERN})
    batch = _batches(1)[0]
    logits = module.model(batch["input_ids"])
    cross_entropy = F.cross_entropy(logits.reshape(-1, 30), batch["labels"].reshape(-1), ignore_index=0)
    torch.testing.assert_close(module._step("train", batch, 0), cross_entropy + _penalty(module.model))
    torch.testing.assert_close(module._step("val", batch, 0), cross_entropy)  # val/loss: comparable


def test_fit_with_gradient_accumulation_trains_the_penalty_and_logs_it(tmp_path):
    torch.manual_seed(0)
    module = CausalLMModule(**{**TINY, "layers": PATTERN}, lr=0.1, warmup_steps=0, schedule="constant")
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=3,
        accumulate_grad_batches=2,
        log_every_n_steps=1,
        logger=pl.loggers.CSVLogger(tmp_path, name="logs"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(_batches(6), batch_size=None))
    rows = [
        r
        for r in csv.DictReader(next(tmp_path.glob("logs/version_*/metrics.csv")).open())
        if r["train/penalty"]
    ]
    assert len(rows) == 3
    # AdamW moves a parameter by about lr a step, and only where it has a gradient: the penalty's alone
    for scale in _scales(module.model):
        assert (scale.detach() < 1 - 0.25).all(), scale
    assert float(rows[-1]["train/penalty"]) < float(rows[0]["train/penalty"])


def _moe_routers(model: torch.nn.Module) -> list[MixtureOfExperts]:
    return [m for m in model.modules() if isinstance(m, MixtureOfExperts)]


def test_moe_training_step_adds_its_losses_and_the_fit_logs_and_balances(tmp_path):
    """The MoE's balance and z losses are in the training loss (the gradient of the total is the gradient of
    cross-entropy plus theirs), logged each step with the mean imbalance over layers; after each optimizer step
    (two micro-batches each) the loss-free balancing bias has moved."""
    torch.manual_seed(0)
    module = CausalLMModule(**{**TINY, "layers": MOE_PATTERN}, lr=0.01, warmup_steps=0, schedule="constant")
    batch = _batches(1)[0]
    losses = {}
    logits = module.model(batch["input_ids"], losses=losses)
    assert sorted(losses) == ["moe_aux_loss", "moe_z_loss"]
    cross_entropy = F.cross_entropy(logits.reshape(-1, 30), batch["labels"].reshape(-1), ignore_index=0)
    torch.testing.assert_close(module._step("train", batch, 0), cross_entropy + sum(losses.values()))
    for member in _moe_routers(module.model):
        member.load.zero_()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=3,
        accumulate_grad_batches=2,
        log_every_n_steps=1,
        logger=pl.loggers.CSVLogger(tmp_path, name="logs"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(_batches(6), batch_size=None))
    rows = list(csv.DictReader(next(tmp_path.glob("logs/version_*/metrics.csv")).open()))
    for name in ("train/moe_aux_loss", "train/moe_z_loss", "train/moe_imbalance"):
        values = [float(r[name]) for r in rows if r.get(name)]
        assert len(values) == 3, name
    imbalance = [float(r["train/moe_imbalance"]) for r in rows if r.get("train/moe_imbalance")]
    assert all(1.0 <= v <= 2.0 for v in imbalance)  # top-2 of 4: the busiest takes at most every token
    for member in _moe_routers(module.model):
        bias = member.selection_bias
        assert bias.abs().max() > 0 and (bias.abs() <= 3 * 0.01 + 1e-7).all(), bias  # one nudge a step
        assert not member.load.any()


# ---- DDP and FSDP2: two processes each, the member registered by penalized_fit.py -----------------------
def _fit(root: Path, *args: str, pattern: dict = PATTERN) -> str:
    config = yaml.safe_load((RECIPES / "causal_lm" / "stdlib-tiny.yaml").read_text())
    config["model"]["init_args"].update(
        {
            **{k: v for k, v in TINY.items() if k != "vocab_size"},
            "layers": pattern,
            "lr": 0.1,
            "warmup_steps": 0,
            "global_batch_tokens": 64,  # one process accumulates 2 windows of 2 x 16, two read 1 each
        }
    )
    config["data"]["init_args"].update(seq_len=16, batch_size=2, max_chars=20000, train_samples_per_epoch=8)
    config["trainer"].update(
        max_steps=3,
        val_check_interval=None,
        limit_val_batches=0,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(root),
        logger=[{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(root)}}],
        callbacks=[],
    )
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        sys.executable,
        str(HERE / "penalized_fit.py"),
        "fit",
        "--config",
        str(root / "config.yaml"),
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=root)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def _penalties(root: Path) -> list[float]:
    (path,) = root.glob("lightning_logs/version_*/metrics.csv")
    return [float(r["train/penalty"]) for r in csv.DictReader(path.open()) if r.get("train/penalty")]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_two_processes_train_the_penalty_as_one_does(tmp_path, strategy):
    """The same global batches in one process (accumulating 2) and in two: the penalty follows the one-process
    trajectory (gradient clipping ties it to the data's gradients too); without the loss in the backward pass the
    scales would not move at all."""
    _fit(tmp_path / "single")
    trainer = str(RECIPES / "trainer" / f"{strategy}.yaml")
    _fit(tmp_path / strategy, "--config", trainer, "--trainer.accelerator=cpu", "--trainer.devices=2")
    single, two = _penalties(tmp_path / "single"), _penalties(tmp_path / strategy)
    assert len(single) == len(two) == 3
    assert single == pytest.approx(two, rel=1e-5)
    assert single[-1] < single[0] - 0.1


def _logged(root: Path, name: str) -> list[float]:
    (path,) = root.glob("lightning_logs/version_*/metrics.csv")
    return [float(r[name]) for r in csv.DictReader(path.open()) if r.get(name)]


# the balance loss of a micro-batch is not the mean of its tokens' (E sum_i f_i P_i is a product of two means):
# two processes split a global batch into other micro-batches than one process does, so it cannot match there
MOE_SPLITTABLE = {
    "pattern": MOE_PATTERN["pattern"],
    "types": {"moe": {"ffn": {**MOE, "aux_loss": 0.0}}, "plain": {}},
}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_two_processes_train_the_moe_as_one_does(tmp_path, strategy):
    """The MoE's z-loss (weighted up; a mean over tokens, so any split of the global batch gives the same
    gradient) reaches the gradient in two processes as in one accumulating two windows, and the loads are summed
    over processes before they steer the balancing bias: the training loss and the imbalance follow the
    one-process trajectory."""
    _fit(tmp_path / "single", pattern=MOE_SPLITTABLE)
    trainer = str(RECIPES / "trainer" / f"{strategy}.yaml")
    _fit(
        tmp_path / strategy,
        "--config",
        trainer,
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        pattern=MOE_SPLITTABLE,
    )
    for name in ("train/loss", "train/moe_z_loss", "train/moe_imbalance"):
        single, two = _logged(tmp_path / "single", name), _logged(tmp_path / strategy, name)
        assert len(single) == len(two) == 3, name
        if name != "train/moe_z_loss":  # each process logs its own micro-batch's: only the count compares
            assert single == pytest.approx(two, rel=1e-5), name
    # the expert-load picture of the fit's end (its default period is 10 steps): the loads of both processes,
    # summed, draw the one process's picture pixel for pixel
    pictures = [
        np.asarray(Image.open(path))
        for root in (tmp_path / "single", tmp_path / strategy)
        for path in root.glob("lightning_logs/version_*/moe_expert_load/step3-moe_expert_load-0.png")
    ]
    assert len(pictures) == 2 and np.array_equal(*pictures)
