import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

import crnn  # noqa: E402

CLASSIC = "2A -> B ; 0.1\nA -> C ; 0.2\nC -> D ; 0.13\nB + D -> E ; 0.3"


@pytest.fixture
def getkey():
    """A fresh PRNG key on each call, deterministic within a test."""
    keys = iter(jax.random.split(jax.random.PRNGKey(5678), 1000))
    return lambda: next(keys)


@pytest.fixture(scope="session")
def classic():
    return crnn.Mechanism.parse(CLASSIC)


@pytest.fixture(scope="session")
def classic_dataset(classic):
    return crnn.make_dataset(classic, reactants=["A", "B"], seed=0)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def quick_study(tmp_path_factory):
    """Every run of notebooks/runs.yml in quick mode, into a temporary book copy and results folder
    (the full results in data/results and book/runs are never touched by the tests)."""
    from crnn import study

    root = tmp_path_factory.mktemp("quick")
    book = study.prepare_book_copy(root / "book")
    results = root / "results"
    statuses = study.run_all(quick=True, jobs=2, book_dir=book, results_dir=results, progress=False)
    return book, results, statuses


@pytest.fixture(scope="session")
def quick_book_html(request):
    """The static HTML book built (warnings are errors) from the quick runs.

    With the environment variable CRNN_TEST_BOOK_HTML set to a built book's html folder, the browser
    and link tests check that book instead (no quick study is run): for re-checking a book built once.
    """
    import os
    from pathlib import Path

    from crnn import study

    given = os.environ.get("CRNN_TEST_BOOK_HTML")
    if given:
        return Path(given)
    book, results, _ = request.getfixturevalue("quick_study")
    return study.build_book(book, results_dir=results)


@pytest.fixture(scope="session")
def full_book_html(tmp_path_factory):
    """The static HTML book built from the committed full runs (book/runs, data/results) in a temporary
    copy of the book, executing nothing. Skipped, naming them, where some runs are missing (no committed
    executed notebook or results): `make book` executes those."""
    from crnn import results, study

    missing = [s.name for s in study.run_status() if s.state == "missing"]
    if missing:
        pytest.skip(
            f"full book SKIPPED: {len(missing)} run(s) without a committed executed notebook or results "
            f"({', '.join(missing)}); make book executes them"
        )
    book = study.prepare_book_copy(tmp_path_factory.mktemp("full") / "book", with_runs=True)
    return study.build_book(book, results_dir=results.DATA / "results")
