"""The book of the committed full runs (book/runs, data/results), built in a temporary copy executing nothing
(conftest: `full_book_html`; skipped, naming them, where runs are missing), checked by the same tests as the quick
book (tests/book_checks.py): no machine path, every link, a real browser, read at a glance."""

import pytest
from book_checks import *  # noqa: F403 (the book's checks, collected here for the full book)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def book_html(request):
    """(kind, html folder) of the book built from the committed full runs."""
    return "full", request.getfixturevalue("full_book_html")
