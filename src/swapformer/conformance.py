"""The conformance suite: every registered combination of components must build and keep the model's invariants.

For a combination (model kind x kernel x positional x norm x placement x ffn) it builds a tiny model and runs:

==================  ==================================================================================
check               the rule (outputs compared with ``|a - b| <= 1e-5 + 1e-5 |b|``)
==================  ==================================================================================
builds              the kind's builder (``swapformer.build``) of a tiny config raises nothing
causality           changing target tokens from position c on leaves the logits before c unchanged (a kind that
                    is not causal, ``masked_lm``: changes them, since every position sees every token)
padding             a padded row's logits at its real tokens equal the row's logits alone (right and left
                    padding of the target, right padding of the source)
cached_decoding     logits fed one token at a time through a KV cache equal one full forward pass, and greedy
                    ``generate`` gives the same ids with ``use_cache=True`` and ``False`` (kinds that decode)
fully_padded_rows   rows (and sources) that are all padding give finite logits and finite gradients
train_step          3 AdamW steps (lr 1e-2) on one tiny batch lower the cross-entropy (next token for causal
                    kinds, the token itself otherwise) to at most 0.95 of its starting value
==================  ==================================================================================

Model kinds and combinations come from the registries at call time, so plug-ins are included. A member registered under two
names (``none`` and ``nope``: one factory) counts once, under its first name. A pair the compatibility matrix
refuses (:func:`swapformer.compat.combination_problem`) is reported as refused, with the matrix's reason, and not
built; a check of a feature a member declares unsupported (``Capabilities(kv_cache=False)``, see :data:`REQUIRES`)
is skipped. ``swapformer check NAME`` runs the suite for every combination containing a component.

Example:
    >>> combo = Combination("causal_lm", "sdpa", "rope", "rmsnorm", "pre", "swiglu")
    >>> combo.id
    'causal_lm-sdpa-rope-rmsnorm-pre-swiglu'
    >>> run_combination(combo).status
    'pass'
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swapformer.compat import capabilities, combination_problem
from swapformer.config import ModelConfig
from swapformer.models import build as build_model
from swapformer.nn import KVCache
from swapformer.registry import FAMILIES, KINDS, kind, load_plugins

COMPONENTS = ("attention", "positional", "norm", "placement", "ffn")
ATOL = RTOL = 1e-5
VOCAB = 13
LENGTH, SOURCE_LENGTH = 7, 6
TRAIN_STEPS, TRAIN_LR, TRAIN_RATIO = 3, 1e-2, 0.95

TINY = dict(vocab_size=VOCAB, d_model=16, num_heads=4, num_kv_heads=2, num_layers=1, d_ff=24,
            max_seq_len=16, dropout=0.0, pad_token_id=0, init_std=0.2)  # fmt: skip
"""Every model the suite builds: grouped-query attention (4 query heads, 2 key/value heads), so kernels meet
the GQA shapes the builders pass. ``init_std=0.2`` makes logits of order 1: at the default 0.02 they are of
order 0.05, and a kernel that leaks every future token moves them by only ~2e-5, barely above the tolerance."""

OPTIONS: dict[tuple[str, str], dict[str, Any]] = {("attention", "sliding_window"): {"window": 3}}
"""Options for members whose defaults would make a check vacuous at the suite's lengths (a window of 256 over
7 tokens never cuts)."""


class ConformanceFailure(AssertionError):
    """A check found a combination breaking its rule; the message says where and by how much."""


@dataclass(frozen=True)
class Combination:
    """One model kind and one member name per component family."""

    kind: str
    attention: str
    positional: str
    norm: str
    placement: str
    ffn: str

    @property
    def id(self) -> str:
        """``causal_lm-sdpa-rope-layernorm-pre-swiglu``."""
        return "-".join([self.kind, *(getattr(self, f) for f in COMPONENTS)])

    def components(self) -> dict[str, Any]:
        """Component specs for :class:`ModelConfig` (names, with :data:`OPTIONS` where a member needs them)."""
        names = {f: getattr(self, f) for f in COMPONENTS}
        return {f: {"name": n, **OPTIONS[f, n]} if (f, n) in OPTIONS else n for f, n in names.items()}

    def refusal(self) -> str | None:
        """The compatibility matrix's reason for refusing this combination, or None."""
        return combination_problem(attention=self.attention, positional=self.positional)

    def unsupported(self, check: str) -> str | None:
        """Why ``check`` does not apply: the kind does not decode (``cached_decoding``), or a member declares the
        :class:`~swapformer.registry.Capabilities` it tests unsupported (``kv_cache=False``), or None."""
        if check == "cached_decoding" and not kind(self.kind).generates:
            return f"kind '{self.kind}' does not decode left to right"
        capability = REQUIRES.get(check)
        for family in COMPONENTS if capability else ():
            if not getattr(capabilities(family, getattr(self, family)), capability):
                return f"{family} '{getattr(self, family)}' declares {capability}=False"
        return None


