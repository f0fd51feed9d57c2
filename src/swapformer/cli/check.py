"""``swapformer check``: run the conformance suite (:mod:`swapformer.conformance`) on one component.

::

    swapformer check rope                         # every combination containing positional 'rope'
    swapformer check attention:math --kind seq2seq
    swapformer check my_kernel --quick            # a plug-in: the defaults with one family varied at a time
    swapformer check all --quick                  # every family's members, one at a time
    swapformer check option:gemma                 # one config option variant (q/k norm, patterns, ...)
    swapformer check options                      # every option variant, in each kind it fits

Exit status: 0 when every combination passes (refused by the compatibility matrix counts as no failure), 1 when a
check fails, 2 for an unknown or ambiguous name.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

import torch

from swapformer.cli.errors import VerbParser, user_errors
from swapformer.cli.helptext import plain
from swapformer.conformance import (
    CHECK_NAMES,
    COMPONENTS,
    OPTION_VARIANTS,
    CombinationResult,
    combinations,
    model_kinds,
    run,
)
from swapformer.errors import ConfigError, did_you_mean
from swapformer.registry import FAMILIES, load_plugins


def resolve(name: str) -> tuple[str, str]:
    """``(family, member)`` for ``name`` (``rope``) or ``family:name`` (``attention:math``).

    Raises:
        ConfigError: an unknown name (with the closest match), or a name in several families.
    """
    load_plugins()
    if ":" in name:
        family, member = name.split(":", 1)
        if family not in FAMILIES:
            raise ConfigError(
                f"unknown component family '{family}'{did_you_mean(family, FAMILIES)}; families: "
                f"{', '.join(FAMILIES)}"
            )
        FAMILIES[family].get(member)  # raises with the choices and the closest match
        return family, member
    found = [family for family in COMPONENTS if name in FAMILIES[family]]
    if len(found) > 1:
        options = " or ".join(f"'{f}:{name}'" for f in found)
        raise ConfigError(f"'{name}' is a member of several families; write {options}")
    if not found:
        every = [m for f in COMPONENTS for m in FAMILIES[f].available()]
        raise ConfigError(
            f"no component is called '{name}'{did_you_mean(name, every)}; `swapformer components` lists them"
        )
    return found[0], name


def resolve_option(name: str) -> str | None:
    """The option variant ``option:NAME`` names, ``*`` for ``options`` (all of them), or None: not an option.

    Raises:
        ConfigError: an unknown option variant (with the closest match and the choices).
    """
    if name == "options":
        return "*"
    if not name.startswith("option:"):
        return None
    option = name.split(":", 1)[1]
    if option not in OPTION_VARIANTS:
        raise ConfigError(
            f"unknown option variant '{option}'{did_you_mean(option, OPTION_VARIANTS)}; option variants: "
            f"{', '.join(OPTION_VARIANTS)}"
        )
    return option


def format_results(results: Sequence[CombinationResult], *, max_failures: int = 20) -> str:
    """A compact report: passes and failures per check, refusals grouped by reason, the failures, a summary."""
    lines = [
        f"  {'check':<17} {'pass':>5} {'fail':>5} {'skipped':>8}  (skipped: a member declares it unsupported)"
    ]
    for name in CHECK_NAMES:
        done = [c for r in results for c in r.checks if c.name == name]  # refused ones have no checks
        passed, skipped = sum(c.passed and not c.skipped for c in done), sum(c.skipped for c in done)
        lines.append(f"  {name:<17} {passed:>5} {len(done) - passed - skipped:>5} {skipped:>8}")
    refused: dict[str, list[CombinationResult]] = {}
    for r in results:
        if r.status == "refused":
            refused.setdefault(r.reason, []).append(r)
    for reason, group in refused.items():
        lines.append(
            f"refused by the matrix ({len(group)} combination{'s' * (len(group) != 1)}, e.g. {group[0].combination.id}): {reason}"
        )
    failed = [r for r in results if r.status == "fail"]
    if failed:
        lines.append(f"failed ({len(failed)}):")
        for r in failed[:max_failures]:
            first, *others = r.failures
            also = f" (also failing: {', '.join(c.name for c in others)})" if others else ""
            lines.append(f"  {r.combination.id}: {first.name}: {first.message}{also}")
        if len(failed) > max_failures:
            lines.append(f"  ... and {len(failed) - max_failures} more")
    passed = sum(r.status == "pass" for r in results)
    seconds = sum(r.seconds for r in results)
    lines.append(
        f"{len(results)} combinations: {passed} passed, {len(failed)} failed, "
        f"{sum(map(len, refused.values()))} refused by the matrix ({seconds:.1f} s)"
    )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = VerbParser(
        allow_abbrev=False,
        prog="swapformer check",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "name",
        help="a component (rope), family:name when several families use the name, 'all', option:NAME (a "
        f"config option variant: {', '.join(OPTION_VARIANTS)}) or 'options' (all of them)",
    )
    p.add_argument(
        "--kind", choices=model_kinds(), action="append", help="model kind (repeatable; default: every kind)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="not the full product: the ModelConfig defaults with one other family varied at a time, other head "
        "layouts and option variants; no training (the full run memorizes a batch in every combination)",
    )
    p.add_argument(
        "--pairs",
        action="store_true",
        help="not the full product: kind x kernel x positional x head layout in full, the other families chosen "
        "so that every two members of any two families meet at least once (a few hundred combinations)",
    )
    p.add_argument("--verbose", "-v", action="store_true", help="one line per combination as it finishes")
    return p


def main(argv: list[str] | None = None, *, file: TextIO | None = None) -> None:
    """Run the checks and print the report.

    Raises:
        SystemExit: 1 when a combination fails, 2 for an unknown or ambiguous name.
    """
    file = file or sys.stdout
    fixed: dict[str, str] = {}
    with user_errors("check"):
        args = parser().parse_args(argv)
        option = resolve_option(args.name)
        if args.name != "all" and option is None:
            family, member = resolve(args.name)
            fixed[family] = member
    combos = combinations(kinds=args.kind, fixed=fixed, quick=args.quick, pairs=args.pairs)
    if option is not None:  # the option variants alone (each runs once per kind, quick or not)
        combos = [c for c in combos if c.option is not None and option in ("*", c.option)]
    subject = " + ".join(f"{f} '{m}'" for f, m in fixed.items()) or "every component"
    subject = subject if option is None else "every option variant" if option == "*" else f"option '{option}'"
    print(f"checking {len(combos)} combinations with {subject}", file=file, flush=True)

    def progress(result: CombinationResult) -> None:
        if args.verbose:
            detail = f"  {result.reason}" if result.reason else ""
            print(f"  {result.status:<7} {result.combination.id}{detail}", file=file, flush=True)

    threads = torch.get_num_threads()
    # the models are tiny: more threads only contend (10x slower on a busy 2-core machine)
    torch.set_num_threads(1)
    try:
        results = run(combos, progress=progress, quick=args.quick)
    finally:
        torch.set_num_threads(threads)
    print(format_results(results), file=file, flush=True)
    if any(r.status == "fail" for r in results):
        raise SystemExit(1)
