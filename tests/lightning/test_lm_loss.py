"""The chunked LM loss (``loss_chunk``): the same loss, metrics and gradients as the full logits, a chunk at a time."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch
import torch.nn.functional as F

from swapformer.errors import ConfigError
from swapformer.nn.lm_loss import check_loss_device, lm_loss
from swapformer.tasks import CausalLMModule, MaskedLMModule, Seq2SeqModule

VOCAB = 37
TINY = dict(vocab_size=VOCAB, d_model=16, num_heads=2, num_layers=1, d_ff=32, max_seq_len=32, dropout=0.0)


def _twins(module_class, dtype, **options):
    """The same module (same weights) with the full path and with chunks of 5 tokens, which divide no count."""
    torch.manual_seed(0)
    full = module_class(**TINY, loss_chunk=0, **options).to(dtype)
    with torch.no_grad():  # weights large enough that the softmax is far from uniform
        full.model.lm_head.weight.mul_(40)
    chunked = module_class(**TINY, loss_chunk=5, **options).to(dtype)
    chunked.load_state_dict(full.state_dict())
    return full, chunked


def _causal_batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, VOCAB, (3, 9), generator=g)
    labels = torch.randint(4, VOCAB, (3, 9), generator=g)
    labels[0, -4:] = 0  # padding, ignored
    labels[2, :2] = 0
    return {"input_ids": ids, "labels": labels}


def _seq2seq_batch():
    g = torch.Generator().manual_seed(2)
    src, tgt = torch.randint(4, VOCAB, (3, 8), generator=g), torch.randint(4, VOCAB, (3, 7), generator=g)
    tgt[:, 0] = 1
    tgt[1, -3:] = 0
    return {"src_ids": src, "src_mask": src != 0, "tgt_ids": tgt}


CASES = {
    "causal": (CausalLMModule, _causal_batch),
    "masked": (MaskedLMModule, lambda: {"input_ids": _causal_batch()["input_ids"]}),
    "seq2seq": (Seq2SeqModule, _seq2seq_batch),
}


def _loss_and_grads(module, batch):
    torch.manual_seed(3)  # the masked LM draws its masks from the global generator in training
    module.zero_grad()
    loss = module._step("train", batch, 0)
    loss.backward()
    return loss.detach(), {
        name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None
    }


OPTIONS = {
    "tied": {},
    "untied-bias": {"tie_embeddings": False, "lm_head_bias": True},
    "smoothing": {"label_smoothing": 0.1},
    "softcap-untied": {"logit_softcap": 2.0, "tie_embeddings": False},
    "softcap-smoothing": {"logit_softcap": 2.0, "label_smoothing": 0.2},
}
EVERYTHING = {"logit_softcap": 2.0, "label_smoothing": 0.2, "tie_embeddings": False, "lm_head_bias": True}


@pytest.mark.parametrize(
    ("options", "dtype"),
    [
        *((OPTIONS[k], torch.float64) for k in OPTIONS),
        (OPTIONS["tied"], torch.float32),
        (EVERYTHING, torch.float32),
    ],
    ids=[*(f"{k}-fp64" for k in OPTIONS), "tied-fp32", "everything-fp32"],
)
@pytest.mark.parametrize("task", CASES)
def test_chunked_loss_and_every_gradient_equal_the_full_logits(task, options, dtype):
    module_class, make_batch = CASES[task]
    full, chunked = _twins(module_class, dtype, **options)
    batch = make_batch()
    want, want_grads = _loss_and_grads(full, batch)
    got, got_grads = _loss_and_grads(chunked, batch)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert got_grads.keys() == want_grads.keys()
    assert chunked.model.lm_head.weight.grad is not None  # the head's weight (the embedding's, when tied)
    for name, grad in want_grads.items():
        # to 1e-6 of each gradient's largest entry: fp32 sums in another order differ in their last bits
        scale = max(1.0, float(grad.abs().max()))
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-6, atol=1e-6 * scale, msg=name)


def test_full_path_is_the_cross_entropy_of_the_models_logits():
    """The reference the chunks are held to: F.cross_entropy of the logits the model's forward gives."""
    full, chunked = _twins(CausalLMModule, torch.float64, label_smoothing=0.1, logit_softcap=3.0)
    batch = _causal_batch()
    logits = full.model(batch["input_ids"])
    want = F.cross_entropy(
        logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=0, label_smoothing=0.1
    )
    for module in (full, chunked):
        torch.testing.assert_close(module._step("val", batch, 1), want, rtol=1e-12, atol=1e-12)


