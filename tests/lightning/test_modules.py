"""Loss, metrics, decoding and checkpoints of the LightningModules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from swapformer.data import CharTokenizer
from swapformer.errors import CheckpointError
from swapformer.tasks import CausalLMModule, MaskedLMModule, Seq2SeqModule

TINY = dict(vocab_size=30, d_model=16, num_heads=2, num_layers=1, d_ff=32, max_seq_len=32, dropout=0.0)


def _batch(generator, n=3, length=7, vocab=30):
    labels = torch.randint(4, vocab, (n, length), generator=generator)
    labels[0, -3:] = 0  # padding at the end of row 0
    labels[2, -1] = 0
    return labels


@pytest.mark.parametrize("loss_chunk", [None, 0, 5])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_loss_is_cross_entropy_with_label_smoothing_ignoring_pad(smoothing, loss_chunk):
    module = CausalLMModule(**TINY, label_smoothing=smoothing, loss_chunk=loss_chunk)
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 7, 16, generator=g)
    labels = _batch(g)
    loss, nll, count, _, _ = module.lm_loss(hidden, labels)
    with torch.no_grad():
        logits = module.model.lm_head(hidden)
    want = F.cross_entropy(
        logits.reshape(-1, 30), labels.reshape(-1), ignore_index=0, label_smoothing=smoothing
    )
    torch.testing.assert_close(loss, want)
    # the same from the definition: (1 - e) * NLL + e * mean over classes of -log p, averaged over real tokens
    logp = logits.log_softmax(-1)
    real = labels != 0
    per_token = -(1 - smoothing) * logp.gather(-1, labels[..., None])[..., 0] - smoothing * logp.mean(-1)
    torch.testing.assert_close(loss, per_token[real].mean())
    torch.testing.assert_close(nll, -logp.gather(-1, labels[..., None])[..., 0][real].mean())
    assert count == int(real.sum()) == 21 - 4


@pytest.mark.parametrize("loss_chunk", [None, 0, 4])
def test_val_metrics_perplexity_and_accuracy_ignore_pad(loss_chunk):
    module = CausalLMModule(**TINY, loss_chunk=loss_chunk)
    g = torch.Generator().manual_seed(1)
    nlls, hits, total = [], 0, 0
    for _ in range(3):
        hidden = torch.randn(3, 7, 16, generator=g)
        labels = _batch(g)
        module._shared_step("val", hidden, labels)
        with torch.no_grad():
            logits = module.model.lm_head(hidden)
        real = labels != 0
        nlls.append(F.cross_entropy(logits[real], labels[real], reduction="sum"))
        hits += int((logits.argmax(-1) == labels)[real].sum())
        total += int(real.sum())
    mean_nll = float(sum(nlls)) / total
    assert float(module.val_ppl.compute()) == pytest.approx(math.exp(mean_nll), rel=1e-5)
    assert float(module.val_loss.compute()) == pytest.approx(mean_nll, rel=1e-5)
    assert float(module.val_acc.compute()) == pytest.approx(hits / total, rel=1e-6)


def test_translate_ids_is_the_argmax_of_teacher_forcing():
    torch.manual_seed(0)
    module = Seq2SeqModule(**TINY).eval()
    src = torch.randint(4, 30, (4, 9))
    src[1, 6:] = 0
    mask = src != 0
    out = module.translate_ids(src, mask, max_len=12)  # eos and what follows removed
    assert len(out) == 4 and all(len(ids) <= 12 for ids in out)
    for row in range(4):
        ids = out[row] + [2] if len(out[row]) < 12 else out[row]
        tgt = torch.tensor([[1, *ids[:-1]]])
        logits = module.model(src[row : row + 1, : int(mask[row].sum())], tgt)
        assert logits[0].argmax(-1).tolist() == ids  # each token is the argmax given the previous ones


def test_generate_stops_at_eos_and_pads_after():
    module = Seq2SeqModule(**TINY, lm_head_bias=True).eval()
    with torch.no_grad():  # force eos first: every row stops after one step
        # (a zero head with weight[2] = 1 did not: the post-norm output sums to ~0, so eos tied with every id)
        module.model.lm_head.weight.zero_()
        module.model.lm_head.bias.zero_()
        module.model.lm_head.bias[2] = 1.0
    src = torch.randint(4, 30, (3, 5))
    out = module.model.generate(src, max_new_tokens=10, eos_token_id=2, decoder_start_token_id=1)
    assert out.tolist() == [[1, 2], [1, 2], [1, 2]]


def test_hparams_are_primitive_and_checkpoint_round_trips(tmp_path):
    from lightning.pytorch import Trainer

    module = CausalLMModule(**TINY, positional={"name": "rope", "base": 500.0})
    module.tokenizer = CharTokenizer.fit("hello world")
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_steps=0)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    raw = torch.load(tmp_path / "m.ckpt", weights_only=True)  # plain data only
    assert raw["tokenizer"] == module.tokenizer.to_dict()
    assert raw["hyper_parameters"]["positional"] == {"name": "rope", "base": 500.0}
    loaded = CausalLMModule.load(tmp_path / "m.ckpt")
    assert loaded.tokenizer == module.tokenizer
    x = torch.randint(4, 30, (2, 8))
    torch.testing.assert_close(loaded(x), module.eval()(x))
    assert isinstance(loaded.generate_text("hello", max_new_tokens=5), str)


class _Boom:
    def __reduce__(self):
        return (eval, ("__import__('pathlib').Path('PWNED').write_text('ran')",))


def test_checkpoint_that_runs_code_on_load_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = CausalLMModule(**TINY)
    evil = {
        "state_dict": module.state_dict(),
        "hyper_parameters": {**module.hparams, "payload": _Boom()},
        "pytorch-lightning_version": "2.6.6",
    }
    torch.save(evil, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match=r"evil\.ckpt was refused for safety: .*nothing in it ran"):
        CausalLMModule.load(tmp_path / "evil.ckpt")
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("module_class", [CausalLMModule, Seq2SeqModule, MaskedLMModule])
def test_module_signatures_cover_every_model_config_key_with_the_kinds_defaults(module_class):
    """jsonargparse type-checks recipes from the signature: every ModelConfig key is there (the kind aside, which
    the module fixes), with the default a model of that kind built in Python gets."""
    import dataclasses
    import inspect

    from swapformer import ModelConfig, build

    keys = {f.name for f in dataclasses.fields(ModelConfig) if f.init} - {"kind"}
    parameters = inspect.signature(module_class.__init__).parameters
    assert keys <= set(parameters)
    python = build({"kind": module_class.kind, "vocab_size": 11}).config.to_dict()
    assert {k: parameters[k].default for k in keys - {"vocab_size"}} == {
        k: v for k, v in python.items() if k in keys - {"vocab_size"}
    }
    module = module_class(vocab_size=11)
    assert module.config == build({"kind": module_class.kind, "vocab_size": 11}).config


def test_training_options_are_its_arguments_only():
    """What training_options returns becomes the checkpoint's hyperparameters, which predict re-parses as
    arguments: a helper variable of its checks must not travel with them."""
    from swapformer.tasks.base import TRAINING_KEYS, training_options

    assert sorted(training_options()) == sorted(TRAINING_KEYS)
