"""Packed rows with document masks (``model(input_ids, document_ids=...)``): each document of a packed row gets
the logits of the document run alone, for every registered positional member (and its option variants) and
every kernel that declares ``document_mask``; a kernel that cannot is refused in one line."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from swapformer.compat import capabilities, document_mask_problem
from swapformer.conformance import TINY, VARIANTS, distinct_members
from swapformer.models import build
from swapformer.nn.masks import document_attention_inputs, document_positions, document_runs
from swapformer.registry import ATTENTION

LENGTHS = (5, 3, 7, 1)
KINDS = ("causal_lm", "masked_lm")


def _positional_specs() -> list[Any]:
    """Every registered positional member once, then each option variant the conformance suite knows."""
    specs: list[Any] = list(distinct_members("positional"))
    for (family, name), options in VARIANTS.items():
        if family == "positional":
            specs += [{"name": name, **option} for option in options]
    return specs


def _model(kind: str, **components: Any) -> nn.Module:
    torch.manual_seed(0)
    # init_std 0.2 (TINY's): logits of order 1, attention far from uniform, so a leak between documents shows
    return build({**TINY, "max_seq_len": 32, "kind": kind, **components}).eval()


def _packed(seed: int = 0) -> tuple[list[Tensor], Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    documents = [torch.randint(1, TINY["vocab_size"], (1, n), generator=generator) for n in LENGTHS]
    document_ids = torch.cat([torch.full((1, n), i) for i, n in enumerate(LENGTHS)], 1)
    return documents, torch.cat(documents, 1), document_ids


def _expect_documents_alone(model: nn.Module) -> None:
    documents, row, document_ids = _packed()
    with torch.no_grad():
        packed = model(row, document_ids=document_ids)
        alone = torch.cat([model(document) for document in documents], 1)
        unmasked = model(row)
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=1e-5)
    # the reference can tell: the same row without document ids lets later documents see earlier ones
    assert (unmasked - alone).abs().max() > 1e-3


def _id(spec: Any) -> str:
    return spec if isinstance(spec, str) else "-".join(f"{v}" for v in spec.values())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("positional", _positional_specs(), ids=_id)
@pytest.mark.parametrize(
    "attention", ["sdpa", "flex"]
)  # documents as spans: sdpa's groups, flex's block mask
def test_a_packed_row_gives_each_document_its_logits_alone(
    kind: str, positional: Any, attention: str
) -> None:
    _expect_documents_alone(_model(kind, positional=positional, attention=attention))


DOCUMENT_KERNELS = [n for n in ATTENTION.available() if capabilities("attention", n).document_mask]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("kernel", DOCUMENT_KERNELS)
@pytest.mark.parametrize("positional", ["rope", "alibi"])
def test_every_kernel_declaring_document_masks_honours_them(kind: str, kernel: str, positional: str) -> None:
    # a window of 2 is shorter than the documents: window and document combine
    attention = {"name": kernel, "window": 2} if kernel in ("sliding_window", "flex") else kernel
    _expect_documents_alone(_model(kind, attention=attention, positional=positional))


def test_sliding_window_layers_of_a_patterned_model_combine_window_and_document() -> None:
    layers = {
        "pattern": ["local", "global"],
        "types": {"local": {"attention": {"name": "sliding_window", "window": 3}}, "global": {}},
    }
    _expect_documents_alone(_model("causal_lm", positional="rope", layers=layers))


def test_flex_window_layers_of_a_patterned_model_combine_window_and_document() -> None:
    layers = {
        "pattern": ["local", "global"],
        "types": {"local": {"attention": {"name": "flex", "window": 3}}, "global": {"attention": "flex"}},
    }
    _expect_documents_alone(_model("causal_lm", positional="rope", layers=layers))


@pytest.mark.parametrize("attention", ["sdpa", "flex"])
def test_padding_and_documents_combine(attention: str) -> None:
    model = _model("causal_lm", positional="learned", attention=attention)
    documents, row, document_ids = _packed(seed=1)
    padded = torch.cat([row, torch.zeros(1, 4, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones_like(row), torch.zeros(1, 4, dtype=torch.long)], 1)
    ids = torch.cat([document_ids, torch.full((1, 4), len(LENGTHS) - 1)], 1)  # padding shares the last id
    with torch.no_grad():
        packed = model(padded, mask, document_ids=ids)[:, : row.size(1)]
        alone = torch.cat([model(document) for document in documents], 1)
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=1e-5)


def test_document_positions_restart_at_each_document() -> None:
    document_ids = torch.tensor([[0, 0, 0, 1, 1, 2], [5, 5, 5, 5, 5, 5], [0, 1, 1, 0, 0, 0]])
    expected = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5], [0, 0, 1, 0, 1, 2]])
    # computed independently: a loop counting from each change of id
    for row in range(document_ids.size(0)):
        count = 0
        for column in range(document_ids.size(1)):
            same = column and document_ids[row, column] == document_ids[row, column - 1]
            count = count + 1 if same else 0
            assert expected[row, column] == count
    assert torch.equal(document_positions(document_runs(document_ids)), expected)


def test_the_mask_is_block_diagonal_and_causal() -> None:
    ids = torch.zeros(1, 5, dtype=torch.long)
    document_ids = torch.tensor([[0, 0, 0, 1, 1]])
    mask, is_causal, positions = document_attention_inputs(
        ids, None, document_ids, "attention_mask", causal=True
    )
    same = document_ids[0, :, None] == document_ids[0, None, :]
    assert not is_causal
    assert torch.equal(mask[0, 0], same & torch.ones(5, 5, dtype=torch.bool).tril())
    assert positions.tolist() == [[0, 1, 2, 0, 1]]


def test_a_kernel_without_document_masks_is_refused_in_one_line() -> None:
    model = _model("causal_lm", attention="linear", positional="rope")
    _, row, document_ids = _packed()
    with pytest.raises(ValueError, match=r"^attention 'linear' cannot keep attention within each document.*"):
        model(row, document_ids=document_ids)
    assert document_mask_problem(model.config) is not None
    assert document_mask_problem(_model("causal_lm").config) is None


@pytest.mark.parametrize(
    ("document_ids", "message"),
    [
        (
            torch.zeros(1, 3, dtype=torch.long),
            r"document_ids has shape \(1, 3\) and dtype int64; pass an integer",
        ),
        (torch.zeros(1, 16), r"document_ids has shape \(1, 16\) and dtype float32; pass an integer"),
        ([0] * 16, r"document_ids is a list; pass an integer tensor"),
    ],
)
def test_bad_document_ids_are_named(document_ids: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _model("causal_lm")(_packed()[1], document_ids=document_ids)
