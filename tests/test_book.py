"""Every notebook run in quick mode, the book built from them, and that book in a real browser.

The quick runs go to a temporary book copy and results folder (conftest: `quick_study`), so the
full results in data/results and book/runs are never touched by the tests. The book of the committed full
runs is checked by the same tests in tests/test_book_full.py (the checks themselves: tests/book_checks.py).
`make test` distributes whole files over its pytest workers in collection order (`--dist loadfile
--no-loadscope-reorder`): one worker starts on this file (the longest: the quick study) at once, the other on
the full book and then the rest of the suite.
"""

import json

import pytest
from book_checks import *  # noqa: F403 (the book's checks, collected here for the quick book)

from crnn import study

pytestmark = pytest.mark.slow


def test_every_run_executes_in_quick_mode(quick_study):
    book, results, statuses = quick_study
    names = [r.name for r in study.load_manifest()]
    assert sorted(s["name"] for s in statuses) == sorted(names)
    for name in names:
        data = json.loads((results / f"{name}.json").read_text())
        assert data["run"]["quick"] is True and data["run"]["name"] == name
        assert (book / "runs" / f"{name}.ipynb").exists()
    case4 = json.loads((results / "case4-stiffness.json").read_text())
    assert {"seed_cut", "exact_limit", "slopes", "optimiser_path"} <= set(case4)
    assert len(case4["seed_cut"]) >= 3 and all("stiffness ratio" in row for row in case4["seed_cut"])
    case5 = json.loads((results / "case5-3A.json").read_text())
    assert {"per_start", "summary", "oracle", "case5_successes"} <= set(case5)
    sindy = json.loads((results / "sindy.json").read_text())
    assert len(sindy["comparison"]) == 4


@pytest.fixture(scope="module")
def book_html(request):
    """(kind, html folder) of the book built from the quick runs."""
    return "quick", request.getfixturevalue("quick_book_html")
