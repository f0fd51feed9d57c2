"""The closed loop: a Hugging Face model imported as components, one component swapped, fine-tuned with
`swapformer fit` from its weights and its own tokenizer, then exported back to transformers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from tests.interop.hf_models import transformers

import swapformer
from swapformer.cli import run
from swapformer.data.tokenizers import ByteTokenizer
from swapformer.tasks import CausalLMModule, SwapformerModule

RECIPE = "recipes/causal_lm/finetune-imported.yaml"
FAST = [
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.logger=false",
    "--data.init_args.max_chars=200000",
    "--data.init_args.seq_len=32",
]


@pytest.fixture
def imported(tmp_path, monkeypatch):
    """A tiny random Llama with a byte-level tokenizer.json, imported with `swapformer import-hf`."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=272,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path / "hf")
    ByteTokenizer().save_pretrained(tmp_path / "hf")
    run(["import-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "imported")])
    return tmp_path / "imported"


def test_import_hf_writes_components_weights_tokenizer_and_a_recipe(imported):
    names = sorted(p.name for p in imported.iterdir())
    assert names == [
        "config.json",
        "generation_config.json",  # the checkpoint's generation defaults travel with it
        "model.safetensors",
        "recipe.yaml",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    recipe = yaml.safe_load((imported / "recipe.yaml").read_text())
    init_args = recipe["model"]["init_args"]
    assert recipe["model"]["class_path"] == "swapformer.tasks.CausalLMModule"
    assert (init_args["positional"]["name"], init_args["norm"]["name"], init_args["ffn"]["name"]) == (
        "rope",
        "rmsnorm",
        "swiglu",
    )
    # paths relative to the recipe file (its own folder), outputs under runs/<model name>
    assert init_args["init_from"] == "." and recipe["data"]["init_args"]["tokenizer"] == "."
    assert recipe["trainer"]["default_root_dir"] == "runs/hf"
    assert swapformer.load(imported).config.num_kv_heads == 2


def test_init_from_loads_the_weights_and_keeps_the_models_vocabulary(imported):
    recipe = yaml.safe_load((imported / "recipe.yaml").read_text())["model"]["init_args"]
    recipe["init_from"] = str(imported)  # as the CLI reads the recipe's "." (relative to the file)
    module = CausalLMModule(
        vocab_size=260, **{**recipe, "attention": {"name": "sliding_window", "window": 8}}
    )
    reference = swapformer.load(imported)
    assert module.config.vocab_size == 272  # the model's, not the tokenizer's 260
    for key, value in reference.state_dict().items():
        assert torch.equal(module.model.state_dict()[key], value), key
    with pytest.raises(
        swapformer.ConfigError, match=r"the data's tokenizer has 300 ids but init_from=.* 272"
    ):
        CausalLMModule(vocab_size=300, **recipe)
    with pytest.raises(swapformer.ConfigError, match=r"does not fit the recipe's model: .*gate_proj.weight"):
        CausalLMModule(vocab_size=260, **{**recipe, "d_ff": 48})


def test_the_swapped_model_fine_tunes_from_its_weights_and_exports_to_transformers(imported, tmp_path):
    args = [
        "fit",
        "--config",
        str(imported / "recipe.yaml"),
        "--config",
        str(swapformer_recipe()),
        *FAST,
        "--model.init_args.attention={name: sliding_window, window: 64}",
        "--trainer.max_steps=30",
        "--trainer.val_check_interval=30",
        "--trainer.log_every_n_steps=5",
        "--model.init_args.lr=2e-3",
        "--model.init_args.warmup_steps=5",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.save_dir={tmp_path}/logs",
        f"--trainer.default_root_dir={tmp_path}/runs",
    ]
    cli = run(args)
    module = cli.model
    assert module.config.attention == {"name": "sliding_window", "window": 64}
    assert module.tokenizer.to_hf_json() == (imported / "tokenizer.json").read_text()
    with open(next((tmp_path / "logs").rglob("metrics.csv"))) as file:
        rows = list(csv.DictReader(file))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) >= 5 and losses[-1] < losses[0] - 0.3, losses  # the imported, swapped model learns

    checkpoint = (
        cli.trainer.checkpoint_callback.last_model_path or cli.trainer.checkpoint_callback.best_model_path
    )
    run(["export", "--ckpt_path", checkpoint, "--out", str(tmp_path / "native")])  # swapformer's format
    native = swapformer.load(tmp_path / "native")
    assert native.config == module.config and (tmp_path / "native" / "tokenizer.json").is_file()
    assert all(
        torch.equal(value, module.model.state_dict()[key]) for key, value in native.state_dict().items()
    )
    out = ["--out", str(tmp_path / "exported"), "--format", "hf", "--model_type", "mistral"]  # as the default
    run(["export", "--ckpt_path", checkpoint, *out])
    exported = tmp_path / "exported"
    assert json.loads((exported / "config.json").read_text())["model_type"] == "mistral"  # llama + window
    theirs = transformers.AutoModelForCausalLM.from_pretrained(exported).eval()
    ids = torch.randint(3, 260, (2, 70))  # longer than the window
    with torch.no_grad():
        torch.testing.assert_close(module.model.eval()(ids), theirs(ids).logits, rtol=1e-4, atol=1e-4)
    from tokenizers import Tokenizer

    text = "def main():\n    return 'é' * 2\n"
    assert Tokenizer.from_file(str(exported / "tokenizer.json")).encode(
        text, add_special_tokens=False
    ).ids == (module.tokenizer.encode(text))


def test_the_fine_tuning_recipe_runs_two_steps(imported):
    cli = run(
        [
            "fit",
            "--config",
            str(imported / "recipe.yaml"),
            "--config",
            str(swapformer_recipe()),
            *FAST,
            "--trainer.max_steps=2",
            "--trainer.enable_checkpointing=false",
            "--trainer.limit_val_batches=0",
        ]
    )
    assert cli.trainer.global_step == 2


def swapformer_recipe():
    return Path(__file__).resolve().parents[2] / RECIPE


def test_generation_defaults_go_through_fit_to_the_checkpoint_generate_and_export(imported, tmp_path, capsys):
    # the imported model's generation_config.json, with settings that change what generate() prints
    file = imported / "generation_config.json"
    settings = {"max_new_tokens": 4, "num_beams": 2, "no_repeat_ngram_size": 2, "repetition_penalty": 1.3}
    file.write_text(json.dumps({**json.loads(file.read_text()), **settings}))
    expected = swapformer.load(imported).generation_config
    cli = run(
        [
            "fit",
            "--config",
            str(imported / "recipe.yaml"),
            "--config",
            str(swapformer_recipe()),
            *FAST,
            "--trainer.max_steps=1",
            "--trainer.limit_val_batches=0",
            f"--trainer.default_root_dir={tmp_path}/runs",
        ]
    )
    assert cli.model.model.generation_config == expected  # init_from brought them with the weights
    (checkpoint,) = (tmp_path / "runs").rglob("last.ckpt")
    assert SwapformerModule.load(checkpoint).model.generation_config == expected

    run(["export", "--ckpt_path", str(checkpoint), "--out", str(tmp_path / "native")])
    written = json.loads((tmp_path / "native" / "generation_config.json").read_text())
    assert written == expected.to_dict()
    run(["export", "--ckpt_path", str(checkpoint), "--out", str(tmp_path / "hf_out"), "--format", "hf"])
    theirs = transformers.GenerationConfig.from_pretrained(tmp_path / "hf_out")
    assert (theirs.num_beams, theirs.max_new_tokens, theirs.no_repeat_ngram_size) == (2, 4, 2)

    outputs = []
    for model in (checkpoint, tmp_path / "native"):
        capsys.readouterr()
        run(["generate", "--ckpt_path", str(model), "--prompt", "def "])
        outputs.append(capsys.readouterr().out)
    (tmp_path / "native" / "generation_config.json").unlink()  # the same weights with swapformer's defaults
    run(["generate", "--ckpt_path", str(tmp_path / "native"), "--prompt", "def "])
    assert outputs[0] == outputs[1] != capsys.readouterr().out
