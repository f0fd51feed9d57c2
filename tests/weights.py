"""Weights that make two computation paths tell their differences: for tests that compare a fast path with its
reference (cached with uncached decoding, the decoding plan with the modules, compiled with eager)."""

from __future__ import annotations

import torch
from torch import nn


def spread_weights(model: nn.Module, *, gain: float = 1.0) -> nn.Module:
    """``model`` with every weight matrix (embeddings too) drawn with std ``gain / sqrt(fan_in)``, and every other
    parameter (biases, norm gains, sink logits) moved off its start by N(0, 0.1); returns ``model``.

    At the builders' std 0.02, zero biases and unit norms, q . k / sqrt(E) is of order 1e-3 and attention nearly
    uniform: in a post-norm model the output barely depends on the queries, so a zeroed query, a wrong scale or a
    rotation at the wrong position moves the logits by less than a test's 1e-5, and greedy decoding repeats the
    prompt's last token. Here the scores and logits are a few units, and a gain or bias copied to the wrong place
    shows.
    """
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:  # nn.Linear (out, in); nn.Embedding (V, D); stacked experts (X, out, in)
                parameter.normal_(0.0, gain * parameter.size(-1) ** -0.5)
            else:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model
