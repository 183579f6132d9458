# Two commands: `make book` (the book, from the committed runs) and `make test`; `make rebuild` reruns what is stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
JOBS ?= 2

.PHONY: env test test-fast book rebuild status lint bench lab clean

env: $(STAMP)

$(STAMP): pyproject.toml
	rm -f $(VENV)/.installed-*
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,sindy,cluster,bayes]"
	touch $@

# The whole test suite: package numerics, training, notebooks in quick mode, the book build.
# Two pytest workers, whole test files each: one runs tests/test_book.py (quick study, its book, browser), the other
# tests/test_book_full.py (the committed runs' book, browser) and then the rest, as workers come free.
# --no-loadscope-reorder keeps the files in collection order, so the longest file (test_book.py, first) starts at once;
# xdist's default order (most tests first) started it after a quarter of the suite had run.
TEST_WORKERS ?= 2
# One BLAS thread per process: two workers and the quick study's kernels share the cores (crnn/study.py, ONE_THREAD).
ONE_THREAD := OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
test: env
	$(ONE_THREAD) $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Everything but the slow tests.
test-fast: env
	$(ONE_THREAD) $(BIN)/python -m pytest -m "not slow" -n $(TEST_WORKERS)

# The static HTML book from the committed runs (book/runs, data/results): executes only runs that are
# missing; stale runs are kept (their pages say so) and listed at the end.
book: env
	$(BIN)/python -m crnn.study book --jobs $(JOBS)

# Re-execute the stale and missing runs (ALL=1: every run), at full size, then build the book.
# Prints the plan first (each run with its last wall time, the expected total), then a line per run.
rebuild: env
	$(BIN)/python -m crnn.study book --rebuild --jobs $(JOBS)$(if $(ALL), --force)

# Per run: fresh, stale (what changed) or missing; fails unless every run is fresh.
status: env
	$(BIN)/python -m crnn.study status

lint: env
	$(BIN)/ruff check crnn tests bench
	$(BIN)/ruff format --check crnn tests bench

# Training speed, with the PyTorch + torchdiffeq baseline side by side (installs the bench extra).
bench: env
	$(BIN)/python -m pip install --quiet -e ".[dev,sindy,cluster,bayes,bench]"
	$(BIN)/python bench/train_speed.py --torch

# JupyterLab (optional, pinned in the `lab` extra) on the notebooks, with this environment as its kernel.
lab: env
	$(BIN)/python -m pip install --quiet -e ".[dev,sindy,cluster,bayes,lab]"
	$(BIN)/jupyter lab --notebook-dir=notebooks

# Generated files only: book/runs holds committed results (the executed notebooks), kept.
clean:
	rm -rf book/_build book/_stale.json book/reproducibility.md scratch .pytest_cache
