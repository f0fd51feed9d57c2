"""Packed rows handed to ``sdpa`` as spans (``document_spans``): each document attended alone, one fused call per
group of documents, with the numbers of the dense block-diagonal mask under the ``math`` kernel (the reference),
outputs and gradients, padding, GQA and encoders included."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from swapformer.compat import document_spans
from swapformer.components.attention import MathAttention, SDPAttention
from swapformer.components.attention.documents import DocumentMask
from swapformer.conformance import TINY
from swapformer.models import build
from swapformer.models.inputs import hands_spans
from swapformer.nn.masks import document_attention_inputs, document_runs

# three packed rows: documents of 1 to 9 tokens, the first and last rows right-padded (padding keeps the last id)
DOCUMENT_IDS = torch.tensor(
    [
        [0] * 5 + [1] * 3 + [2] * 4 + [3] * 4,
        [0] * 1 + [1] * 9 + [2] * 6,
        [0] * 2 + [1] * 7 + [2] * 7,
    ]
)
REAL = torch.ones_like(DOCUMENT_IDS, dtype=torch.bool)
REAL[0, 13:] = False
REAL[2, 12:] = False


def _inputs(causal: bool, spans: bool) -> tuple[Any, bool, Tensor]:
    ids = torch.zeros_like(DOCUMENT_IDS)
    return document_attention_inputs(ids, REAL, DOCUMENT_IDS, "attention_mask", causal=causal, spans=spans)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "encoder"])
@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_spans_give_the_dense_masks_outputs_and_gradients(causal: bool, kv_heads: int, groups: int) -> None:
    torch.manual_seed(0)
    batch, length = DOCUMENT_IDS.shape
    query = torch.randn(batch, 4, length, 8, requires_grad=True)
    key, value = (torch.randn(batch, kv_heads, length, 8, requires_grad=True) for _ in range(2))
    dense, _, _ = _inputs(causal, spans=False)
    runs = document_runs(DOCUMENT_IDS, REAL)
    spans = DocumentMask.of_runs(runs, REAL, causal=causal, groups=groups)
    assert len(spans.groups) == groups
    reference, _ = MathAttention()(query * 3, key, value, attn_mask=dense)  # x3: attention far from uniform
    output, _ = SDPAttention()(query * 3, key, value, attn_mask=spans)
    torch.testing.assert_close(output, reference, atol=1e-5, rtol=1e-5)
    assert output[~REAL[:, None, :, None].expand_as(output)].abs().max() == 0  # padding attends nothing
    grad = torch.randn_like(reference)
    expected = torch.autograd.grad(reference, (query, key, value), grad)
    for got, want in zip(torch.autograd.grad(output, (query, key, value), grad), expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_the_spans_stand_for_the_dense_mask(causal: bool) -> None:
    dense, _, positions = _inputs(causal, spans=False)
    spans, is_causal, span_positions = _inputs(causal, spans=True)
    assert isinstance(spans, DocumentMask) and not is_causal
    assert torch.equal(spans.dense(), dense)
    assert torch.equal(span_positions, positions)
    # every real token sits in exactly one slot of the groups; padding points at the zero row past them
    slots = sum(count * width for count, width in spans.groups)
    assert spans.gather.numel() == slots
    assert sorted(spans.scatter[REAL.flatten()].tolist()) == sorted(
        set(spans.scatter[REAL.flatten()].tolist())
    )
    assert (spans.scatter[~REAL.flatten()] == slots).all()
    assert torch.equal(spans.gather[spans.scatter[REAL.flatten()]], REAL.flatten().nonzero().flatten())


def _model(attention: str, **components: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    config = {**TINY, "max_seq_len": 32, "kind": "causal_lm", "positional": "rope", "dropout": 0.0}
    return build({**config, "attention": attention, **components}).train()


def test_a_training_step_on_spans_equals_the_math_kernels_on_the_dense_mask() -> None:
    spans, dense = _model("sdpa"), _model("math")  # the same weights: kernels hold none
    assert hands_spans(spans) and not hands_spans(dense)
    ids = torch.randint(1, TINY["vocab_size"], DOCUMENT_IDS.shape, generator=torch.Generator().manual_seed(1))
    losses = []
    for model in (spans, dense):
        logits = model(ids, REAL, document_ids=DOCUMENT_IDS)
        loss = torch.nn.functional.cross_entropy(logits[REAL], ids[REAL])
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=1e-5)
    for (name, got), want in zip(spans.named_parameters(), dense.parameters(), strict=True):
        torch.testing.assert_close(got.grad, want.grad, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize(
    ("components", "handed"),
    [
        ({"attention": "sdpa"}, True),
        ({"attention": "math"}, False),  # the reference keeps the dense mask
        ({"attention": "flex"}, True),  # its block mask built from the spans
        ({"attention": {"name": "flex", "window": 3}}, True),
        ({"attention": "flex", "positional": "alibi"}, False),
        ({"attention": "sdpa", "positional": "alibi"}, False),  # a score bias needs the L x L mask
        (
            {
                "attention": "sdpa",
                "layers": {
                    "pattern": ["local", "global"],
                    "types": {"local": {"attention": {"name": "sliding_window", "window": 3}}, "global": {}},
                },
            },
            False,
        ),
    ],
)
def test_spans_are_handed_only_when_every_kernel_declares_them(components: dict, handed: bool) -> None:
    model = _model(**components)
    assert hands_spans(model) is handed and document_spans(model.config) is handed
