"""The Hugging Face workflow the way a user walks it, in a scratch folder: README's three commands as printed,
a fine-tuned checkpoint that outlives the import folder, import-hf refusing to overwrite, model folders taken
wherever a checkpoint is."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from tests.interop.hf_models import _spread_weights, transformers

import swapformer
from swapformer.cli import main
from swapformer.data.tokenizers import ByteTokenizer
from swapformer.tasks import SwapformerModule

REPO = Path(__file__).resolve().parents[2]
SMALL = [  # the bundled recipe, on less text and shorter rows (the commands are the README's otherwise)
    "--trainer.enable_model_summary=false",
    "--trainer.enable_progress_bar=false",
    "--data.init_args.max_chars=60000",
    "--data.init_args.seq_len=32",
    "--trainer.limit_val_batches=2",
]


def hf_gpt2(folder: Path, *, layers: int = 2, seed: int = 0) -> Path:
    """A tiny random GPT-2 with a byte-level tokenizer.json, as a Hugging Face folder."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_embd=32, n_layer=layers, n_head=4, vocab_size=272, n_positions=128, bos_token_id=1, eos_token_id=2
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    ByteTokenizer().save_pretrained(folder)
    return folder


def readme_commands() -> list[str]:
    """The three Hugging Face commands of README.md, as printed."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(swapformer import-hf.*?)```", text, re.S)
    assert block, "README.md has no import-hf block"
    return [line.split("#")[0].strip() for line in block[1].splitlines() if line.strip()]


def swapformer_cli(command: str, capsys) -> str:
    """Run ``command`` (a ``swapformer ...`` line) in-process; its stdout and stderr."""
    main(command.split()[1:])
    captured = capsys.readouterr()
    return captured.out + captured.err


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hf_gpt2(tmp_path / "gpt2")
    return tmp_path


def test_readme_commands_work_as_printed(scratch, capsys):
    commands = readme_commands()
    assert [c.split()[1] for c in commands] == ["import-hf", "fit", "export"]
    last = None
    values = {"<hf-model-dir>": "gpt2", "<out>": "imported", "<dir>": "exported", "<name>": "gpt2"}
    for i, command in enumerate(commands):
        for placeholder, value in values.items():
            command = command.replace(placeholder, value)
        assert "<" not in command, f"README names a placeholder this test does not know: {command}"
        if i == 1:
            command += " --trainer.max_steps=3 " + " ".join(SMALL)  # every other value as printed
        if i == 2:  # the file the README names is the one the fit wrote and printed
            named = command.split("--ckpt_path ")[1].split()[0]
            assert last and Path(named).resolve() == Path(last[1]).resolve(), (named, last)
        output = swapformer_cli(command, capsys)
        if i == 1:  # a 3-step run (shorter than the validation interval) still ends with last.ckpt
            last = re.search(r"last checkpoint: (\S+)", output)
            assert last and Path(last[1]).is_file(), output
    theirs = transformers.AutoModelForCausalLM.from_pretrained(scratch / "exported").eval()
    ours = SwapformerModule.load(last[1])
    ids = torch.randint(3, 260, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(ours.model(ids), theirs(ids).logits, rtol=1e-4, atol=1e-4)


def test_a_fine_tuned_checkpoint_outlives_its_import_folder(scratch, capsys):
    main(["import-hf", "gpt2", "--out", "imported"])
    recipe = yaml.safe_load((scratch / "imported" / "recipe.yaml").read_text())
    # paths relative to the recipe, outputs under runs/<model name> like every bundled recipe
    assert recipe["model"]["init_args"]["init_from"] == "."
    assert recipe["data"]["init_args"]["tokenizer"] == "."
    assert recipe["trainer"]["default_root_dir"] == "runs/gpt2"
    (scratch / "elsewhere").mkdir()
    # run from another folder: the recipe's own paths still name the import
    main(
        [
            "fit",
            "--config",
            str(scratch / "imported" / "recipe.yaml"),
            "--config",
            "causal_lm/finetune-imported",
            "--trainer.max_steps=2",
            f"--trainer.default_root_dir={scratch / 'runs' / 'gpt2'}",
            *SMALL,
        ]
    )
    checkpoint = scratch / "runs" / "gpt2" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    capsys.readouterr()
    before = generated(checkpoint, capsys)

    shutil.move(scratch / "imported", scratch / "moved")  # the import folder goes away
    assert generated(checkpoint, capsys) == before
    main(["evaluate", "--ckpt_path", str(checkpoint), "--path", str(REPO / "README.md")])
    assert "perplexity" in capsys.readouterr().out
    main(["export", "--ckpt_path", str(checkpoint), "--out", "native"])
    assert swapformer.load(scratch / "native").config.num_layers == 2

    # another model imported where the first one was: the checkpoint is still its own model
    hf_gpt2(scratch / "other", layers=3, seed=1)
    main(["import-hf", "other", "--out", "imported"])
    assert generated(checkpoint, capsys) == before


def generated(checkpoint: Path, capsys) -> str:
    capsys.readouterr()
    main(["generate", "--ckpt_path", str(checkpoint), "--prompt", "def ", "--max_new_tokens", "8"])
    return capsys.readouterr().out


def test_import_hf_refuses_a_folder_that_holds_files_unless_overwrite(scratch, capsys):
    main(["import-hf", "gpt2", "--out", "imported"])
    edited = (scratch / "imported" / "recipe.yaml").read_text() + "# my edit\n"
    (scratch / "imported" / "recipe.yaml").write_text(edited)
    with pytest.raises(SystemExit) as exit_info:
        main(["import-hf", "gpt2", "--out", "imported"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(r"--out imported is not empty .*recipe\.yaml.*--overwrite", err), err
    assert (scratch / "imported" / "recipe.yaml").read_text() == edited  # untouched
    main(["import-hf", "gpt2", "--out", "imported", "--overwrite"])
    assert "# my edit" not in (scratch / "imported" / "recipe.yaml").read_text()


def test_generate_and_evaluate_take_model_folders(scratch, capsys):
    main(["import-hf", "gpt2", "--out", "imported"])
    reference = swapformer.from_hf(scratch / "gpt2")
    swapformer.load(scratch / "imported").save_pretrained(scratch / "saved")  # no tokenizer.json
    ids = torch.tensor([ByteTokenizer().encode("def main")])
    with torch.no_grad():
        expected = reference.eval()(ids)
    for model in ("gpt2", "imported", "imported/model.safetensors", "saved"):
        module = SwapformerModule.load(scratch / model)
        assert not module.training
        with torch.no_grad():
            torch.testing.assert_close(module.model(ids), expected)
    outputs = set()
    capsys.readouterr()
    for model in ("gpt2", "imported", "imported/model.safetensors"):
        main(["generate", "--ckpt_path", model, "--prompt", "def ", "--max_new_tokens", "6"])
        outputs.add(capsys.readouterr().out)
        main(["evaluate", "--ckpt_path", model, "--path", str(REPO / "README.md")])
        assert "perplexity" in capsys.readouterr().out
    assert len(outputs) == 1  # one model, whichever way it is named
    with pytest.raises(SystemExit):
        main(["generate", "--ckpt_path", "saved", "--prompt", "def "])
    assert (
        "saved holds no tokenizer: give a .ckpt of swapformer fit, or a model folder with its tokenizer.json"
        in (capsys.readouterr().err)
    )


def test_fit_says_at_its_start_when_the_recipe_model_has_no_hf_equivalent(scratch, capsys, caplog):
    main(["import-hf", "gpt2", "--out", "imported"])
    main(
        [
            "fit",
            "--config",
            "imported/recipe.yaml",
            "--config",
            "causal_lm/finetune-imported",
            "--model.init_args.attention={name: sliding_window, window: 16}",
            "--trainer.max_steps=1",
            "--trainer.enable_checkpointing=false",
            *SMALL,
        ]
    )
    captured = capsys.readouterr()
    notes = [line for line in caplog.messages if "Hugging Face" in line]  # Lightning's info log (stderr)
    assert notes == [
        "note: attention {'name': 'sliding_window', 'window': 16} has no GPT-2 equivalent, so this model cannot "
        "be exported to Hugging Face (--format swapformer keeps it)"
    ]
    assert "checkpointing is off" in captured.out


def test_generate_on_an_imported_folder_decodes_with_its_generation_config(tmp_path, capsys):
    """The folder's generation_config.json (beams, length, penalties) drives ``swapformer generate``, straight
    from the Hugging Face folder and after import-hf; the options given win."""
    folder = hf_gpt2(tmp_path / "gpt2")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    _spread_weights(theirs, gain=1.5)  # logits of a few units, so the settings change the tokens
    theirs.generation_config = transformers.GenerationConfig(
        num_beams=3,
        max_length=14,
        repetition_penalty=1.4,
        no_repeat_ngram_size=2,
        eos_token_id=2,
        pad_token_id=0,
    )
    theirs.save_pretrained(folder)
    main(["import-hf", str(folder), "--out", str(tmp_path / "imported")])
    ids = torch.tensor([ByteTokenizer().encode("def ")])
    outputs = []
    for options in ({}, {"num_beams": 2, "max_new_tokens": 5}):  # beams print whole (no streamed bytes)
        expected = theirs.generate(ids, attention_mask=torch.ones_like(ids), **options)
        text = ByteTokenizer().decode(expected[0, ids.size(1) :].tolist())
        outputs.append(text)
        given = [str(part) for name, value in options.items() for part in (f"--{name}", value)]
        for model in (folder, tmp_path / "imported"):
            capsys.readouterr()
            main(["generate", "--ckpt_path", str(model), "--prompt", "def ", *given])
            assert capsys.readouterr().out == "def " + text + "\n"
    assert outputs[0] != outputs[1]
