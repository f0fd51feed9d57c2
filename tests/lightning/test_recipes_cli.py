"""Bundled recipes by name, ``swapformer recipes [cp]``, outputs under default_root_dir, reruns, ``--ckpt_path
last``, checkpointing off, and ``swapformer --help``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
import yaml
from lightning_testlib import CAUSAL_TINY, RECIPES

from swapformer.cli import HELP, VERBS, bundle, main, run
from swapformer.cli import recipes as recipes_cli

ALL = sorted(p.relative_to(RECIPES).with_suffix("").as_posix() for p in RECIPES.glob("*/*.yaml"))
TWO_STEPS = ["--trainer.max_steps=2", "--trainer.enable_progress_bar=false", *CAUSAL_TINY]


def test_every_recipe_is_bundled_with_a_one_line_purpose(capsys):
    assert bundle.recipe_dir().resolve() == RECIPES.resolve()  # the checkout reads recipes/ in place
    assert list(bundle.bundled()) == ALL
    main(["recipes"])
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ALL
    for line, name in zip(out, ALL):
        purpose = line[len(name) :].strip()
        assert purpose and purpose == recipes_cli.purpose(RECIPES / f"{name}.yaml"), line


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("stdlib-tiny", "causal_lm/stdlib-tiny.yaml"),
        ("causal_lm/stdlib-tiny", "causal_lm/stdlib-tiny.yaml"),
        ("trainer/ddp", "trainer/ddp.yaml"),
        ("ddp", "trainer/ddp.yaml"),
        ("recipes/seq2seq/dates.yaml", "seq2seq/dates.yaml"),  # the old README's path, from anywhere
    ],
)
def test_config_names_resolve_to_bundled_recipes(name, expected, in_tmp):
    args = recipes_cli.resolve_config_args(["fit", "--config", name, f"--config={name}", "-c", name])
    path = str(RECIPES / expected)
    assert args == ["fit", "--config", path, f"--config={path}", "-c", path]


def test_a_file_and_inline_yaml_win_over_names(in_tmp):
    (in_tmp / "stdlib-tiny").write_text("trainer: {max_steps: 3}\n")
    args = ["fit", "--config", "stdlib-tiny", "--config", "{trainer: {max_steps: 2}}"]
    assert recipes_cli.resolve_config_args(args) == args


def test_ambiguous_and_unknown_names_fail_with_one_line(in_tmp, monkeypatch, capsys):
    fake = in_tmp / "bundle"
    for folder in ("causal_lm", "masked_lm"):
        (fake / folder).mkdir(parents=True)
        (fake / folder / "tiny.yaml").write_text("# a tiny one\n")
    monkeypatch.setattr(bundle, "recipe_dir", lambda: fake)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "tiny"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        err
        == "swapformer fit: error: recipe name 'tiny' is ambiguous: use one of causal_lm/tiny, masked_lm/tiny\n"
    )
    with pytest.raises(SystemExit):
        main(["fit", "--config", "tyni"])
    err = capsys.readouterr().err
    assert re.fullmatch(
        r"swapformer fit: error: --config 'tyni' is neither a file nor a bundled recipe "
        r"\(did you mean 'tiny'\?\); `swapformer recipes` lists them\n",
        err,
    ), err


def test_recipes_cp_copies_one_to_edit(in_tmp, capsys):
    main(["recipes", "cp", "stdlib-tiny", "mine.yaml"])
    bundled = (RECIPES / "causal_lm" / "stdlib-tiny.yaml").read_text()
    assert "  default_root_dir: runs/stdlib-tiny\n" in bundled
    # the copy's runs go to runs/mine, not into the bundled recipe's folder; the rest is the recipe as it is
    copied = (in_tmp / "mine.yaml").read_text()
    assert copied == bundled.replace("default_root_dir: runs/stdlib-tiny", "default_root_dir: runs/mine")
    cli = run(["fit", "--config", "mine.yaml", *TWO_STEPS])
    assert cli.trainer.global_step == 2 and Path(cli.trainer.default_root_dir) == Path("runs/mine")
    (in_tmp / "edits").mkdir()
    main(["recipes", "cp", "trainer/ddp", "edits"])
    assert (in_tmp / "edits" / "ddp.yaml").read_text() == (RECIPES / "trainer" / "ddp.yaml").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(["recipes", "cp", "stdlib-tiny", "mine.yaml"])
    assert exit_info.value.code == 2 and "mine.yaml already exists" in capsys.readouterr().err


def test_help_names_every_verb(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    verbs = ["fit", "validate", "test", "predict", "generate", "evaluate", "components", "check", "recipes"]
    verbs += ["import-hf", "export", "compare"]
    for verb in verbs:
        assert re.search(rf"^  {re.escape(verb)} +\S.*$", out, flags=re.M), f"{verb} missing:\n{out}"
    assert set(VERBS) <= set(HELP)


def test_no_recipe_names_an_output_path():
    for path in RECIPES.glob("*/*.yaml"):
        config = yaml.safe_load(path.read_text()) or {}
        trainer = config.get("trainer") or {}
        logger = trainer.get("logger") or {}
        assert "save_dir" not in (logger.get("init_args") or {}), path
        assert "dirpath" not in (config.get("checkpoint") or {}), path
        for callback in trainer.get("callbacks") or []:
            assert not callback["class_path"].endswith("ModelCheckpoint"), f"{path}: use checkpoint:"


MODELS = [n for n in ALL if n.split("/")[0] in ("causal_lm", "masked_lm", "seq2seq") and "imported" not in n]


@pytest.mark.parametrize("recipe", MODELS)  # finetune-imported is layered over import-hf's recipe
def test_checkpointing_can_be_turned_off_with_every_recipe(recipe, in_tmp, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", recipe, "--trainer.enable_checkpointing=false", "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["trainer"]["enable_checkpointing"] is False
    if recipe != "causal_lm/stdlib-tiny":
        return  # the parse is what differs between recipes; one of them runs
    cli = run(
        [
            *("fit", "--config", recipe, "--trainer.enable_checkpointing=false"),
            *("--trainer.default_root_dir=out", "--checkpoint.every_n_train_steps=1", *TWO_STEPS),
        ]
    )
    assert cli.trainer.global_step == 2 and cli.trainer.checkpoint_callback is None
    assert not list(in_tmp.rglob("*.ckpt"))


def _weights(path) -> torch.Tensor:
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    return next(iter(state.values()))


def test_reruns_get_new_version_folders_and_last_resumes_the_newest(in_tmp):
    common = [
        "fit",
        "--config",
        "stdlib-tiny",
        "--trainer.default_root_dir=out",
        "--trainer.log_every_n_steps=1",
    ]
    common.append("--checkpoint.every_n_train_steps=1")
    first = run([*common, *TWO_STEPS])
    second = run([*common, *TWO_STEPS, "--seed_everything=7"])
    versions = sorted(p.name for p in (in_tmp / "out" / "logs").iterdir())
    assert versions == ["version_0", "version_1"]
    for version in versions:
        folder = in_tmp / "out" / "logs" / version
        assert (folder / "config.yaml").exists() and (folder / "metrics.csv").exists()
        assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["last.ckpt", "step=2.ckpt"]
    assert not list(in_tmp.rglob("last-v*"))
    assert [p.name for p in in_tmp.iterdir()] == ["out"]  # nothing outside default_root_dir
    newest = in_tmp / "out" / "logs" / "version_1" / "checkpoints" / "last.ckpt"
    assert second.trainer.checkpoint_callback.last_model_path == str(newest.relative_to(in_tmp))
    assert not torch.equal(_weights(newest), _weights(first.trainer.checkpoint_callback.last_model_path))
    os.utime(in_tmp / "out" / "logs" / "version_0" / "checkpoints" / "step=2.ckpt")  # older names, newer time

    resumed = run([*common, *TWO_STEPS[1:], "--trainer.max_steps=3", "--ckpt_path=last"])
    assert Path(resumed.trainer.ckpt_path).resolve() == newest
    assert resumed.trainer.global_step == 3
    # validate / test take `last` too: the resumed run's own last.ckpt is now the newest
    newest = in_tmp / "out" / "logs" / "version_2" / "checkpoints" / "last.ckpt"
    validated = run(
        [
            "validate",
            "--config",
            "stdlib-tiny",
            "--trainer.default_root_dir=out",
            "--ckpt_path=last",
            "--trainer.limit_val_batches=1",
            *CAUSAL_TINY,
        ]
    )
    assert Path(validated.trainer.ckpt_path).resolve() == newest
