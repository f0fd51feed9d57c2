"""What a model needs to decode left to right: its ``generate`` method, and the checks its decoding step makes.

The search itself (greedy, sampling, beams) lives above the models, in :mod:`swapformer.generation`, which asks
each model for its step (``model.decoding(...)``). ``model.generate(...)`` reaches that search through
:func:`install_search`, which :mod:`swapformer.generation` calls when it is imported (``import swapformer`` does),
so the models import nothing from above them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

_search: Callable[..., Tensor] | None = None


def install_search(search: Callable[..., Tensor]) -> None:
    """Make ``search(model, input_ids, attention_mask, **kwargs)`` the search behind every ``model.generate``."""
    global _search
    _search = search


def search(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, **kwargs: Any) -> Tensor:
    """Run the installed search (:func:`swapformer.generation.generate`)."""
    if (
        _search is None
    ):  # only when swapformer.models is imported without its package, which Python never does
        raise RuntimeError("no decoding search installed: import swapformer.generation")
    return _search(model, input_ids, attention_mask, **kwargs)


def check_left_padded(mask: Tensor) -> None:
    """Refuse right-padded prompts (decoder-only generation continues after the last column)."""
    # a real token followed by padding means right padding: new tokens would land after the pads
    right = (mask[:, :-1] & ~mask[:, 1:]).any(dim=1).nonzero().flatten().tolist()
    if right:
        raise ValueError(
            f"rows {right} of attention_mask are right-padded; decoder-only generation continues after the last "
            "column, so pad prompts on the left (e.g. swapformer.generation.left_pad)"
        )


def check_length(positional: nn.Module, length: int, what: str) -> None:
    """Refuse ``length`` tokens when ``positional`` has a table of fewer positions (``max_length``)."""
    limit = getattr(positional, "max_length", None)
    if limit is not None and length > limit:
        raise ValueError(
            f"{what} is {length} tokens but the {type(positional).__name__} table holds {limit} positions "
            f"(max_seq_len); generate fewer tokens, shorten the input, or use a positional encoding without a "
            "table such as 'rope' or 'sinusoidal'"
        )


def reserve_positions(positionals: Iterable[nn.Module], length: int, device: torch.device) -> None:
    """Grow each positional member's tables (RoPE's cos and sin) to ``length`` positions before decoding, through
    its ``reserve`` (:meth:`~swapformer.components.positional.PositionalEncoding.reserve`); each member once.

    A table that grows between two steps is a new tensor, which a compiled step would recompile for.
    """
    seen: list[nn.Module] = []
    for positional in positionals:
        reserve = getattr(positional, "reserve", None)
        if reserve is not None and length > 0 and all(positional is not s for s in seen):
            seen.append(positional)
            reserve(length, device)


def expand_beams(tensor: Tensor | None, beams: int) -> Tensor | None:
    """Each row repeated ``beams`` times in place, ``(N, ...) -> (N * B, ...)``."""
    return tensor if tensor is None or beams == 1 else tensor.repeat_interleave(beams, dim=0)
