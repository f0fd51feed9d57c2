"""The ``flex`` kernel (torch's FlexAttention) on CPU, forward only (torch has no FlexAttention backward on CPU),
eager (a compiled call costs 30 s of compilation here; ``benchmarks/flex_attention.py`` checks it to 1e-6):
the ``math`` kernel's numbers with the dense mask for causality, padding, score biases, soft-capping, a window,
packed rows' documents and every head layout; one block mask per forward pass, not per layer; training on CPU
refused in one line."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from swapformer.compat import training_problem
from swapformer.components.attention import FlexAttention, MathAttention, band_mask
from swapformer.components.attention import flex as flex_module
from swapformer.components.attention.documents import DocumentMask
from swapformer.config import ModelConfig
from swapformer.conformance import TINY, Combination, run_combination
from swapformer.conformance.combination import BACKWARD_CHECKS
from swapformer.errors import ConfigError
from swapformer.models import build
from swapformer.models.inputs import hands_spans
from swapformer.nn.masks import document_attention_inputs

LENGTH = 16
DOCUMENT_IDS = torch.tensor([[0] * 5 + [1] * 3 + [2] * 8, [0] * 1 + [1] * 9 + [2] * 6])
REAL = torch.ones_like(DOCUMENT_IDS, dtype=torch.bool)
REAL[0, 13:] = False  # right padding (it keeps the last id)


def _qkv(kv_heads: int, length: int = LENGTH, batch: int = 2) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(kv_heads)
    query = torch.randn(batch, 4, length, 8, generator=generator) * 3  # x3: attention far from uniform
    key, value = (torch.randn(batch, kv_heads, length, 8, generator=generator) for _ in range(2))
    return query, key, value


def _cases() -> list[tuple[str, dict[str, Any]]]:
    padding = torch.arange(LENGTH)[None, None, None, :] < torch.tensor([LENGTH, 5])[:, None, None, None]
    left = torch.arange(LENGTH)[None, None, None, :] >= torch.tensor([0, 4])[:, None, None, None]
    bias = torch.randn(1, 4, LENGTH, LENGTH, generator=torch.Generator().manual_seed(9))
    return [
        ("no mask", {}),
        ("causal", {"is_causal": True}),
        ("right padding", {"attn_mask": padding}),
        ("right padding, causal", {"attn_mask": padding, "is_causal": True}),
        ("left padding, causal", {"attn_mask": left, "is_causal": True}),  # empty rows: zeros, as math
        ("a score bias", {"attn_mask": bias}),
        ("a score bias, causal", {"attn_mask": bias, "is_causal": True}),
        ("scale", {"is_causal": True, "scale": 0.5}),
    ]


@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize(("case", "args"), _cases(), ids=[c for c, _ in _cases()])
@pytest.mark.parametrize("softcap", [None, 2.0], ids=["", "softcap"])
def test_flex_gives_the_math_kernels_outputs(
    kv_heads: int, case: str, args: dict, softcap: float | None
) -> None:
    query, key, value = _qkv(kv_heads)
    expected, _ = MathAttention(softcap=softcap)(query, key, value, **args)
    output, _ = FlexAttention(softcap=softcap)(query, key, value, **args)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("window", [1, 3, 7])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "encoder"])
def test_a_window_is_the_math_kernel_with_the_band(window: int, causal: bool) -> None:
    query, key, value = _qkv(2)
    padding = torch.arange(LENGTH)[None, None, None, :] < torch.tensor([LENGTH, 11])[:, None, None, None]
    band = band_mask(LENGTH, LENGTH, window=window)
    expected, _ = MathAttention()(query, key, value, attn_mask=padding & band, is_causal=causal)
    output, _ = FlexAttention(window=window)(query, key, value, attn_mask=padding, is_causal=causal)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)
    output, _ = FlexAttention(window=window)(query, key, value, is_causal=causal)  # the pattern alone
    expected, _ = MathAttention()(query, key, value, attn_mask=band, is_causal=causal)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "encoder"])
@pytest.mark.parametrize("kv_heads", [4, 1], ids=["mha", "mqa"])
@pytest.mark.parametrize("window", [None, 2])
def test_documents_as_spans_give_the_dense_masks_outputs(
    causal: bool, kv_heads: int, window: int | None
) -> None:
    ids = torch.zeros_like(DOCUMENT_IDS)
    dense, _, _ = document_attention_inputs(ids, REAL, DOCUMENT_IDS, "attention_mask", causal=causal)
    spans, _, _ = document_attention_inputs(
        ids, REAL, DOCUMENT_IDS, "attention_mask", causal=causal, spans=True
    )
    assert isinstance(spans, DocumentMask)
    if window is not None:
        dense = dense & band_mask(LENGTH, LENGTH, window=window)
    query, key, value = _qkv(kv_heads)
    expected, _ = MathAttention()(query, key, value, attn_mask=dense)
    output, _ = FlexAttention(window=window)(query, key, value, attn_mask=spans)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)
    assert output[~REAL[:, None, :, None].expand_as(output)].abs().max() == 0  # padding attends nothing
    weights = FlexAttention(window=window)(query, key, value, attn_mask=spans, need_weights=True)[1]
    torch.testing.assert_close(
        weights, MathAttention()(query, key, value, attn_mask=dense, need_weights=True)[1]
    )


def _model(attention: Any = "flex", **options: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    config = {**TINY, "max_seq_len": 32, "kind": "causal_lm", "positional": "rope", "num_layers": 3}
    return build({**config, "attention": attention, **options}).eval()


def _count_block_masks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = flex_module.create_block_mask

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(flex_module, "create_block_mask", counting)
    flex_module._pattern_block_mask.cache_clear()
    return calls


def test_one_block_mask_per_forward_pass_not_per_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_block_masks(monkeypatch)
    model = _model()
    ids = torch.randint(1, TINY["vocab_size"], DOCUMENT_IDS.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model(ids, REAL, document_ids=DOCUMENT_IDS)  # documents: on the spans every layer shares
        assert len(calls) == 1
        model(ids, REAL)  # padding: the mask tensor every layer receives
        assert len(calls) == 2
        model(ids)  # causality alone: one per shape, kept across batches
        model(ids)
        assert len(calls) == 3


def test_a_flex_model_scores_packed_rows_as_the_math_model_does() -> None:
    flex, math = _model(), _model("math")  # the same weights: kernels hold none
    assert hands_spans(flex) and not hands_spans(math)
    ids = torch.randint(1, TINY["vocab_size"], DOCUMENT_IDS.shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got, want = flex(ids, REAL, document_ids=DOCUMENT_IDS), math(ids, REAL, document_ids=DOCUMENT_IDS)
    torch.testing.assert_close(got[REAL], want[REAL], atol=1e-5, rtol=1e-5)


def test_training_a_flex_model_on_cpu_is_refused_in_one_line() -> None:
    config = ModelConfig(**{**TINY, "attention": "flex", "dropout": 0.0})
    assert training_problem(config, "cuda") is None
    problem = training_problem(config, "cpu")
    assert problem is not None and "\n" not in problem
    assert problem.startswith("attention 'flex' cannot train on CPU") and "attention sdpa" in problem
    dropout = training_problem(ModelConfig(**{**TINY, "attention": "flex", "dropout": 0.1}), "cuda")
    assert dropout is not None and "dropout=0.1" in dropout
    patterned = {"pattern": ["local", "global"], "types": {"local": {"attention": "flex"}, "global": {}}}
    problem = training_problem(ModelConfig(**{**TINY, "layers": patterned}), "cpu")
    assert problem is not None and problem.startswith("layers.types.local.attention 'flex'")
    assert training_problem(ModelConfig(**TINY), "cpu") is None


def test_dropout_on_the_weights_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^attention 'flex' got dropout_p=0.1, .* use attention sdpa$"):
        FlexAttention()(*_qkv(4), dropout_p=0.1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"window": 0}, r"flex needs a window of at least 1 position, got window=0"),
        ({"softcap": -1.0}, r"flex: softcap=-1.0 must be a number > 0"),
        ({"compiled": "yes"}, r"flex: compiled='yes' must be true, false or left out"),
    ],
)
def test_bad_options_are_named(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FlexAttention(**options)


def test_the_conformance_suite_checks_the_forward_and_says_why_it_skips_the_gradients() -> None:
    combination = Combination("causal_lm", "flex", "rope", "rmsnorm", "pre", "swiglu")
    # (the other checks pass in `swapformer check flex`; these are the ones that tell)
    result = run_combination(combination, checks=("documents", "reference", *BACKWARD_CHECKS), quick=True)
    assert result.status == "pass", result.reason
    skipped = {c.name: c.message for c in result.checks if c.skipped}
    assert set(skipped) == set(BACKWARD_CHECKS)
    for message in skipped.values():
        assert "attention 'flex' declares cpu_backward=False" in message


def test_a_flex_model_validates_on_cpu_and_its_fit_is_refused_before_any_step(tmp_path) -> None:
    import lightning.pytorch as pl

    from swapformer.tasks import CausalLMModule

    ids = torch.randint(1, TINY["vocab_size"], DOCUMENT_IDS.shape, generator=torch.Generator().manual_seed(3))
    rows = [{"input_ids": i, "labels": i, "document_ids": d} for i, d in zip(ids, DOCUMENT_IDS, strict=True)]
    loader = torch.utils.data.DataLoader(rows, batch_size=2)
    module = CausalLMModule(**{**TINY, "max_seq_len": 32, "attention": "flex", "dropout": 0.0})
    options = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_model_summary=False)
    trainer = pl.Trainer(default_root_dir=tmp_path, enable_progress_bar=False, **options)
    (metrics,) = trainer.validate(module, dataloaders=loader, verbose=False)
    assert torch.isfinite(torch.tensor(metrics["val/loss"]))
    trainer = pl.Trainer(default_root_dir=tmp_path, max_steps=1, enable_progress_bar=False, **options)
    with pytest.raises(ConfigError, match=r"^attention 'flex' cannot train on CPU"):
        trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 0
