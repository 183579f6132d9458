"""Run the study's notebooks with papermill and build the book.

The runs are listed once, in `notebooks/runs.yml`::

    runs:
      - name: case1-order-penalty
        notebook: 01_order_penalty.ipynb
        parameters: {epochs: 20000}

Usage::

    python -m crnn.study run [--quick] [--jobs N] [--only NAME ...] [--force]
    python -m crnn.study build
    python -m crnn.study book [--jobs N]        # run, then build

Each run executes `notebooks/<notebook>` with its parameters plus
`results_path` (where the notebook writes its JSON results) and `quick`.
The executed notebook goes to `<book>/runs/<name>.ipynb`, the results to
`<results>/<name>.json`. A run whose notebook, parameters, package source and
mode are unchanged since its last success is skipped. A run executes into
`<name>.partial.ipynb` and is moved into place only when it succeeds, so a
failure leaves the partial notebook for inspection and every other output as
it was.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(__file__).resolve().parent

DATA = ROOT / "data"

__all__ = [
    "Results",
    "Run",
    "RunFailed",
    "build_book",
    "load_dataset",
    "load_manifest",
    "load_results",
    "main",
    "make_datasets",
    "run_all",
]


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    notebook: str
    parameters: dict
    needs: tuple[str, ...] = ()


class RunFailed(RuntimeError):
    """A notebook run failed; the message names the run, notebook, cell and error."""


def load_manifest(path: Path | None = None) -> list[Run]:
    """The runs listed in `notebooks/runs.yml` (names unique, notebooks existing)."""
    path = Path(path or ROOT / "notebooks" / "runs.yml")
    spec = yaml.safe_load(path.read_text()) or {}
    runs, seen = [], set()
    for i, entry in enumerate(spec.get("runs", [])):
        missing = {"name", "notebook"} - set(entry)
        if missing:
            raise ValueError(f"{path}: run #{i + 1} lacks {sorted(missing)}")
        if entry["name"] in seen:
            raise ValueError(f"{path}: run name {entry['name']!r} repeats")
        seen.add(entry["name"])
        if not (path.parent / entry["notebook"]).exists():
            raise ValueError(f"{path}: run {entry['name']!r} names a missing notebook {entry['notebook']!r}")
        needs = tuple(entry.get("needs") or ())
        unknown = [n for n in needs if n not in seen]
        if unknown:
            raise ValueError(f"{path}: run {entry['name']!r} needs {unknown}, which are not listed before it")
        runs.append(Run(entry["name"], entry["notebook"], dict(entry.get("parameters") or {}), needs))
    return runs


def _package_digest() -> str:
    h = hashlib.sha256()
    for file in sorted(PACKAGE.glob("*.py")):
        h.update(file.name.encode())
        h.update(file.read_bytes())
    return h.hexdigest()


def cache_key(run: Run, notebooks_dir: Path, quick: bool, package_digest: str, results_dir: Path | None = None) -> str:
    h = hashlib.sha256()
    for need in run.needs:  # a run that reads other runs' results reruns when they change
        path = (results_dir or DATA / "results") / f"{need}.json"
        h.update(path.read_bytes() if path.exists() else b"missing")
    h.update((notebooks_dir / run.notebook).read_bytes())
    h.update(json.dumps(run.parameters, sort_keys=True).encode())
    h.update(f"quick={quick}".encode())
    h.update(package_digest.encode())
    return h.hexdigest()


def _hide_injected_parameters(path: Path) -> None:
    """Tag papermill's injected-parameters cell `remove-cell`: it holds this machine's paths."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    nbformat.write(nb, str(path))


