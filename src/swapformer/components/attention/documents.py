"""Packed rows attended document by document, so that no score across two documents is ever computed.

A packed row holds whole documents back to back. As a dense block-diagonal mask ``(N, 1, L, L)`` it makes a
fused kernel compute every score of the row (torch's CPU kernel skips blocks only for ``is_causal``) and throw
most of them away. :class:`DocumentMask` keeps the documents as spans instead, and :func:`document_attention`
gathers the batch's documents, shortest first, into a few groups, each padded to its longest document, calls
``scaled_dot_product_attention`` once per group, and puts every token's output back in its place::

    rows (N, L)            groups (documents, W)         one call each, is_causal
    a a a b b b b .        c c -           W = 2
    c c d d d d e e        e e
                           a a a -         W = 4
                           b b b b
                           d d d d

Group padding (``-``) follows each document's last token, so under causal attention no real query sees it;
without causality (an encoder) a key mask hides it. The rows' own padding tokens attend nothing and output zeros,
as the dense mask's empty rows do. The same numbers as the dense mask, with positions restarting per document
as the model's edge gives them (:func:`swapformer.nn.masks.document_attention_inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

GROUPS = 4
"""At most this many ``scaled_dot_product_attention`` calls per layer: documents sorted by length and cut into
groups of equal count (few large calls; many small ones cost more than the padding they save)."""


@dataclass(frozen=True, eq=False)
class DocumentMask:
    """Self-attention within each document of packed rows, as spans: what a kernel declaring
    ``document_spans`` receives as ``attn_mask`` in place of the dense block-diagonal mask.

    Built once per forward pass by :meth:`of_runs` and shared by every layer. ``dense()`` is the boolean mask
    the spans stand for (True = may attend), for a caller that needs one (attention weights, sinks).

    Shape:
        runs ``(N, L)``: the run of each token (:func:`swapformer.nn.masks.document_runs`); real ``(N, L)``:
        True = a real token (False = padding, which attends nothing); gather ``(T,)``: the flat token
        ``n * L + l`` at each slot of the groups, ``N * L`` (a zero row) at a group's padding; scatter
        ``(N * L,)``: each token's slot, ``T`` (a zero row) for the rows' padding. Each maps the real tokens one to
        one onto the other's, so each is the other's gradient (:class:`_Rows`); groups: ``(documents, width)`` of each group, ``sum(documents * width) == T``; inside: per
        group ``(documents, width)``, True = a slot holding a token of its document.
    """

    runs: Tensor
    real: Tensor
    causal: bool
    gather: Tensor
    scatter: Tensor
    groups: tuple[tuple[int, int], ...]
    inside: tuple[Tensor, ...]
    memo: dict[object, object] = field(default_factory=dict, repr=False)
    """What a kernel derives from the spans once per forward pass and every layer reuses (``flex``'s block mask)."""

    @classmethod
    def of_runs(cls, runs: Tensor, real: Tensor, *, causal: bool, groups: int = GROUPS) -> DocumentMask:
        """The spans of ``runs`` ``(N, L)`` whose tokens are ``real``, cut into at most ``groups`` groups."""
        length, total = runs.size(1), runs.numel()
        flat_runs, flat_real = runs.reshape(-1), real.reshape(-1)
        starts = torch.ones_like(flat_runs, dtype=torch.bool)
        starts[1:] = flat_runs[1:] != flat_runs[:-1]
        starts[::length] = True  # each row starts a span (run numbers restart per row)
        first = starts.nonzero().flatten()  # (documents,) flat start of each span
        lengths = torch.diff(first, append=first.new_tensor([total]))
        keep = flat_real[first]  # a span of padding is no document
        first, lengths = first[keep], lengths[keep]
        order = lengths.argsort(stable=True)
        gather, shapes, insides, slot = [], [], [], 0
        scatter = torch.full_like(flat_runs, -1)
        for part in order.tensor_split(min(groups, max(len(order), 1))):
            if not len(part):
                continue
            width = int(lengths[part].max())
            column = torch.arange(width, device=runs.device)
            inside = column < lengths[part, None]  # (documents, width)
            index = torch.where(inside, first[part, None] + column, total)  # a padding slot: the zero row
            slots = slot + torch.arange(index.numel(), device=runs.device).view_as(index)
            scatter[index[inside]] = slots[inside]
            gather.append(index.flatten())
            shapes.append((len(part), width))
            insides.append(inside)
            slot += index.numel()
        scatter = torch.where(scatter < 0, slot, scatter)  # the rows' padding: the zero row
        gather_all = torch.cat(gather) if gather else first.new_zeros(0)
        return cls(runs, real, causal, gather_all, scatter, tuple(shapes), tuple(insides))

    def dense(self) -> Tensor:
        """The boolean ``(N, 1, L, L)`` mask these spans stand for: same run, causal if ``causal``, real keys."""
        mask = self.runs[:, None, :, None] == self.runs[:, None, None, :]
        if self.causal:
            length = self.runs.size(1)
            mask = mask & torch.ones(length, length, dtype=torch.bool, device=self.runs.device).tril()
        return mask & self.real[:, None, None, :]


def document_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    documents: DocumentMask,
    *,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """``scaled_dot_product_attention`` of each document of packed rows alone, one call per group of documents.

    Args:
        documents: the spans (:class:`DocumentMask`).
        dropout_p, scale: as ``scaled_dot_product_attention``.

    Returns:
        ``(N, H, L, E)``, zeros at the rows' padding.

    Shape:
        query ``(N, H, L, E)``; key, value ``(N, Hkv, L, E)`` with ``H % Hkv == 0``.
    """
    batch, heads, length, head_dim = query.shape
    sizes = [count * width for count, width in documents.groups]
    gathered = [  # (T, H, E) each, split per group
        _Rows.apply(
            x.transpose(1, 2).reshape(batch * length, x.size(1), head_dim),
            documents.gather,
            documents.scatter,
        ).split(sizes)
        for x in (query, key, value)
    ]
    outputs = []
    for i, (count, width) in enumerate(documents.groups):
        q, k, v = (
            x[i].view(count, width, -1, head_dim).transpose(1, 2) for x in gathered
        )  # (documents, H, W, E)
        mask = None if documents.causal else documents.inside[i][:, None, None, :]  # the group's real keys
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=dropout_p,
            is_causal=documents.causal,
            scale=scale,
            enable_gqa=k.size(1) != q.size(1),
        )
        outputs.append(out.transpose(1, 2).reshape(count * width, heads, head_dim))
    flat = _Rows.apply(torch.cat(outputs), documents.scatter, documents.gather)  # (N * L, H, E)
    return flat.view(batch, length, heads, head_dim).transpose(1, 2)


class _Rows(torch.autograd.Function):
    """``x``'s rows at ``index``, where ``len(x)`` stands for a row of zeros; ``back`` maps each row of ``x`` to
    the output row it went to (or the zero row), so the gradient is the same selection the other way round.

    Autograd's own ``index_select`` would scatter-add its gradient, one slow serial pass on CPU; here every real
    row goes to exactly one place, so the gradient is a plain selection too (and so is its gradient).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, index: Tensor, back: Tensor) -> Tensor:
        ctx.save_for_backward(index, back)
        rows = x.index_select(0, index.clamp(max=x.size(0) - 1))
        return rows.masked_fill_((index == x.size(0)).view(-1, *[1] * (x.dim() - 1)), 0.0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        index, back = ctx.saved_tensors
        return _Rows.apply(grad, back, index), None, None
