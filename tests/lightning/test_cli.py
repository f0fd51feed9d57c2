"""The ``swapformer`` command: components, every recipe (parse + 2 steps), early errors, W&B offline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lightning_testlib import CAUSAL_TINY, RECIPES, SEQ2SEQ_TINY

from swapformer import family
from swapformer.cli import main, run

MODEL_RECIPES = sorted(
    p.relative_to(RECIPES).as_posix()
    for p in RECIPES.glob("*/*.yaml")
    if p.parent.name in ("causal_lm", "seq2seq", "masked_lm")
    and p.name != "finetune-imported.yaml"  # layered over import-hf's recipe: tests/interop/test_finetune.py
)
COMPOSABLE = sorted(
    p.relative_to(RECIPES).as_posix()
    for p in RECIPES.glob("*/*.yaml")
    if p.parent.name in ("trainer", "logger")
)
# Trainer recipes that start processes, or need a GPU or several nodes: only parsed here; test_distributed.py
# runs ddp.yaml and fsdp2.yaml with 2 CPU processes in subprocesses (DDP inside pytest re-runs the session),
# test_tensor_parallel.py tp.yaml with 2 and fsdp2-tp.yaml with 4.
NOT_IN_PROCESS = {
    *("trainer/ddp.yaml", "trainer/fsdp.yaml", "trainer/fsdp2.yaml", "trainer/multinode.yaml"),
    *("trainer/tp.yaml", "trainer/fsdp2-tp.yaml"),
}


def _overrides(recipe: str, data: Path) -> list[str]:
    """Tiny sizes, and for the recipes that read files from ``../shared/data``, the generated files laid out
    the same way under ``data`` (the ``generated_data`` fixture): the recipe is tested, not the corpus."""
    args = list(SEQ2SEQ_TINY if recipe.startswith("seq2seq") else CAUSAL_TINY)
    if recipe == "causal_lm/llama-style.yaml":
        args.append("--model.init_args.num_kv_heads=2")
    if recipe == "causal_lm/gpt2-124m.yaml":  # reads a prepared folder: one of the generated text, BPE 300
        from swapformer.data.prepare import prepare

        folder = data / "prepared-bpe-300"
        prepare(str(data / "tinyshakespeare" / "input.txt"), tokenizer="bpe:300", out=folder, progress=False)
        args.append(f"--data.init_args.path={folder}")
    if recipe == "causal_lm/shakespeare-char.yaml":
        args.append(f"--data.init_args.path={data / 'tinyshakespeare' / 'input.txt'}")
    if recipe.startswith("seq2seq") and "multi30k" not in recipe:
        args += ["--data.init_args.num_train=200", "--data.init_args.num_val=20"]
    if recipe == "seq2seq/transformer-base.yaml":
        args.append("--data.init_args.tokenizer_options={vocab_size: 300}")
    if recipe == "seq2seq/multi30k-de-en.yaml":
        for split, stem in (("", "train"), ("val_", "val"), ("test_", "test_2016_flickr")):
            for side, lang in (("src", "de"), ("tgt", "en")):
                args.append(f"--data.init_args.{split}{side}_path={data / 'multi30k' / f'{stem}.{lang}.gz'}")
        args.append("--data.init_args.tokenizer_options={vocab_size: 500}")
    return args


def test_components_lists_every_family_and_member(capsys):
    member = family("norm")
    member.add(
        "testnorm", lambda *, d_model: None, description="a plug-in norm for this test", source="myplugin"
    )
    try:
        main(["components"])
    finally:
        member._members.pop("testnorm")
    out = capsys.readouterr().out
    for name in ("attention", "positional", "norm", "placement", "ffn"):
        assert f"{name}: {family(name).description}" in out
        for m in family(name).describe():
            assert m.name in out and m.description in out
    assert re.search(r"\n  testnorm +a plug-in norm for this test  \[myplugin\]\n", out)
    capsys.readouterr()
    main(["components", "positional"])
    assert capsys.readouterr().out.startswith("positional:")


@pytest.mark.parametrize("recipe", MODEL_RECIPES)
def test_recipe_prints_its_config(recipe, in_tmp, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(RECIPES / recipe), "--print_config"])
    assert exit_info.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["class_path"].startswith("swapformer.tasks.")
    assert config["data"]["class_path"].startswith("swapformer.data.")


@pytest.mark.parametrize("recipe", MODEL_RECIPES)
def test_recipe_runs_two_steps(recipe, in_tmp, generated_data):
    overrides = _overrides(recipe, generated_data)
    cli = run(["fit", "--config", str(RECIPES / recipe), "--trainer.fast_dev_run=2", *overrides])
    assert cli.trainer.fit_loop.epoch_loop.batch_progress.total.completed == 2
    assert cli.trainer.global_step >= 1  # gpt2-124m accumulates gradients over 8 batches
    assert cli.model.hparams.vocab_size == cli.datamodule.vocab_size  # linked from the data
    assert cli.model.tokenizer is not None


@pytest.mark.parametrize("extra", COMPOSABLE)
def test_trainer_and_logger_recipes_compose(extra, in_tmp, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    base = str(RECIPES / "causal_lm" / "stdlib-tiny.yaml")
    with pytest.raises(SystemExit):
        main(["fit", "--config", base, "--config", str(RECIPES / extra), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    if extra.startswith("logger"):
        assert config["trainer"]["logger"]["class_path"].endswith("Logger")
    if extra in NOT_IN_PROCESS:
        return
    cli = run(
        ["fit", "--config", base, "--config", str(RECIPES / extra), "--trainer.fast_dev_run=2", *CAUSAL_TINY]
    )
    assert cli.trainer.global_step == 2
    if "wandb" in extra:
        import wandb

        wandb.finish()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "--model.init_args.positional=rop",
            r"model\.init_args\.positional: unknown positional 'rop' \(did you mean 'rope'\?\); available: alibi, learned, none, nope, rope, sinusoidal, t5_relative",
        ),
        ("--model.init_args.num_heads=3", r"model\.init_args\.d_model=128 is not divisible by num_heads=3"),
        (
            "--model.init_args.ffn={name: swiglu, widht: 3}",
            r"model\.init_args\.ffn: ffn 'swiglu' takes no option 'widht'",
        ),
    ],
)
def test_bad_recipe_value_fails_before_data_is_read(override, expected, in_tmp, capsys, caplog):
    missing = in_tmp / "does-not-exist.txt"
    with pytest.raises(SystemExit) as exit_info, caplog.at_level("INFO"):
        main(
            [
                "fit",
                "--config",
                str(RECIPES / "causal_lm" / "stdlib-tiny.yaml"),
                f"--data.init_args.path={missing}",
                override,
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("swapformer fit: error:") == 1
    assert re.search(expected, err), err
    assert "does not exist" not in err and "Traceback" not in err  # the data was never touched
    assert not (in_tmp / "runs").exists()
    assert "Seed set" not in caplog.text  # the error line comes alone


def test_the_seed_is_said_once_the_model_and_data_are_made(in_tmp, caplog):
    with caplog.at_level("INFO"):
        with pytest.raises(SystemExit):
            main(["fit", "--config", "stdlib-tiny", "--data.init_args.seq_len=0"])  # a DataError
        assert "Seed set" not in caplog.text
        cli = run(["fit", "--config", "stdlib-tiny", "--trainer.fast_dev_run=1", *CAUSAL_TINY])
    assert caplog.text.count("Seed set to 1234") == 1 and cli.trainer.global_step == 1
    assert "[rank" not in caplog.text  # one process: Lightning's line names no rank


def test_data_error_is_one_clean_message(in_tmp, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "--config",
                str(RECIPES / "causal_lm" / "stdlib-tiny.yaml"),
                "--data.init_args.path=nope.txt",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        "swapformer fit: error: DataError: path='nope.txt' does not exist" in err and "Traceback" not in err
    )


def test_wandb_offline_run_logs_config_and_metrics(in_tmp, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cli = run(
        [
            "fit",
            "--config",
            str(RECIPES / "causal_lm" / "stdlib-tiny.yaml"),
            "--config",
            str(RECIPES / "logger" / "wandb.yaml"),
            "--trainer.default_root_dir=root",
            "--trainer.logger.init_args.name",
            "test-run",
            "--trainer.max_steps=4",
            "--trainer.log_every_n_steps=1",
            "--trainer.val_check_interval=4",
            "--trainer.limit_val_batches=1",
            *CAUSAL_TINY,
        ]
    )
    try:
        experiment = cli.trainer.logger.experiment
        assert experiment.name == "test-run"
        config = dict(experiment.config)
        assert config["d_model"] == 32 and config["vocab_size"] == cli.datamodule.vocab_size  # module hparams
        assert config["config"]["trainer"]["max_steps"] == 4  # the whole resolved recipe
        assert config["config"]["model"]["class_path"] == "swapformer.tasks.CausalLMModule"
        summary = dict(experiment.summary)
        assert summary["trainer/global_step"] >= 3
        assert summary["train/loss"] == pytest.approx(
            float(cli.trainer.callback_metrics["train/loss"]), rel=1e-5
        )
        assert "val/loss" in summary and "val/ppl" in summary
        runs = list((in_tmp / "root" / "wandb").glob("offline-run-*"))
        assert len(runs) == 1
        # every output under default_root_dir; checkpoints in the W&B run's folder (--ckpt_path last finds them)
        assert (in_tmp / "root" / "swapformer" / experiment.id / "checkpoints" / "last.ckpt").exists()
        assert (in_tmp / "root" / "config.yaml").exists()
        assert [p.name for p in in_tmp.iterdir()] == ["root"]
    finally:
        wandb.finish()
    assert list(runs[0].glob("run-*.wandb"))  # the offline run's file, complete once the run has finished
    assert os.environ.get("WANDB_MODE") == "offline"
    assert sys.modules.get("wandb") is wandb


@pytest.mark.parametrize("recipe", ["seq2seq/dates.yaml", "causal_lm/stdlib-tiny.yaml"])
def test_predict_runs_from_a_checkpoint(recipe, in_tmp):
    tiny = [*SEQ2SEQ_TINY, "--data.init_args.num_train=200", "--data.init_args.num_val=12"]
    if recipe.startswith("causal_lm"):
        tiny = CAUSAL_TINY
    fitted = run(["fit", "--config", str(RECIPES / recipe), "--trainer.fast_dev_run=2", *tiny])
    fitted.trainer.save_checkpoint("tiny.ckpt")
    cli = run(["predict", "--config", str(RECIPES / recipe), "--ckpt_path=tiny.ckpt", *tiny])
    batches = cli.trainer.predict_loop.predictions
    predictions = [p for batch in batches for p in batch]
    expected = len(cli.datamodule.predict_dataloader().dataset)
    assert len(predictions) == expected > 0
    assert all(isinstance(p, str) for p in predictions)  # decoded with the tokenizer from the checkpoint


VERB_IMPORT = """
import gc, sys
import swapformer.cli as cli
before = "lightning" in sys.modules
gc.disable() if sys.argv[1] == "off" else None
cli._import_verb("fit")
frozen = gc.get_freeze_count()
cli._import_verb("fit")
print(before, "lightning" in sys.modules, gc.isenabled(), frozen > 100_000, gc.get_freeze_count() == frozen)
"""


@pytest.mark.parametrize("collector", ["on", "off"])
def test_a_verb_is_imported_when_it_runs_with_the_collector_paused_then_as_it_was(collector):
    # `import swapformer.cli` leaves Lightning alone; the verb's import freezes what it made (kept out of every
    # later collection) and hands the collector back in the state it found it, once per process
    result = subprocess.run(
        [sys.executable, "-c", VERB_IMPORT, collector], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "True", str(collector == "on"), "True", "True"]