def _execute(run: Run, notebooks_dir: Path, runs_dir: Path, results_dir: Path, quick: bool, key: str, log_output: bool) -> dict:
    import papermill as pm

    runs_dir.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    partial_nb = runs_dir / f"{run.name}.partial.ipynb"
    partial_json = results_dir / f"{run.name}.partial.json"
    final_nb, final_json = runs_dir / f"{run.name}.ipynb", results_dir / f"{run.name}.json"
    parameters = {**run.parameters, "quick": quick, "results_path": str(partial_json.resolve())}
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(notebooks_dir / run.notebook),
            str(partial_nb),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(notebooks_dir),
            progress_bar=False,
            log_output=log_output,
        )
    except pm.PapermillExecutionError as err:
        raise RunFailed(
            f"run {run.name!r} failed: notebook {run.notebook}, cell {err.exec_count} (index {err.cell_index}): "
            f"{err.ename}: {err.evalue}\n  partial executed notebook kept at {partial_nb}"
        ) from None
    except Exception as err:  # kernel died, bad parameters, ...
        raise RunFailed(f"run {run.name!r} failed: notebook {run.notebook}: {type(err).__name__}: {err}") from None
    _hide_injected_parameters(partial_nb)
    if not partial_json.exists():
        raise RunFailed(f"run {run.name!r}: notebook {run.notebook} wrote no results to results_path")
    results = json.loads(partial_json.read_text())
    results.setdefault("run", {}).update(
        {
            "name": run.name,
            "notebook": run.notebook,
            "parameters": run.parameters,
            "quick": quick,
            "wall_time_s": time.perf_counter() - t0,
            "cache_key": key,
        }
    )
    final_json.write_text(json.dumps(results, indent=2, default=float) + "\n")
    partial_json.unlink()
    os.replace(partial_nb, final_nb)
    return {"name": run.name, "status": "ran", "wall_time_s": time.perf_counter() - t0}


def _cached(run: Run, runs_dir: Path, results_dir: Path, key: str) -> bool:
    final_nb, final_json = runs_dir / f"{run.name}.ipynb", results_dir / f"{run.name}.json"
    if not (final_nb.exists() and final_json.exists()):
        return False
    try:
        return json.loads(final_json.read_text()).get("run", {}).get("cache_key") == key
    except json.JSONDecodeError:
        return False


def run_all(
    *,
    quick: bool = False,
    jobs: int = 1,
    only: list[str] | None = None,
    force: bool = False,
    manifest: Path | None = None,
    book_dir: Path | None = None,
    results_dir: Path | None = None,
    progress: bool = True,
    log_output: bool = False,
) -> list[dict]:
    """Execute the manifest's runs (all, or those named in `only`); returns one status dict per run.

    Raises `RunFailed` for the first run that fails, after the runs already
    started have finished.
    """
    from tqdm.auto import tqdm

    manifest = Path(manifest or ROOT / "notebooks" / "runs.yml")
    notebooks_dir = manifest.parent
    runs_dir = Path(book_dir or ROOT / "book") / "runs"
    results_dir = Path(results_dir or ROOT / "data" / "results")
    runs = load_manifest(manifest)
    os.environ["CRNN_PROGRESS"] = "0"  # kernels inherit it: no fit progress bars in the book's pages
    if only:
        unknown = set(only) - {r.name for r in runs}
        if unknown:
            raise ValueError(f"unknown run(s) {sorted(unknown)}; the manifest lists {[r.name for r in runs]}")
        runs = [r for r in runs if r.name in only]
    digest = _package_digest()
    selected = {r.name for r in runs}
    for run in runs:
        for need in run.needs:
            if need not in selected and not (results_dir / f"{need}.json").exists():
                raise ValueError(f"run {run.name!r} needs the results of {need!r}; run it first (or drop --only)")
    statuses: list[dict] = []
    pending, finished, running = list(runs), set(), {}
    failure = None
    bar = tqdm(total=len(runs), desc="notebook runs", unit="run", disable=not progress)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        while True:
            submitted = True
            while submitted and failure is None:  # cached runs can unblock others at once
                submitted = False
                for run in list(pending):
                    if any(n in selected and n not in finished for n in run.needs):
                        continue
                    pending.remove(run)
                    key = cache_key(run, notebooks_dir, quick, digest, results_dir)
                    if not force and _cached(run, runs_dir, results_dir, key):
                        statuses.append({"name": run.name, "status": "cached", "wall_time_s": 0.0})
                        finished.add(run.name)
                        bar.update(1)
                        submitted = True
                    else:
                        future = pool.submit(_execute, run, notebooks_dir, runs_dir, results_dir, quick, key, log_output)
                        running[future] = run
            if not running:
                break
            done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                run = running.pop(future)
                try:
                    statuses.append(future.result())
                    finished.add(run.name)
                    bar.set_postfix_str(f"{run.name} done")
                except RunFailed as err:
                    failure = failure or err
                    statuses.append({"name": run.name, "status": "failed", "error": str(err)})
                bar.update(1)
    bar.close()
    if failure is not None:
        raise failure
    return statuses


def build_book(book_dir: Path | None = None, *, strict: bool = True) -> Path:
    """Build the static HTML book with Jupyter Book 1 (warnings are errors); returns the HTML folder."""
    book_dir = Path(book_dir or ROOT / "book")
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(book_dir), "--keep-going"]
    if strict:
        cmd.append("--warningiserror")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"book build failed ({' '.join(cmd)}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return book_dir / "_build" / "html"