@dataclass
class CheckResult:
    """One check of one combination; ``skipped`` (and passed) when a member declares the feature unsupported."""

    name: str
    passed: bool
    message: str = ""
    skipped: bool = False


@dataclass
class CombinationResult:
    """What happened to one combination: ``status`` is ``pass``, ``fail`` or ``refused``."""

    combination: Combination
    status: str
    reason: str = ""
    checks: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]


# ----------------------------------------------------------------------------------------------- enumeration


def distinct_members(family: str) -> list[str]:
    """Member names of ``family``, sorted, each factory once (an alias keeps the alphabetically first name)."""
    first: dict[Any, str] = {}
    for name in FAMILIES[family].available():
        first.setdefault(FAMILIES[family].get(name).factory, name)
    return sorted(first.values())


def default_members(kind_name: str = "causal_lm") -> dict[str, str]:
    """The :class:`ModelConfig` default of each family for ``kind_name`` (the base of ``quick`` combinations)."""
    defaults = ModelConfig.defaults(kind_name)
    return {family: str(defaults[family]) for family in COMPONENTS}


def model_kinds() -> tuple[str, ...]:
    """Every registered model kind (``causal_lm``, ``seq2seq``, ``masked_lm``, and any a plug-in adds)."""
    load_plugins()
    return tuple(KINDS)


def combinations(
    *, kinds: Sequence[str] | None = None, fixed: Mapping[str, str] | None = None, quick: bool = False
) -> list[Combination]:
    """Every combination of the registered members, read from the registries now (plug-ins included).

    Args:
        kinds: model kinds (default: every registered kind, :func:`model_kinds`).
        fixed: family -> member name held in every combination (an alias is kept as given).
        quick: instead of the full product, the :class:`ModelConfig` defaults with one family varied at a time,
            so every member of every family appears at least once.
    """
    fixed = dict(fixed or {})
    choices = {f: [fixed[f]] if f in fixed else distinct_members(f) for f in COMPONENTS}
    combos = []
    for kind_name in model_kinds() if kinds is None else kinds:
        if quick:
            base = {**default_members(kind_name), **fixed}
            picks = [tuple(base[f] for f in COMPONENTS)]
            for i, family in enumerate(COMPONENTS):
                picks += [
                    tuple(m if j == i else base[f] for j, f in enumerate(COMPONENTS)) for m in choices[family]
                ]
            picks = list(dict.fromkeys(picks))
        else:
            picks = list(itertools.product(*(choices[f] for f in COMPONENTS)))
        combos += [Combination(kind_name, *names) for names in picks]
    return combos


# ---------------------------------------------------------------------------------------------------- checks


