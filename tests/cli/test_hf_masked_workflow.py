"""BERT and RoBERTa through the command line: ``import-hf`` of a masked LM folder, a short ``fit`` of the recipe it
writes, and ``export --format hf`` read back by transformers with the checkpoint's logits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from tests.interop.hf_models import transformers

import swapformer
from swapformer.cli import main
from swapformer.data.tokenizers import ByteTokenizer
from swapformer.tasks import MaskedLMModule, SwapformerModule

SMALL = [
    "--trainer.enable_model_summary=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.max_steps=2",
    "--trainer.limit_val_batches=1",
    "--data.init_args.max_chars=20000",
    "--data.init_args.seq_len=32",
]


def hf_masked(folder: Path, family: str) -> Path:
    """A tiny random BERT or RoBERTa masked LM with a byte-level tokenizer.json, as a Hugging Face folder."""
    torch.manual_seed(0)
    sizes = dict(
        vocab_size=272, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48
    )
    if family == "bert":
        config = transformers.BertConfig(**sizes, max_position_embeddings=64, type_vocab_size=2)
    else:
        config = transformers.RobertaConfig(
            **sizes, max_position_embeddings=66, type_vocab_size=1, pad_token_id=0
        )
    transformers.AutoModelForMaskedLM.from_config(config).save_pretrained(folder)
    ByteTokenizer().save_pretrained(folder)
    return folder


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_import_fit_and_export_a_masked_lm(family, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    hf_masked(tmp_path / family, family)
    main(["import-hf", family, "--out", "imported"])
    assert "masked_lm model with" in capsys.readouterr().out
    recipe = yaml.safe_load((tmp_path / "imported" / "recipe.yaml").read_text())
    assert recipe["model"]["class_path"] == "swapformer.tasks.MaskedLMModule"
    init_args = recipe["model"]["init_args"]
    assert init_args["lm_head_transform"] == "gelu" and init_args["embedding_norm"] is True
    assert init_args["token_types"] == (2 if family == "bert" else 1)

    main(["fit", "--config", "imported/recipe.yaml", *SMALL])
    last = re.search(r"last checkpoint: (\S+)", capsys.readouterr().out)
    assert last and Path(last[1]).is_file()
    main(["export", "--ckpt_path", last[1], "--out", "exported", "--format", "hf"])
    assert "hf model and tokenizer -> exported" in capsys.readouterr().out
    assert json.loads((tmp_path / "exported" / "config.json").read_text())["model_type"] == family

    trained = SwapformerModule.load(last[1])
    assert isinstance(trained, MaskedLMModule)
    imported = swapformer.from_hf(tmp_path / family)
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "exported").eval()
    ids = torch.randint(3, 260, (2, 20))
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[1, 12:] = 0
    ids = ids.masked_fill(mask == 0, theirs.config.pad_token_id)
    real = mask.bool()
    with torch.no_grad():
        ours = trained.model.eval()(ids, real)
        torch.testing.assert_close(
            ours[real], theirs(ids, attention_mask=mask).logits[real], rtol=1e-4, atol=1e-4
        )
        assert (ours[real] - imported(ids, real)[real]).abs().max() > 1e-4  # the two steps trained it