def prepare_book_copy(target: Path) -> Path:
    """Copy the book sources (not its build or runs) to `target`, for building elsewhere."""
    shutil.copytree(ROOT / "book", target, ignore=shutil.ignore_patterns("_build", "runs"))
    return target


def make_datasets(out_dir: Path | None = None, spec: Path | None = None, names: list[str] | None = None) -> list[Path]:
    """Write the canonical datasets listed in `data/datasets.yml` (CSV + JSON manifest each)."""
    from .data import make_dataset
    from .mechanism import Mechanism

    spec = Path(spec or DATA / "datasets.yml")
    out_dir = Path(out_dir or DATA)
    entries = yaml.safe_load(spec.read_text())["datasets"]
    paths = []
    for name, entry in entries.items():
        if names and name not in names:
            continue
        entry = dict(entry)
        mechanism = Mechanism.parse(entry.pop("mechanism"))
        ds = make_dataset(mechanism, **entry)
        ds.metadata["name"] = name
        paths.append(ds.save(out_dir / name))
    return paths


def load_dataset(name: str):
    """The canonical dataset `name` from `data/` (see `data/datasets.yml`)."""
    from .data import Dataset

    path = DATA / f"{name}.csv"
    if not path.exists():
        known = sorted(yaml.safe_load((DATA / "datasets.yml").read_text())["datasets"])
        raise ValueError(f"no dataset {name!r} in {DATA}; known: {known} (python -m crnn.study data writes them)")
    return Dataset.load(path)


def load_results(name: str, results_dir: Path | None = None) -> dict:
    """The JSON results of the run `name` (written by the runner)."""
    path = Path(results_dir or DATA / "results") / f"{name}.json"
    if not path.exists():
        raise ValueError(f"no results for run {name!r} at {path}; run python -m crnn.study run --only {name}")
    return json.loads(path.read_text())


def _jsonable(value):
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a pandas DataFrame
        return _jsonable(value.to_dict(orient="records"))
    return value


class Results:
    """Collects a notebook's machine-readable results and glues them for the book's prose.

    `results.glue("name", value)` stores the value and makes it available to
    the notebook's markdown as ``{glue:text}`name` `` (myst-nb); `save()`
    writes everything as JSON to the run's `results_path`.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.data: dict = {}

    def __setitem__(self, key, value):
        self.data[key] = value

    def __getitem__(self, key):
        return self.data[key]

    def glue(self, name: str, value, display: bool = False) -> None:
        """Store `value` (figures are not stored) and glue it under `name`; returns None so
        that a glue at the end of a cell prints nothing."""
        from myst_nb import glue

        if not hasattr(value, "savefig"):
            self.data[name] = value
        glue(name, value, display=display)

    def save(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(_jsonable(self.data), indent=2) + "\n")
        return self.path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crnn.study", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "book"):
        p = sub.add_parser(name, help="execute the notebook runs" + (" and build the book" if name == "book" else ""))
        p.add_argument("--quick", action="store_true", help="small, fast versions of every run (for tests)")
        p.add_argument("--jobs", type=int, default=1, help="runs executed at once")
        p.add_argument("--only", nargs="+", metavar="NAME", help="run only these")
        p.add_argument("--force", action="store_true", help="rerun even when cached")
        p.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
        p.add_argument("--book-dir", type=Path, help="book folder (executed notebooks go to its runs/); default book/")
        p.add_argument("--results-dir", type=Path, help="results folder; default data/results")
    b = sub.add_parser("build", help="build the book from the executed notebooks")
    b.add_argument("--book-dir", type=Path, help="book folder; default book/")
    sub.add_parser("data", help="write the canonical datasets of data/datasets.yml")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        if args.command in ("run", "book"):
            statuses = run_all(
                quick=args.quick,
                jobs=args.jobs,
                only=args.only,
                force=args.force,
                log_output=args.log_output,
                book_dir=args.book_dir,
                results_dir=args.results_dir,
            )
            for s in statuses:
                print(f"{s['name']:<40} {s['status']:<7} {s['wall_time_s']:8.1f} s")
        if args.command == "data":
            for path in make_datasets():
                print(f"wrote {path}")
        if args.command in ("build", "book"):
            html = build_book(getattr(args, "book_dir", None))
            print(f"book built: {html / 'index.html'}")
    except (RunFailed, RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
