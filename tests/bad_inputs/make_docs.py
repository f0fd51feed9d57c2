"""Write ``docs/bad-inputs.md`` from the cases: run each one and put the message it prints in the table.

python tests/bad_inputs/make_docs.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the folder as the package it is in the tests
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    __package__ = "tests.bad_inputs"

from .harness import AREAS, DOCS_PAGE, Case, Fixtures, all_cases, check_message, run_case, shown

HEAD = """# Bad inputs: what you see

Every mistake below was made the way a user makes it (a command line, a recipe value, a file, a Python call, a
signal sent to a run) and the message is what swapformer printed for it, copied by
`tests/bad_inputs/make_docs.py`; `tests/bad_inputs/test_bad_inputs.py` runs every row and fails when the code
and this page disagree. On the command line every user error is one line, `swapformer <verb>: error: ...`, and
exit code 2; `--debug` (or `SWAPFORMER_DEBUG=1`) shows the traceback instead. In Python the same mistakes raise
`ValueError` (`swapformer.errors.ConfigError` is one) with the same text.

Folders of the run that made this page are shortened: `fixtures/` holds the small checkpoints the rows use.
"""


def cell(text: str) -> str:
    """A table cell holding ``text`` verbatim, line by line as code."""
    lines = [line.replace("|", "\\|") for line in text.splitlines()] or [""]
    return "<br>".join(f"`{line}`" if line.strip() else "" for line in lines)


def row(case: Case, message: str) -> str:
    mistake = case.mistake.replace("|", "\\|")
    return f"| {case.id} | {mistake} | {cell(message)} |"


def main() -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cases = all_cases()
    parts = [HEAD]
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        os.environ.setdefault("SWAPFORMER_CACHE_DIR", str(Path(folder) / "cache"))
        fx = Fixtures(Path(folder))
        for area in AREAS:
            chosen = [case for case in cases if case.area == area]
            if not chosen:
                continue
            parts += [f"\n## {area}\n", "| case | mistake | what you see |", "|---|---|---|"]
            for case in chosen:
                try:
                    outcome = run_case(case, fx)
                    check_message(case, outcome)
                except AssertionError as err:  # left out of the page; the test names it too
                    failed.append(case.id)
                    print(f"FAILED {err}", file=sys.stderr)
                    continue
                parts.append(row(case, shown(case, outcome, fx)))
                print(f"{case.id}: ok", file=sys.stderr)
    DOCS_PAGE.write_text("\n".join(parts) + "\n", encoding="utf-8")
    print(f"wrote {DOCS_PAGE} ({len(cases) - len(failed)} cases; failed and left out: {failed or 'none'})")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
