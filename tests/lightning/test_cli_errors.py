"""The command line's one error path (swapformer.cli.errors) and the checkpoint reader
(swapformer.training.checkpoints): each kind of file named with what it is; --debug shows the traceback."""

from __future__ import annotations

import pickle
import zipfile

import pytest
import torch

from swapformer.cli import main
from swapformer.cli.errors import DEBUG_ENV, parser_message
from swapformer.errors import CheckpointError, ConfigError
from swapformer.training.checkpoints import read_checkpoint, resolve_last


class _RunsCode:
    def __reduce__(self):
        return (print, ("ran",))


def _swapformer_state() -> dict:
    return {
        "hyper_parameters": {"kind": "causal_lm", "vocab_size": 8},
        "state_dict": {"model.w": torch.ones(2)},
    }


def test_a_checkpoint_of_swapformer_fit_is_read(tmp_path):
    path = tmp_path / "good.ckpt"
    torch.save(_swapformer_state(), path)
    assert read_checkpoint(path)["hyper_parameters"]["kind"] == "causal_lm"


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (lambda p: p.write_text("loss 2.3\n"), r"not a checkpoint \(not a file written by torch\.save\)"),
        (lambda p: p.write_bytes(b""), r"is empty \(0 bytes\)"),
        (lambda p: torch.save({"x": _RunsCode()}, p), r"refused for safety: .*nothing in it ran"),
        (lambda p: p.write_bytes(pickle.dumps({"x": _RunsCode()})), r"refused for safety"),
        (lambda p: torch.save({"w": torch.zeros(2)}, p), r"holds bare tensors .*import-hf"),
        (lambda p: torch.save({"state_dict": {}, "hyper_parameters": {}}, p), r"written by another program"),
        (lambda p: torch.save([1, 2], p), r"holds a list, not a checkpoint"),
    ],
    ids=["text", "empty", "reduce", "bare-pickle", "state-dict", "other-lightning", "a-list"],
)
def test_a_file_that_is_not_a_checkpoint_is_named_with_what_it_is(tmp_path, write, expected):
    path = tmp_path / "x.ckpt"
    write(path)
    with pytest.raises(CheckpointError, match=expected) as info:
        read_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_missing_and_folder(tmp_path):
    whole = tmp_path / "whole.ckpt"
    torch.save(_swapformer_state(), whole)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert zipfile.is_zipfile(whole) and not zipfile.is_zipfile(cut)
    with pytest.raises(CheckpointError, match=r"cut\.ckpt is truncated"):
        read_checkpoint(cut)
    with pytest.raises(CheckpointError, match=r"no checkpoint at .*nope\.ckpt"):
        read_checkpoint(tmp_path / "nope.ckpt")
    (tmp_path / "shards.ckpt").mkdir()
    (tmp_path / "shards.ckpt" / "0.distcp").write_bytes(b"x")
    with pytest.raises(
        CheckpointError, match=r"is a folder but not a distributed checkpoint \(no \.metadata or meta"
    ):
        read_checkpoint(tmp_path / "shards.ckpt")


def test_last_is_the_newest_last_ckpt_below_the_root(tmp_path):
    with pytest.raises(CheckpointError, match=r"no last\*\.ckpt below"):
        resolve_last("last", tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "last.ckpt").write_bytes(b"x")
    assert resolve_last("last", tmp_path) == str(tmp_path / "a" / "last.ckpt")
    assert resolve_last("other.ckpt", tmp_path) == "other.ckpt"


def test_a_checkpoint_error_is_a_config_error():  # one except clause catches every user error
    assert issubclass(CheckpointError, ConfigError) and issubclass(CheckpointError, ValueError)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Parser key \"trainer.max_steps\":\n  Expected a <class 'int'>. Got value: x",
            "--trainer.max_steps 'x' is not a whole number",
        ),
        (
            "Parser key \"trainer.precision\":\n  Subtypes: [typing.Literal['16-mixed', '32-true'], <class 'NoneType'>]\n"
            "  Given value: 32",
            "--trainer.precision '32' is not one of: 16-mixed, 32-true",
        ),
        (
            "unrecognized arguments: --trainer.max_stpes 3",
            "unknown option --trainer.max_stpes (did you mean '--trainer.max_steps'?)",
        ),
    ],
)
def test_parser_messages_are_one_line_naming_the_key_first(message, expected):
    line = parser_message(message, ["--trainer", "--trainer.max_steps", "--trainer.precision"])
    assert line.startswith(expected) and "\n" not in line


def test_every_verb_prefixes_its_errors_and_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--ckpt_path", "nope.ckpt", "--prompt", "hi"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("swapformer generate: error: no checkpoint at nope.ckpt")
    with pytest.raises(CheckpointError, match=r"no checkpoint at nope\.ckpt"):
        main(["generate", "--ckpt_path", "nope.ckpt", "--prompt", "hi", "--debug"])
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(CheckpointError):
        main(["export", "--ckpt_path", "nope.ckpt", "--out", "out"])


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    import swapformer.cli as cli

    def broken(argv):
        raise KeyError("a bug of ours")

    monkeypatch.setitem(cli.VERBS, "components", broken)
    with pytest.raises(KeyError):
        main(["components"])


def test_fit_ckpt_path_last_with_nothing_to_resume_starts_a_new_run(tmp_path, caplog):
    """The same command starts a run and resumes it after a preemption (a requeued job): with no last.ckpt yet,
    ``fit --ckpt_path last`` trains from scratch and says so; validate/test refuse (see the bad-inputs table)."""
    from lightning_testlib import CAUSAL_TINY, RECIPES

    from swapformer.cli import run

    root = tmp_path / "runs"
    argv = [
        "fit",
        "--config",
        str(RECIPES / "causal_lm" / "stdlib-tiny.yaml"),
        *CAUSAL_TINY,
        "--trainer.max_steps=1",
        "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={root}",
        "--ckpt_path",
        "last",
    ]
    with caplog.at_level("INFO"):
        cli = run(argv)
    assert cli.trainer.global_step == 1
    assert "no last*.ckpt below" in caplog.text and "starting a new run" in caplog.text
    assert list(root.rglob("last.ckpt"))


@pytest.fixture
def process_group(tmp_path):
    """A one-process gloo group, as a DDP run leaves it when the command returns."""
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    yield
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def test_the_command_destroys_the_process_group_after_a_run_and_a_signal_stop(
    process_group, monkeypatch, capsys
):
    # left to the interpreter's shutdown, a gloo group sometimes aborted the process after a successful DDP run
    import swapformer.cli as cli
    from swapformer.training.signals import StoppedBySignal

    main(["components", "norm"])
    assert not torch.distributed.is_initialized()

    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)

    def stopped(args):
        raise StoppedBySignal(143)

    monkeypatch.setattr(cli, "run", stopped)
    with pytest.raises(StoppedBySignal):
        main(["fit"])
    assert not torch.distributed.is_initialized()


def test_after_another_error_the_process_group_is_left_alone(process_group, capsys):
    # the other processes may still be inside a collective: destroying could hang
    with pytest.raises(SystemExit) as stopped:
        main(["fitt"])
    assert stopped.value.code == 2
    assert torch.distributed.is_initialized()
