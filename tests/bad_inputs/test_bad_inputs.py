"""Every case of the bad-inputs table: a clean one-line error naming the value and the fix, no traceback, and
the same message as ``docs/bad-inputs.md`` shows (``python tests/bad_inputs/make_docs.py`` rewrites the page)."""

from __future__ import annotations

import pytest

from .harness import DOCS_PAGE, Fixtures, all_cases, check_message, run_case, shown
from .make_docs import row

CASES = all_cases()


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return Fixtures(tmp_path_factory.mktemp("bad-inputs"))


def test_the_table_is_big_and_its_ids_unique():
    ids = [case.id for case in CASES]
    assert len(set(ids)) == len(ids), sorted({i for i in ids if ids.count(i) > 1})
    assert len(CASES) >= 60, f"the table must hold at least 60 distinct mistakes, it has {len(CASES)}"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case, fx):
    outcome = run_case(case, fx)
    check_message(case, outcome)
    expected = row(case, shown(case, outcome, fx))
    page = DOCS_PAGE.read_text(encoding="utf-8")
    assert expected in page, (
        f"docs/bad-inputs.md does not show what {case.id} prints today; run "
        f"`python tests/bad_inputs/make_docs.py` and review the diff. Expected row:\n{expected}"
    )
