"""The conformance suite's runner: every check of :mod:`.checks` on each combination, the results as data."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from swapformer.conformance.checks import CHECKS, ConformanceFailure, build
from swapformer.conformance.combination import Combination


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


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return text if isinstance(err, ConformanceFailure) else f"{type(err).__name__}: {text}"


def run_combination(
    combination: Combination, *, checks: Iterable[str] | None = None, quick: bool = False
) -> CombinationResult:
    """Build ``combination`` once and run each check on it (all of them, even after a failure).

    Args:
        checks: names from :data:`CHECKS` to run (default: all).
        quick: skip ``train`` (memorizing a batch costs more than every other check together).
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
        if quick and name == "train" and unsupported is None:
            unsupported = "a quick run does not train (a full run memorizes one batch)"
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
    quick: bool = False,
) -> list[CombinationResult]:
    """:func:`run_combination` for each combination; ``progress`` is called after each one."""
    checks = list(checks) if checks is not None else None
    results = []
    for combination in combos:
        results.append(run_combination(combination, checks=checks, quick=quick))
        if progress is not None:
            progress(results[-1])
    return results
