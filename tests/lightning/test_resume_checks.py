"""``fit --ckpt_path`` with a recipe whose model is not the checkpoint's: every differing key is listed, with the
two ways out, before anything trains; training options (lr, max_steps) may change on resume."""

from __future__ import annotations

import pytest
import torch
from lightning_testlib import CAUSAL_TINY, RECIPES

from swapformer.cli import run
from swapformer.errors import ConfigError
from swapformer.training.resume import check_resume, checkpoint_hyperparameters, resume_differences

RECIPE = str(RECIPES / "causal_lm" / "stdlib-tiny.yaml")
QUICK = ["--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false"]


def _fit(root, *extra):
    return run(
        ["fit", "--config", RECIPE, *CAUSAL_TINY, *QUICK, f"--trainer.default_root_dir={root}", *extra]
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume-checks")
    _fit(root)
    return root


def _last(root) -> str:
    return str(next(root.rglob("last.ckpt")))


@pytest.mark.parametrize("by_name", [True, False], ids=["--ckpt_path last", "--ckpt_path FILE"])
def test_a_different_model_is_listed_key_by_key_and_nothing_trains(trained, capsys, by_name):
    before = sorted(p.relative_to(trained) for p in trained.rglob("*") if p.suffix in (".ckpt", ".csv"))
    ckpt_path = "last" if by_name else _last(trained)
    with pytest.raises(SystemExit) as exit_:
        _fit(
            trained,
            f"--ckpt_path={ckpt_path}",
            "--model.init_args.d_model=64",
            "--model.init_args.num_layers=2",
        )
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "the recipe's model is not the model of --ckpt_path" in err
    assert "model.init_args.d_model: the recipe has 64, the checkpoint has 32" in err
    assert "model.init_args.num_layers: the recipe has 2, the checkpoint has 1" in err
    assert (
        "to resume, give the recipe the checkpoint's values (drop the overrides)" in err
        and "--model.init_args.init_from" in err
    )
    after = sorted(p.relative_to(trained) for p in trained.rglob("*") if p.suffix in (".ckpt", ".csv"))
    assert after == before  # no checkpoint, no metrics: nothing trained


def test_training_options_may_change_on_resume(trained):
    # a file named explicitly: LightningCLI would put the checkpoint's lr over the recipe's; swapformer keeps it
    cli = _fit(
        trained, f"--ckpt_path={_last(trained)}", "--model.init_args.lr=0.001", "--trainer.max_steps=3"
    )
    assert cli.trainer.global_step == 3
    assert cli.model.hparams.lr == 0.001


def test_keys_that_change_no_weight_may_differ():
    recipe = {"_class_path": "a.B", "d_model": 32, "dropout": 0.1, "init_std": 0.02, "norm": "layernorm"}
    saved = {**recipe, "dropout": 0.0, "init_std": 0.01}
    assert resume_differences(recipe, saved) == []
    assert resume_differences({**recipe, "norm": "rmsnorm"}, saved) == [
        "model.init_args.norm: the recipe has 'rmsnorm', the checkpoint has 'layernorm'"
    ]


def test_another_kind_is_listed():
    recipe = {"_class_path": "swapformer.tasks.Seq2SeqModule", "kind": "seq2seq"}
    saved = {"_class_path": "swapformer.tasks.CausalLMModule", "kind": "causal_lm"}
    assert [line.split(":")[0] for line in resume_differences(recipe, saved)] == [
        "model.class_path",
        "model.init_args.kind",
    ]


def test_a_sharded_checkpoint_folder_is_read_from_its_metadata(tmp_path):
    folder = tmp_path / "last.ckpt"
    folder.mkdir()
    assert checkpoint_hyperparameters(folder) is None  # no metadata: the check is skipped
    check_resume(folder, hyperparameters={"d_model": 64})
    torch.save({"hyper_parameters": {"d_model": 32, "num_layers": 1}}, folder / "meta.pt")
    assert checkpoint_hyperparameters(folder) == {"d_model": 32, "num_layers": 1}
    with pytest.raises(ConfigError, match=r"d_model: the recipe has 64, the checkpoint has 32"):
        check_resume(folder, hyperparameters={"d_model": 64, "num_layers": 1})


def test_an_attention_kernel_of_the_same_function_may_be_swapped():
    saved = {"attention": "sdpa"}
    assert resume_differences({"attention": "math"}, saved) == []
    assert resume_differences({"attention": "linear"}, saved) == [
        "model.init_args.attention: the recipe has 'linear', the checkpoint has 'sdpa'"
    ]
