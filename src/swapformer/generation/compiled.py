"""A decoding step whose one-token calls run through ``torch.compile`` (``generate(..., compile=True)``).

::

    first call: the prompt (P tokens) ─▶ the step as it is, eagerly (it runs once and fills the cache)
    later calls: one token          ─▶ one compiled graph, shared by every length (dynamic shapes)

At a small model size a cached step costs its Python and per-operator overhead, not arithmetic; one inductor
graph per step removes much of it. The graph is compiled at the first one-token call of a model (seconds to a
minute on a CPU) and reused by later ``generate`` calls of the same model while the process lives. A decoder-only
model of built-in members has a cheaper eager step (``CausalStep``'s plan): on a CPU it is the faster of the two
(``benchmarks/generate.py --compile``). Other models (plug-in members, encoder-decoders) have not been measured.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from swapformer.generation.search import Step

_compiled_one_token: Callable[..., Tensor] | None = None


def _one_token(step: Step, ids: Tensor, attention_mask: Tensor | None) -> Tensor:
    return step(ids, attention_mask, 1)


class CompiledStep:
    """``step`` with its one-token calls compiled; same call and ``reorder`` (see :mod:`.search`)."""

    def __init__(self, step: Step) -> None:
        self.step, self.started = step, False

    def __call__(self, ids: Tensor, attention_mask: Tensor | None, new: int) -> Tensor:
        if new != 1 or not self.started:  # the first call fills the empty cache: a graph of its own, run once
            self.started = True
            return self.step(ids, attention_mask, new)
        return _compiled()(self.step, ids, attention_mask)

    def reorder(self, index: Tensor) -> None:
        self.step.reorder(index)


def _compiled() -> Callable[..., Tensor]:
    # built at first use: importing the compiler costs a second that plain generate() should not pay
    global _compiled_one_token
    if _compiled_one_token is None:
        import torch

        _compiled_one_token = torch.compile(_one_token, dynamic=True)
    return _compiled_one_token
