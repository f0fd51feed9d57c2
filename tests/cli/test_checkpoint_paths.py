"""Checkpoints as a user meets them on the command line, in a scratch folder: every fit ends with a last.ckpt
it names, ``--ckpt_path last`` looks only below the recipe's root and says what it picked, and a resumed run
reads text with the checkpoint's tokenizer."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch

from swapformer.cli import main, run

TINY = [
    "--model.init_args.d_model=32",
    "--model.init_args.num_heads=4",
    "--model.init_args.num_layers=1",
    "--model.init_args.d_ff=64",
    "--model.init_args.max_seq_len=32",
    "--data.init_args.seq_len=16",
    "--data.init_args.batch_size=4",
    "--data.init_args.max_chars=20000",
    "--trainer.enable_model_summary=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.limit_val_batches=1",
]


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fit(capsys, *options: str) -> str:
    """``swapformer fit --config stdlib-tiny`` at tiny sizes; what it printed."""
    capsys.readouterr()
    main(["fit", "--config", "stdlib-tiny", *TINY, *options])
    captured = capsys.readouterr()
    return captured.out + captured.err


def saved_step(path: str | Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"]


@pytest.mark.parametrize("steps", [3, 7])
def test_every_fit_ends_validated_sampled_and_with_a_last_ckpt_of_its_final_step(scratch, capsys, steps):
    # stdlib-tiny checkpoints every 500 steps and validates every 250: 3 steps reach neither; 7 with a
    # checkpoint and a validation every 5 steps ends 2 steps after the newest ones
    out = fit(
        capsys,
        f"--trainer.max_steps={steps}",
        "--checkpoint.every_n_train_steps=5",
        "--trainer.val_check_interval=5",
    )
    named = re.search(r"^last checkpoint: (\S+)$", out, re.M)
    assert named, out
    assert Path(named[1]).name == "last.ckpt" and saved_step(named[1]) == steps
    with open(scratch / "runs" / "stdlib-tiny" / "logs" / "version_0" / "metrics.csv") as file:
        validated = [int(row["step"]) for row in csv.DictReader(file) if row.get("val/loss")]
    # Lightning logs a validation under the count of batches stepped before it: step - 1
    assert validated and validated[-1] == steps - 1, validated
    assert out.count("[generated]") >= 1 + (steps > 5)  # SampleCallback's samples of the final validation


def test_a_fit_with_checkpointing_off_says_so(scratch, capsys):
    out = fit(capsys, "--trainer.max_steps=2", "--trainer.enable_checkpointing=false")
    assert "checkpointing is off (trainer.enable_checkpointing: false): this run saved no checkpoint" in out
    assert not list(scratch.rglob("*.ckpt"))


def test_ckpt_path_last_looks_below_the_recipe_root_and_prints_its_pick(scratch, capsys, caplog):
    fit(capsys, "--trainer.max_steps=2")
    ours = scratch / "runs" / "stdlib-tiny" / "logs" / "version_0" / "checkpoints" / "last.ckpt"
    # a newer, unrelated run elsewhere below the working folder
    fit(capsys, "--trainer.max_steps=2", "--trainer.default_root_dir=other")
    assert (scratch / "other").is_dir()
    for verb in (["generate", "--prompt", "def", "--max_new_tokens", "2"], ["export", "--out", "exported"]):
        main([verb[0], "--ckpt_path", "last", "--config", "stdlib-tiny", *verb[1:]])
        assert f"--ckpt_path last: {Path('runs/stdlib-tiny/logs/version_0/checkpoints/last.ckpt')}" in (
            capsys.readouterr().err
        )
    caplog.clear()
    fit(capsys, "--trainer.max_steps=3", "--ckpt_path=last")
    assert (
        f"--ckpt_path last: {ours.relative_to(scratch)}" in caplog.messages
    )  # Lightning's info log (stderr)


def test_a_resume_with_other_data_settings_reads_with_the_checkpoints_tokenizer(scratch, capsys):
    fit(capsys, "--trainer.max_steps=2")
    checkpoint = "runs/stdlib-tiny/logs/version_0/checkpoints/last.ckpt"
    vocab = torch.load(checkpoint, weights_only=True, mmap=True)["hyper_parameters"]["vocab_size"]
    # more text: a char tokenizer fitted on it would have another vocabulary; the user never set vocab_size
    cli = run(
        [
            "fit",
            "--config",
            "stdlib-tiny",
            *TINY,
            "--data.init_args.max_chars=60000",
            "--trainer.max_steps=4",
            f"--ckpt_path={checkpoint}",
        ]
    )
    assert cli.trainer.global_step == 4
    assert cli.model.config.vocab_size == vocab == cli.datamodule.tokenizer.vocab_size


def test_a_fit_resumed_from_its_end_of_run_last_ckpt_goes_on_as_one_run(scratch, capsys):
    # the run stops at max_steps mid-epoch; resuming its last.ckpt goes on with that epoch's remaining batches,
    # so 3 + 3 steps end with the weights of 6 steps in one run, and the progress says epoch 0, not a new epoch
    whole = "--trainer.default_root_dir=whole"
    fit(capsys, "--trainer.max_steps=6", whole)
    fit(capsys, "--trainer.max_steps=3")
    out = fit(capsys, "--trainer.max_steps=6", "--ckpt_path=last", "--trainer.enable_progress_bar=true",
              "--trainer.log_every_n_steps=1")  # fmt: skip
    assert re.search(r"^step 6/6 \| epoch 0 \|", out, re.M), out
    assert "throughput: " in out and " over 3 steps (" in out  # the steps this run took, not 6
    resumed = torch.load("runs/stdlib-tiny/logs/version_1/checkpoints/last.ckpt", weights_only=True)
    one_run = torch.load("whole/logs/version_0/checkpoints/last.ckpt", weights_only=True)
    assert resumed["global_step"] == one_run["global_step"] == 6
    for key, value in one_run["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, msg=key)


def test_a_run_and_its_resume_show_no_warning_nobody_can_act_on(scratch, capsys, recwarn):
    fit(
        capsys, "--trainer.max_steps=2", "--seed_everything=true"
    )  # a seed drawn, as with no seed in the recipe
    checkpoint = "--ckpt_path=runs/stdlib-tiny/logs/version_0/checkpoints/last.ckpt"
    fit(capsys, "--trainer.max_steps=3", checkpoint, "--trainer.default_root_dir=runs/moved")
    shown = [str(w.message) for w in recwarn]
    for notice in ("No seed found", "tensorboardX", "The dirpath has changed"):
        assert not [m for m in shown if notice in m], shown
