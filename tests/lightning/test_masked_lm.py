"""The masked-LM kind: BERT's corruption, its module, and a CI-sized run that beats a unigram baseline."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lightning_testlib import RECIPES

from swapformer import ConfigError, build_masked_lm
from swapformer.cli import run
from swapformer.cli.generate import main as generate_main
from swapformer.data.tokenizer_base import NUM_SPECIAL_TOKENS
from swapformer.tasks import TASK_MODULES, MaskedLMModule, SwapformerModule
from swapformer.tasks.masked_lm import VALIDATION_SEED

RECIPE = str(RECIPES / "masked_lm" / "masked-stdlib-tiny.yaml")
TINY = dict(vocab_size=40, d_model=16, num_heads=2, num_layers=1, d_ff=32, max_seq_len=64)


def test_corruption_follows_bert_80_10_10_and_never_touches_padding_or_specials():
    module = MaskedLMModule(**TINY, mask_probability=0.15)
    ids = torch.randint(NUM_SPECIAL_TOKENS, 40, (64, 64), generator=torch.Generator().manual_seed(0))
    ids[:, :2] = 2  # special tokens (eos)
    attention_mask = torch.ones_like(ids, dtype=torch.bool)
    attention_mask[:, -8:] = False  # right padding
    inputs, labels = module.mask_tokens(ids, attention_mask, generator=torch.Generator().manual_seed(1))
    chosen = labels != module.pad_id
    assert not chosen[:, :2].any() and not chosen[:, -8:].any()
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(inputs[~chosen], ids[~chosen])
    maskable = 64 * (64 - 2 - 8)
    assert abs(chosen.sum().item() / maskable - 0.15) < 0.02
    masked = (inputs == module.hparams.mask_token_id) & chosen
    kept = (inputs == ids) & chosen
    assert abs(masked.sum().item() / chosen.sum().item() - 0.8) < 0.04
    # a random replacement equals the original 1 time in 36 here, so "kept" is 10% plus that share of the 10%
    assert abs(kept.sum().item() / chosen.sum().item() - (0.1 + 0.1 / 36)) < 0.03
    again, _ = module.mask_tokens(ids, attention_mask, generator=torch.Generator().manual_seed(1))
    assert torch.equal(inputs, again)  # seeded: validation scores the same masks every time


def test_bad_mask_options_are_named():
    with pytest.raises(ValueError, match=r"mask_probability=1.5 must be in \(0, 1\)"):
        MaskedLMModule(**TINY, mask_probability=1.5)
    with pytest.raises(ValueError, match=r"mask_token_id=99 is outside the vocabulary \(vocab_size=40\)"):
        MaskedLMModule(**TINY, mask_token_id=99)
    with pytest.raises(ConfigError, match="kind='causal_lm' does not match MaskedLMModule"):
        MaskedLMModule(**TINY, kind="causal_lm")
    with pytest.raises(
        ConfigError, match=r"unknown argument 'mask_probabilty' \(did you mean 'mask_probability'\?\)"
    ):
        MaskedLMModule(**TINY, mask_probabilty=0.2)
    with pytest.raises(
        ConfigError, match=r"unknown argument 'weight_decy' \(did you mean 'weight_decay'\?\)"
    ):
        MaskedLMModule(**TINY, weight_decy=0.2)


def test_the_module_builds_the_kind_with_its_defaults_and_says_so_in_its_hyperparameters():
    module = MaskedLMModule(vocab_size=40)
    python = build_masked_lm({"vocab_size": 40})
    assert module.config == python.config  # one set of defaults, in Python and in the module
    assert (module.config.placement, module.config.ffn, module.config.positional) == (
        "post",
        "gelu",
        "learned",
    )
    assert module.hparams.kind == "masked_lm"
    assert SwapformerModule.for_kind("masked_lm") is MaskedLMModule


def test_the_task_modules_are_a_registry_by_kind():
    assert TASK_MODULES["masked_lm"] is MaskedLMModule and set(TASK_MODULES) == {
        "causal_lm",
        "masked_lm",
        "seq2seq",
    }
    with pytest.raises(ConfigError, match=r"unknown task module 'masked' \(did you mean 'masked_lm'\?\)"):
        SwapformerModule.for_kind("masked")
    with pytest.raises(
        ConfigError, match=r"task module member 'masked_lm' is already registered \(by swapformer\)"
    ):

        class Another(MaskedLMModule):  # a second module for a kind: which one would load its checkpoints?
            kind = "masked_lm"

            def __init__(self, vocab_size: int, **options) -> None:
                SwapformerModule.__init__(self, locals())


def test_a_batch_with_token_types_reaches_the_model():
    # BERT-style data: token_type_ids in the batch pick rows of the model's token-type table
    module = MaskedLMModule(**{**TINY, "dropout": 0.0, "token_types": 2})
    with torch.no_grad():
        module.model.embedding.token_type.weight[1].normal_(std=3.0)  # sentence B unlike sentence A
    ids = torch.randint(NUM_SPECIAL_TOKENS, 40, (2, 12), generator=torch.Generator().manual_seed(0))
    types = (torch.arange(12) >= 5).long().expand(2, 12)  # A for 5 tokens, then B
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": types}
    with torch.no_grad():
        torch.manual_seed(1)  # the training step draws its masks from the global generator
        loss = module.training_step(batch, 0)
        torch.manual_seed(1)
        untyped = module.training_step({k: v for k, v in batch.items() if k != "token_type_ids"}, 0)
    with torch.no_grad():
        torch.manual_seed(1)
        inputs, labels = module.mask_tokens(ids, batch["attention_mask"])
        logits = module(inputs, token_type_ids=types)  # the module's forward takes them too
    expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=module.pad_id)
    torch.testing.assert_close(loss, expected)
    assert (loss - untyped).abs() > 1e-3  # the types changed the loss: they were not dropped


def _unigram_and_model_nll(module, datamodule, batches: int) -> tuple[float, float, float, float]:
    """Masked-token NLL and accuracy on the first validation batches, of the model and of the training unigram."""
    counts = torch.bincount(datamodule._train_tokens.long(), minlength=module.config.vocab_size).double()
    log_unigram = ((counts + 1) / (counts.sum() + counts.numel())).log()  # add-one smoothing
    model_nll = unigram_nll = correct = unigram_correct = total = 0.0
    module.eval()
    with torch.no_grad():
        for index, batch in zip(range(batches), datamodule.val_dataloader()):
            generator = torch.Generator().manual_seed(VALIDATION_SEED + index)
            inputs, labels = module.mask_tokens(batch["input_ids"], generator=generator)
            asked = labels != module.pad_id
            logits = module(inputs)[asked]
            targets = labels[asked]
            model_nll += F.cross_entropy(logits, targets, reduction="sum").item()
            unigram_nll -= log_unigram[targets].sum().item()
            correct += (logits.argmax(-1) == targets).sum().item()
            unigram_correct += (targets == counts.argmax()).sum().item()
            total += targets.numel()
    return model_nll / total, unigram_nll / total, correct / total, unigram_correct / total


@pytest.mark.slow
def test_the_recipe_trains_a_masked_lm_that_beats_the_unigram_baseline(in_tmp, capsys):
    cli = run(
        [
            "fit",
            "--config",
            RECIPE,
            "--model.init_args.d_model=64",
            "--model.init_args.num_layers=2",
            "--model.init_args.d_ff=256",
            "--model.init_args.warmup_steps=20",
            "--data.init_args.seq_len=64",
            "--data.init_args.batch_size=16",
            "--data.init_args.max_chars=300000",
            "--trainer.max_steps=500",
            "--trainer.val_check_interval=500",
            "--trainer.limit_val_batches=10",
        ]
    )
    model_nll, unigram_nll, accuracy, unigram_accuracy = _unigram_and_model_nll(cli.model, cli.datamodule, 10)
    print(
        f"masked-token NLL {model_nll:.3f} vs unigram {unigram_nll:.3f}; accuracy {accuracy:.3f} vs {unigram_accuracy:.3f}"
    )
    assert model_nll < unigram_nll - 0.5  # measured: 2.30 vs 3.17 nats
    assert accuracy > unigram_accuracy + 0.1  # measured: 0.42 vs 0.27 (a space)
    # the module's own validation (same masks: seeded per batch) reports what was computed here by hand
    assert math.isclose(cli.trainer.callback_metrics["val/ppl"].item(), math.exp(model_nll), rel_tol=1e-4)
    assert math.isclose(cli.trainer.callback_metrics["val/acc"].item(), accuracy, rel_tol=1e-4)
    out = capsys.readouterr().out
    assert "[masked]" in out and "[filled]" in out and "masked tokens right)" in out
    # a masked LM does not decode left to right: `swapformer generate` says so in one line
    with pytest.raises(SystemExit) as exit_info:
        generate_main(["--ckpt_path", cli.trainer.checkpoint_callback.last_model_path, "--prompt", "def"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("swapformer generate: error: ")
    assert "holds a masked_lm model, which does not decode left to right" in err


def test_a_bad_mask_option_in_a_recipe_is_one_line_not_a_traceback(in_tmp, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(["fit", "--config", RECIPE, "--model.init_args.mask_probability=2", "--trainer.fast_dev_run=1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (
        "swapformer fit: error: mask_probability=2.0 must be in (0, 1); BERT uses 0.15"
    )
    assert "Traceback" not in err