def build(combination: Combination) -> nn.Module:
    """The tiny model of ``combination`` in eval mode, seeded, so every run builds the same weights (the global
    random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model(ModelConfig(**TINY, kind=combination.kind, **combination.components())).eval()


def _tokens(*shape: int, seed: int) -> Tensor:
    # real tokens avoid the pad id (0), so only the masks can tell padding apart
    return torch.randint(1, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


def _forward(
    model, ids: Tensor, mask: Tensor | None = None, *, src: Tensor | None = None, src_mask=None
) -> Tensor:
    if kind(model.config.kind).source:
        if src is None:
            src = _tokens(ids.size(0), SOURCE_LENGTH, seed=1)
        return model(src, ids, src_mask=src_mask, tgt_mask=mask)
    return model(ids, attention_mask=mask)


def _expect_close(actual: Tensor, expected: Tensor, what: str) -> None:
    if actual.shape != expected.shape:
        raise ConformanceFailure(f"{what}: shape {tuple(actual.shape)} instead of {tuple(expected.shape)}")
    if not torch.allclose(actual, expected, atol=ATOL, rtol=RTOL, equal_nan=False):
        diff = (actual - expected).abs().nan_to_num(float("inf")).max().item()
        raise ConformanceFailure(f"{what} (max |difference| {diff:.2g} > {ATOL:g})")


def check_causality(model: nn.Module) -> None:
    """Row c of a batch changes every target token from position c on: its logits before c must not change.

    One forward pass covers every cut c = 1 .. L-1, so a leak from any later position to any earlier one shows.
    A kind that is not causal must show the opposite: logits before c that do change (every position sees
    every token).
    """
    ids = _tokens(1, LENGTH, seed=0).repeat(LENGTH, 1)  # row c: changed from position c (row 0: unchanged)
    later = torch.arange(LENGTH)[None, :] >= torch.arange(LENGTH)[:, None]
    later[0] = False
    changed = torch.where(later, ids % (VOCAB - 1) + 1, ids)  # every changed token differs from the original
    with torch.no_grad():
        src = _tokens(1, SOURCE_LENGTH, seed=1).repeat(LENGTH, 1)
        logits = _forward(model, changed, src=src)  # (L, L, V)
    causal = kind(model.config.kind).causal
    for cut in range(1, LENGTH):
        if causal:
            what = f"logits before position {cut} changed when the tokens from position {cut} on changed"
            _expect_close(logits[cut, :cut], logits[0, :cut], what)
        elif torch.allclose(logits[cut, :cut], logits[0, :cut], atol=ATOL, rtol=RTOL):
            raise ConformanceFailure(
                f"logits before position {cut} did not change when the tokens from position {cut} on "
                f"changed, but kind '{model.config.kind}' is bidirectional"
            )


def check_padding(model: nn.Module) -> None:
    """Logits at real tokens do not depend on padding: a batch with a full row, a right-padded row and a
    left-padded one (sources right-padded) against each row run alone. Padding holds random tokens, not the pad id.
    """
    ids = _tokens(3, LENGTH, seed=2)
    columns = torch.arange(LENGTH)
    mask = torch.stack([columns < LENGTH, columns < 3, columns >= 2])  # full; right-padded; left-padded
    src = _tokens(3, SOURCE_LENGTH, seed=3)
    src_lengths = [SOURCE_LENGTH, 2, 4]
    src_mask = torch.arange(SOURCE_LENGTH)[None, :] < torch.tensor(src_lengths)[:, None]
    with torch.no_grad():
        batch = _forward(model, ids, mask, src=src, src_mask=src_mask)
        for row, kind in enumerate(("full", "right-padded", "left-padded")):
            alone = _forward(model, ids[row : row + 1, mask[row]], src=src[row : row + 1, : src_lengths[row]])
            _expect_close(
                batch[row, mask[row]], alone[0], f"the {kind} row's logits differ from the row alone"
            )


def check_cached_decoding(model: nn.Module) -> None:
    """A KV cache changes nothing: a 3-token prefix then one token at a time gives the logits of one full pass,
    and greedy ``generate`` returns the same ids with and without the cache."""
    ids, prefix = _tokens(2, LENGTH, seed=4), 3
    cache = KVCache(len(model.decoder.layers))
    with torch.no_grad():
        if kind(model.config.kind).source:
            src = _tokens(2, SOURCE_LENGTH, seed=5)
            src_mask = torch.arange(SOURCE_LENGTH)[None, :] < torch.tensor([[SOURCE_LENGTH], [3]])
            step = partial(model.decode, memory=model.encode(src, src_mask), src_mask=src_mask)
            generate_args, options = (src, src_mask), {"decoder_start_token_id": 1}
        else:
            step = model  # step(chunk, cache=...) runs the chunk after the cached tokens
            generate_args, options = (ids[:, :prefix],), {}
        full = step(ids, cache=None)
        steps = [step(ids[:, :prefix], cache=cache)]
        steps += [step(ids[:, i : i + 1], cache=cache) for i in range(prefix, LENGTH)]
    _expect_close(torch.cat(steps, dim=1), full, "logits decoded with a KV cache differ from one full pass")
    cached = model.generate(*generate_args, max_new_tokens=3, use_cache=True, **options)
    uncached = model.generate(*generate_args, max_new_tokens=3, use_cache=False, **options)
    if not torch.equal(cached, uncached):
        raise ConformanceFailure(
            f"greedy generate gave {cached.tolist()} with the KV cache and {uncached.tolist()} without"
        )


def check_fully_padded_rows(model: nn.Module) -> None:
    """A batch with rows that are all padding (target and source) gives finite logits and finite gradients."""
    ids, src = _tokens(3, LENGTH, seed=6), _tokens(3, SOURCE_LENGTH, seed=7)
    mask = torch.arange(LENGTH)[None, :] < torch.tensor([[LENGTH], [0], [3]])
    src_mask = torch.arange(SOURCE_LENGTH)[None, :] < torch.tensor([[SOURCE_LENGTH], [0], [0]])
    model.zero_grad(set_to_none=True)
    try:
        logits = _forward(model, ids, mask, src=src, src_mask=src_mask)
        if not torch.isfinite(logits).all():
            rows = sorted({int(r) for r in (~torch.isfinite(logits)).nonzero()[:, 0]})
            raise ConformanceFailure(f"non-finite logits in rows {rows} (rows 1 and 2 hold padding only)")
        logits.sum().backward()
        grads = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
        bad = [n for n, grad in grads if not torch.isfinite(grad).all()]
        if bad:
            raise ConformanceFailure(f"non-finite gradients in {', '.join(bad[:3])}{' ...' * (len(bad) > 3)}")
    finally:
        model.zero_grad(set_to_none=True)


def _loss(model: nn.Module, ids: Tensor, src: Tensor) -> Tensor:
    # causal: position i predicts token i + 1; otherwise every position sees its own token: predict it
    inputs, targets = (ids[:, :-1], ids[:, 1:]) if kind(model.config.kind).causal else (ids, ids)
    logits = _forward(model, inputs, src=src)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def check_train_step(model: nn.Module) -> None:
    """:data:`TRAIN_STEPS` AdamW steps (lr :data:`TRAIN_LR`) on one tiny batch bring the loss to at most
    :data:`TRAIN_RATIO` of its starting value (the model is trained in place, so this check runs last)."""
    ids, src = _tokens(4, LENGTH, seed=8), _tokens(4, SOURCE_LENGTH, seed=9)
    optimizer = torch.optim.AdamW(model.parameters(), lr=TRAIN_LR, foreach=True)
    losses = []
    model.train()
    try:
        for _ in range(TRAIN_STEPS):
            optimizer.zero_grad(set_to_none=True)
            loss = _loss(model, ids, src)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())  # the first is the loss before any step
        with torch.no_grad():
            end = _loss(model, ids, src).item()
    finally:
        model.eval()
        model.zero_grad(set_to_none=True)
    start = losses[0]
    if not end <= TRAIN_RATIO * start:  # also catches NaN
        raise ConformanceFailure(
            f"{TRAIN_STEPS} AdamW steps took the loss from {start:.4f} to {end:.4f}, above {TRAIN_RATIO:g} x the start"
        )


CHECKS: dict[str, Callable[[Any], None]] = {
    "causality": check_causality,
    "padding": check_padding,
    "cached_decoding": check_cached_decoding,
    "fully_padded_rows": check_fully_padded_rows,
    "train_step": check_train_step,
}
"""The checks run on a built model, in order (``builds`` comes first; ``train_step`` last, as it trains)."""
CHECK_NAMES = ("builds", *CHECKS)
REQUIRES = {"padding": "padding", "fully_padded_rows": "padding", "cached_decoding": "kv_cache"}
"""The capability each check tests: a combination with a member that declares it False skips the check."""


# ---------------------------------------------------------------------------------------------------- runner


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return text if isinstance(err, ConformanceFailure) else f"{type(err).__name__}: {text}"


def run_combination(combination: Combination, *, checks: Iterable[str] | None = None) -> CombinationResult:
    """Build ``combination`` once and run each check on it (all of them, even after a failure).

    Args:
        checks: names from :data:`CHECKS` to run (default: all).
    """
    start = time.perf_counter()
    refusal = combination.refusal()
    if refusal is not None:
        return CombinationResult(combination, "refused", reason=refusal)
    results = []
    try:
        model = build(combination)
        results.append(CheckResult("builds", True))
    except Exception as err:
        results.append(CheckResult("builds", False, _describe(err)))
        return CombinationResult(combination, "fail", _describe(err), results, time.perf_counter() - start)
    for name in checks or CHECKS:
        unsupported = combination.unsupported(name)
        if unsupported is not None:
            results.append(CheckResult(name, True, f"skipped: {unsupported}", skipped=True))
            continue
        try:
            CHECKS[name](model)
            results.append(CheckResult(name, True))
        except Exception as err:
            results.append(CheckResult(name, False, _describe(err)))
    failures = [c for c in results if not c.passed]
    reason = "; ".join(f"{c.name}: {c.message}" for c in failures)
    return CombinationResult(
        combination, "fail" if failures else "pass", reason, results, time.perf_counter() - start
    )


def run(
    combos: Iterable[Combination],
    *,
    checks: Iterable[str] | None = None,
    progress: Callable[[CombinationResult], None] | None = None,
) -> list[CombinationResult]:
    """:func:`run_combination` for each combination; ``progress`` is called after each one."""
    checks = list(checks) if checks is not None else None
    results = []
    for combination in combos:
        results.append(run_combination(combination, checks=checks))
        if progress is not None:
            progress(results[-1])
    return results