def test_chunked_metrics_equal_the_full_paths():
    full, chunked = _twins(CausalLMModule, torch.float32, label_smoothing=0.1)
    for batch_idx in range(2):
        batch = _causal_batch()
        batch["labels"] = batch["labels"].roll(batch_idx, dims=1)
        for module in (full, chunked):
            module._step("val", batch, batch_idx)
    for metric in ("loss", "ppl", "acc"):
        want, got = (getattr(m, f"val_{metric}").compute() for m in (full, chunked))
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6, msg=metric)


def test_ignored_tokens_never_reach_the_head(monkeypatch):
    _, chunked = _twins(MaskedLMModule, torch.float32)
    head = chunked.model.lm_head.weight
    rows: list[int] = []
    linear = F.linear

    def counting(x, weight, *args, **kwargs):
        if weight is head:
            rows.append(x.shape[0] if x.dim() == 2 else x.shape[:-1].numel())
        return linear(x, weight, *args, **kwargs)

    monkeypatch.setattr(F, "linear", counting)
    batch = {"input_ids": torch.randint(4, VOCAB, (4, 30), generator=torch.Generator().manual_seed(5))}
    torch.manual_seed(3)
    _, labels = chunked.mask_tokens(batch["input_ids"])
    asked = int((labels != chunked.pad_id).sum())
    assert 0 < asked < labels.numel() // 3  # BERT asks for about 15% of the tokens
    _loss_and_grads(chunked, batch)
    assert sum(rows) == asked and max(rows) <= 5  # chunks of 5 tokens, the asked ones only


def test_default_chunks_follow_the_vocabulary_and_zero_is_the_full_path():
    hidden = torch.randn(2, 3, 4)
    labels = torch.randint(0, 5, (2, 3))
    weight = torch.randn(5, 4)
    full = lm_loss(hidden, labels, weight=weight, chunk=0, ignore_index=-100)
    assert full.labels.numel() == 6 and full.count == 6
    one = lm_loss(hidden, labels, weight=weight, chunk=1, ignore_index=-100)
    torch.testing.assert_close(one.loss, full.loss)
    assert CausalLMModule(**TINY).hparams.loss_chunk is None


def test_backward_twice_through_the_chunked_loss_says_how_to():
    hidden = torch.randn(4, 8, requires_grad=True)
    result = lm_loss(hidden, torch.randint(0, 6, (4,)), weight=torch.randn(6, 8), chunk=3)
    result.loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match=r"one backward per forward.*loss_chunk: 0"):
        result.loss.backward()


def test_validation_keeps_no_gradients():
    hidden = torch.randn(5, 8, requires_grad=True)
    with torch.no_grad():
        result = lm_loss(
            hidden, torch.randint(0, 6, (5,)), weight=torch.randn(6, 8), chunk=2, predictions=True
        )
    assert not result.loss.requires_grad and result.predictions.shape == (5,)


@pytest.mark.parametrize("value", [-1, "abc", 2.5, True])
def test_loss_chunk_must_be_a_whole_number(value):
    with pytest.raises(ConfigError, match=re.escape(f"loss_chunk={value!r} must be a whole number >= 0")):
        CausalLMModule(**TINY, loss_chunk=value)


@pytest.mark.parametrize(
    ("name", "package"), [("liger", "liger_kernel"), ("cut_cross_entropy", "cut_cross_entropy")]
)
def test_loss_impl_names_a_library_that_must_be_installed(name, package):
    if importlib.util.find_spec(package) is not None:
        assert CausalLMModule(**TINY, loss_impl=name).hparams.loss_impl == name
        return
    with pytest.raises(ConfigError, match=f"loss_impl='{name}' needs the .* package, which is not installed"):
        CausalLMModule(**TINY, loss_impl=name)


def test_loss_impl_unknown_and_off_gpu():
    with pytest.raises(ConfigError, match=r"loss_impl='ligr' is unknown.*did you mean 'liger'"):
        CausalLMModule(**TINY, loss_impl="ligr")
    with pytest.raises(ConfigError, match="runs on CUDA GPUs only and this run is on cpu"):
        check_loss_device("liger", torch.device("cpu"))
    check_loss_device("torch", torch.device("cpu"))
