"""Run the study's notebooks with papermill and build the book (the command-line runner).

The runs are listed once, in `notebooks/runs.yml`::

    runs:
      - name: case2-3A
        notebook: 02_no_extra_species.ipynb
        title: "Case 2 for 3A -> B"
        parameters: {dataset: third_order_3A}
        needs: [other-run]              # runs whose results this notebook reads

Usage::

    python -m crnn.study run [NAME ...] [--quick] [--jobs N] [--force] [--keep-going]
    python -m crnn.study run NAME --set key=value ... [--params FILE] [--out DIR] [--canonical]
    python -m crnn.study run --scheduler ADDRESS      # on an existing Dask cluster
    python -m crnn.study build
    python -m crnn.study book [--jobs N]               # execute missing runs only, then build
    python -m crnn.study book --rebuild [--force]      # execute stale and missing (--force: all), then build
    python -m crnn.study status                        # fresh, stale (what changed) or missing, per run

Each run executes `notebooks/<notebook>` with its parameters plus `quick` and `results_path`. The executed
notebook goes to `<book>/runs/<name>.ipynb`, the results to `<results>/<name>.json`. A run is skipped (cached)
when its notebook, parameters, mode, pinned versions and the code of the package source files its notebook can
execute (the modules it imports and theirs, `package_closure`; the runner aside; `code_digest`: docstrings,
comments and layout do not count) are unchanged and every input it read last time (datasets, seed reference,
other runs' results, as recorded by `crnn.results`) has the same digest. Each run's results record these
components separately (the notebook's digest, the parameters, a code digest per package file, the pins) beside the
combined `cache_key`, so `status` can name what changed. A run executes in a temporary folder (on a cluster
worker, or here) and its outputs come back as data; completion writes the notebook first and the results last,
each through a temporary file, so an interrupted run is never mistaken for a finished one.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
from pathlib import Path

import yaml

from . import results as _results
from .results import ROOT, dump_json, file_digest, input_matches

PACKAGE = Path(__file__).resolve().parent
RUNNER_ONLY = {"study.py"}  # package files whose edits do not change any run's output

__all__ = [
    "Run",
    "RunFailed",
    "RunStatus",
    "build_book",
    "execute_notebook_task",
    "load_manifest",
    "main",
    "make_datasets",
    "notebook_parameters",
    "run_all",
    "run_status",
]

_DONE = ("ran", "cached", "stale")  # statuses after which the runs that need a run can start
_MANIFEST_KEYS = {"name", "notebook", "title", "parameters", "needs"}
_RUNNER_PARAMETERS = {"quick", "results_path"}


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    notebook: str
    parameters: dict
    needs: tuple[str, ...] = ()
    title: str | None = None

    def parameters_for(self, quick: bool) -> dict:
        """The parameters the notebook gets from the manifest (the same in both modes: a notebook's quick
        version is the notebook's own business, `Results.quick`, and recorded with its results)."""
        return dict(self.parameters)


class RunFailed(RuntimeError):
    """One or more notebook runs failed; the message names each run, notebook, cell and error, with its traceback.

    `failures` lists ``{"name", "error", "traceback"}``; `statuses` holds every run's status.
    """

    def __init__(self, message: str, failures: list[dict] | None = None, statuses: list[dict] | None = None):
        super().__init__(message)
        self.failures = failures or []
        self.statuses = statuses or []


# ----------------------------------------------------------------------------- manifest and parameters


def _literal(source: str):
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return source


def notebook_parameters(path: Path) -> dict[str, dict]:
    """The parameters cell of a notebook: name -> {"default", "type", "help"} (papermill's reading of it)."""
    import papermill as pm

    params = pm.inspect_notebook(str(path))
    return {
        name: {"default": _literal(p["default"]), "type": p["inferred_type_name"], "help": p["help"]}
        for name, p in params.items()
    }


def load_manifest(path: Path | None = None, *, check_parameters: bool = True) -> list[Run]:
    """The runs of `notebooks/runs.yml`: names unique, notebooks existing, `needs` listed earlier,
    and (with `check_parameters`) every parameter one the notebook declares."""
    path = Path(path or ROOT / "notebooks" / "runs.yml")
    spec = yaml.safe_load(path.read_text()) or {}
    runs, seen = [], set()
    declared: dict[str, dict] = {}
    for i, entry in enumerate(spec.get("runs", [])):
        where = f"{path.name}: run #{i + 1}" + (f" {entry['name']!r}" if "name" in entry else "")
        missing = {"name", "notebook"} - set(entry)
        if missing:
            raise ValueError(f"{where} lacks {sorted(missing)}")
        unknown = set(entry) - _MANIFEST_KEYS
        if unknown:
            raise ValueError(f"{where} has unknown key(s) {sorted(unknown)}; allowed: {sorted(_MANIFEST_KEYS)}")
        if entry["name"] in seen:
            raise ValueError(f"{path.name}: run name {entry['name']!r} repeats")
        seen.add(entry["name"])
        notebook = path.parent / entry["notebook"]
        if not notebook.exists():
            raise ValueError(f"{where} names a missing notebook {entry['notebook']!r}")
        needs = tuple(entry.get("needs") or ())
        unknown_needs = [n for n in needs if n not in seen]
        if unknown_needs:
            raise ValueError(f"{where} needs {unknown_needs}, which are not listed before it")
        parameters = dict(entry.get("parameters") or {})
        if check_parameters:
            if entry["notebook"] not in declared:
                declared[entry["notebook"]] = notebook_parameters(notebook)
            check_parameter_names(entry["name"], entry["notebook"], parameters, declared[entry["notebook"]])
        runs.append(Run(entry["name"], entry["notebook"], parameters, needs, entry.get("title")))
    return runs


def check_parameter_names(run: str, notebook: str, parameters: dict, declared: dict) -> None:
    """Raise `ValueError` naming the run and key for a parameter the notebook does not declare."""
    for key in parameters:
        if key in _RUNNER_PARAMETERS:
            raise ValueError(f"run {run!r}: parameter {key!r} is set by the runner, not in the manifest")
        if key not in declared:
            known = sorted(set(declared) - _RUNNER_PARAMETERS)
            raise ValueError(f"run {run!r}: notebook {notebook} has no parameter {key!r}; its parameters: {known}")


# ----------------------------------------------------------------------------- cache key


def _package_digest() -> str:
    h = hashlib.sha256()
    for file in sorted(PACKAGE.glob("*.py")):
        if file.name in RUNNER_ONLY:
            continue
        h.update(file.name.encode())
        h.update(file.read_bytes())
    return h.hexdigest()


def code_digest(path: Path) -> str:
    """sha256 of a module's code: its syntax tree without docstrings (and other statements that are a bare string),
    comments and layout. An edit of the documentation changes no run's output, so it stales none (the fix of a
    docstring used to cost a rebuild of every run that imports the module). The file's own digest where it does not
    parse."""
    source = Path(path).read_bytes()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return hashlib.sha256(source).hexdigest()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            kept = [
                s
                for s in body
                if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str))
            ]
            node.body = kept or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


def package_file_digests() -> dict[str, str]:
    """Digest of the code of each package source file that can change a run's output (the runner aside): file name
    -> `code_digest`."""
    return {f.name: code_digest(f) for f in sorted(PACKAGE.glob("*.py")) if f.name not in RUNNER_ONLY}


def upgrade_recorded_digests(results_dir: Path) -> list[str]:
    """Results written before code digests record each package file's own sha256; where that file is still as it
    was, the record gets the file's `code_digest` instead (the same file: no run turns fresh or stale), so that a
    later edit of its documentation alone stales nothing. The results files change only in those digests (no other
    run reads a `run` block). Returns the runs whose records changed."""
    current = {f.name: file_digest(f) for f in PACKAGE.glob("*.py") if f.name not in RUNNER_ONLY}
    upgraded, codes = [], {}  # each file's code digest parsed once, however many records hold it
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        recorded = (data.get("run") or {}).get("package_sha256") or {}
        swaps = {f: _cached_code_digest(codes, f) for f, d in recorded.items() if current.get(f) == d}
        if swaps:
            recorded.update(swaps)
            dump_json(data, path)  # as the results were written (indent 2): only these digests change
            upgraded.append(path.stem)
    return upgraded


def _cached_code_digest(cache: dict, name: str) -> str:
    if name not in cache:
        cache[name] = code_digest(PACKAGE / name)
    return cache[name]


def _changed_files(recorded: dict, files, package_files: dict) -> list[str]:
    """Those of `files` whose code differs from what a run recorded (`package_sha256`: their `code_digest`s, or in
    results written before code digests, the files' own sha256, which still counts where the file is as it was)."""

    def same(name: str) -> bool:
        digest = recorded.get(name)
        if digest is None or digest == package_files.get(name):
            return digest is not None
        return (PACKAGE / name).exists() and digest == file_digest(PACKAGE / name)

    return sorted(f for f in files if not same(f))


def _crnn_imports(tree: ast.AST, modules: set[str], relative: bool) -> set[str]:
    """The package's modules (file stems) that the code of `tree` imports, anywhere in it (static: an import
    in a branch that never runs counts too). `relative`: the code is a package module (`from . import x`)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            parts = [alias.name.split(".") for alias in node.names if alias.name.split(".")[0] == "crnn"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "crnn":
            parts = [node.module.split(".")]
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and relative:
            parts = [["crnn", *node.module.split(".")] if node.module else ["crnn"]]
        else:
            continue
        if not parts:
            continue
        if isinstance(node, ast.ImportFrom) and len(parts[0]) == 1:  # from crnn import x: x may be a module
            found |= {alias.name for alias in node.names if alias.name in modules}
        found |= {"__init__"} | {p[1] for p in parts if len(p) > 1}
    return found & modules


def package_closure(notebook: Path) -> set[str]:
    """The package files (names, the runner aside) a notebook's code can execute: the modules its cells import,
    directly or through other modules of the package, with `__init__.py` (static import closure). Only these
    files' digests decide whether a run is stale: a new module, or an edit of one the notebook never imports,
    changes none of its outputs. Every file where a cell or a module does not parse."""
    files = {f.stem: f for f in PACKAGE.glob("*.py") if f.name not in RUNNER_ONLY}
    try:
        cells = json.loads(Path(notebook).read_text()).get("cells", [])
        code = [
            "\n".join(line for line in "".join(c.get("source", "")).splitlines() if not line.lstrip().startswith(("%", "!")))
            for c in cells
            if c.get("cell_type") == "code"
        ]
        todo = set().union(set(), *(_crnn_imports(ast.parse(c), set(files), relative=False) for c in code))
        seen: set[str] = set()
        while todo:
            stem = todo.pop()
            seen.add(stem)
            todo |= _crnn_imports(ast.parse(files[stem].read_text()), set(files), relative=True) - seen
    except (OSError, SyntaxError, ValueError, KeyError):
        return {f"{stem}.py" for stem in files}
    return {f"{stem}.py" for stem in seen}


def _components(run: Run, notebooks_dir: Path, quick: bool, package_files: dict, versions: dict) -> dict:
    """What `cache_key` combines, recorded one by one in a run's results so that `run_status` can name a change."""
    return {
        "notebook_sha256_source": file_digest(notebooks_dir / run.notebook),
        "parameters": run.parameters_for(quick),
        "package_sha256": package_files,
        "pins": versions,
    }


def pinned_versions(groups=("dependencies", "sindy")) -> dict[str, list[str]]:
    """The pins of `pyproject.toml` (the one place versions are chosen) of the groups the notebooks use:
    group -> requirement strings (`groups=None`: every group)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {"dependencies": project.get("dependencies", []), **project.get("optional-dependencies", {})}
    return {k: v for k, v in pins.items() if groups is None or k in groups}


def cache_key(run: Run, notebooks_dir: Path, quick: bool, package_digest: str, versions: dict | None = None) -> str:
    """Digest of what defines a run besides the files it reads: notebook, parameters, mode, package, pins."""
    h = hashlib.sha256()
    h.update(file_digest(notebooks_dir / run.notebook).encode())
    h.update(json.dumps(run.parameters_for(quick), sort_keys=True).encode())
    h.update(f"quick={quick}".encode())
    h.update(package_digest.encode())
    h.update(json.dumps(versions if versions is not None else pinned_versions(), sort_keys=True).encode())
    return h.hexdigest()


def _input_matches(label: str, recorded, results_dirs: list[Path]) -> bool:
    """Whether the input `label` still gives its `recorded` digest (a data file's, or that of the keys a
    notebook read of another run's results); an input that cannot be checked counts as changed."""
    kind, _, rest = label.partition("/")
    if kind == "data":
        path = _results.DATA / rest
        return path.exists() and file_digest(path) == recorded
    if kind == "results":
        for folder in results_dirs:
            path = folder / f"{rest}.json"
            if path.exists():
                try:
                    return input_matches(recorded, json.loads(path.read_text()))
                except json.JSONDecodeError:
                    return False
    return False


def _same_definition(
    run: Run, meta: dict, key: str, notebooks_dir: Path, quick: bool, package_files: dict, versions: dict
) -> bool:
    """Whether recorded results were computed from today's notebook, parameters, mode, pins and the package files
    the notebook can execute (`package_closure`); for results that record only the combined key: that key."""
    if "notebook_sha256_source" not in meta:
        return meta.get("cache_key") == key
    recorded = meta.get("package_sha256") or {}
    return (
        bool(meta.get("quick")) == quick
        and meta["notebook_sha256_source"] == file_digest(notebooks_dir / run.notebook)
        and meta.get("parameters") == run.parameters_for(quick)
        and meta.get("pins") == versions
        and not _changed_files(recorded, package_closure(notebooks_dir / run.notebook), package_files)
    )


def _cached(run: Run, runs_dir: Path, results_dir: Path, key: str, results_dirs: list[Path], definition: tuple) -> bool:
    """`definition`: (notebooks folder, quick, package file digests, pins), as `_same_definition` takes them."""
    final_nb, final_json = runs_dir / f"{run.name}.ipynb", results_dir / f"{run.name}.json"
    if not (final_nb.exists() and final_json.exists()):
        return False
    try:
        meta = json.loads(final_json.read_text()).get("run", {})
    except json.JSONDecodeError:
        return False
    if not _same_definition(run, meta, key, *definition) or meta.get("notebook_sha256") != file_digest(final_nb):
        return False
    return all(_input_matches(label, digest, results_dirs) for label, digest in meta.get("inputs", {}).items())


def _recorded_run(results_path: Path) -> dict | None:
    """The `run` block of a results file; None when the file is absent or unreadable."""
    try:
        return json.loads(results_path.read_text()).get("run") or {}
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


# ----------------------------------------------------------------------------- freshness


LEGACY_REASON = "inputs changed since it was computed; not recorded in detail"


@dataclasses.dataclass(frozen=True)
class RunStatus:
    """Whether a run's executed notebook and results match its inputs today.

    `state` is ``"fresh"``, ``"stale"`` (`reasons` names what changed) or ``"missing"`` (no executed
    notebook or no results). `upstream` lists the runs it needs, directly or not, that are not fresh:
    it stays fresh until their rerun actually changes their results.
    """

    name: str
    state: str
    reasons: tuple[str, ...] = ()
    wall_time_s: float | None = None
    git_commit: str | None = None
    git_clean: bool | None = None
    quick: bool | None = None
    upstream: tuple[str, ...] = ()

    @property
    def fresh(self) -> bool:
        return self.state == "fresh"

    def describe(self) -> str:
        """``fresh``, ``stale (notebook 04_stiffness.ipynb; parameters)`` or ``missing (no results)``."""
        text = self.state + (f" ({'; '.join(self.reasons)})" if self.reasons else "")
        if self.upstream and self.fresh:  # its results may change once these are rerun
            text += f" (upstream not fresh: {', '.join(self.upstream)})"
        return text


def _input_reason(label: str) -> str:
    kind, _, rest = label.partition("/")
    return {"data": f"data file {rest}", "results": f"results of {rest}"}.get(kind, f"input {label}")


def _status_of(run, meta, executed, quick, notebooks_dir, package_files, package_digest, versions, results_dirs) -> RunStatus:
    if meta is None:
        return RunStatus(run.name, "missing", ("no results",))
    info = {
        "wall_time_s": meta.get("wall_time_s"),
        "git_commit": meta.get("git_commit"),
        "git_clean": meta.get("git_clean"),
        "quick": meta.get("quick"),
    }
    if not executed.exists():
        return RunStatus(run.name, "missing", ("no executed notebook",), **info)
    recorded_quick = bool(meta.get("quick"))
    reasons = []
    if quick is not None and recorded_quick != quick:
        reasons.append("computed in quick mode" if recorded_quick else "computed in full mode")
    parameters = run.parameters_for(recorded_quick)
    if "notebook_sha256_source" in meta:  # the components of the cache key are recorded one by one
        if meta["notebook_sha256_source"] != file_digest(notebooks_dir / run.notebook):
            reasons.append(f"notebook {run.notebook}")
        if meta.get("parameters") != parameters:
            reasons.append("parameters")
        recorded, closure = meta.get("package_sha256") or {}, package_closure(notebooks_dir / run.notebook)
        changed = _changed_files(recorded, closure, package_files)
        if changed:
            reasons.append(f"package source ({', '.join(changed)})")
        if meta.get("pins") != versions:
            reasons.append("pins")
    elif meta.get("cache_key") != cache_key(run, notebooks_dir, recorded_quick, package_digest, versions):
        # results written before the components were recorded: only the combined key can be checked,
        # and a change of parameters alone can be told (they were recorded)
        before = dataclasses.replace(run, parameters=meta.get("parameters") or {})
        only_parameters = meta.get("parameters") is not None and meta.get("parameters") != parameters
        only_parameters = only_parameters and meta.get("cache_key") == cache_key(
            before, notebooks_dir, recorded_quick, package_digest, versions
        )
        reasons.append("parameters" if only_parameters else LEGACY_REASON)
    for label, digest in (meta.get("inputs") or {}).items():
        if not _input_matches(label, digest, results_dirs):
            reasons.append(_input_reason(label))
    if meta.get("notebook_sha256") != file_digest(executed):
        reasons.append("executed notebook edited")
    return RunStatus(run.name, "stale" if reasons else "fresh", tuple(reasons), **info)


def run_status(
    *,
    quick: bool | None = False,
    manifest: Path | None = None,
    book_dir: Path | None = None,
    results_dir: Path | None = None,
    upstream_dir: Path | None = None,
) -> list[RunStatus]:
    """The state of every run of the manifest, in its order: fresh, stale (with what changed) or missing.

    A run is stale when its notebook (`notebooks/<nb>`), its parameters, the package source, the pins,
    a file it read (a dataset, another run's results) or its executed notebook differ from what its
    results record; it is missing without executed notebook (`<book>/runs/<name>.ipynb`) or results.
    `quick`: the mode the results should have been computed in (None: whichever they were).
    """
    manifest = Path(manifest or ROOT / "notebooks" / "runs.yml")
    runs_dir = Path(book_dir or ROOT / "book") / "runs"
    results_dir = Path(results_dir or _results.DATA / "results")
    results_dirs = [results_dir] + ([Path(upstream_dir)] if upstream_dir else [_results.DATA / "results"])
    runs = load_manifest(manifest, check_parameters=False)
    package_files, package_digest, versions = package_file_digests(), _package_digest(), pinned_versions()
    states = {
        run.name: _status_of(
            run,
            _recorded_run(results_dir / f"{run.name}.json"),
            runs_dir / f"{run.name}.ipynb",
            quick,
            manifest.parent,
            package_files,
            package_digest,
            versions,
            results_dirs,
        )
        for run in runs
    }
    by_name = {run.name: run for run in runs}
    out = []
    for run in runs:
        ancestors, todo = set(), list(run.needs)
        while todo:
            need = todo.pop()
            if need in by_name and need not in ancestors:
                ancestors.add(need)
                todo += by_name[need].needs
        upstream = tuple(r.name for r in runs if r.name in ancestors and not states[r.name].fresh)
        out.append(dataclasses.replace(states[run.name], upstream=upstream))
    return out


def critical_path_first(runs: list[Run], wall_times: dict[str, float | None]) -> list[Run]:
    """`runs` in the order they start when a job slot frees: longest remaining chain first.

    A run's rank is its own last recorded wall time plus the largest rank among the runs that need it (unknown
    times count as 0), so the start of a long chain (or a long run) is not left to the end behind short ones; ties
    keep the manifest's order (longest-processing-time first, the classic list-scheduling rule, along chains).
    """
    children: dict[str, list[str]] = {r.name: [] for r in runs}
    for run in runs:
        for need in run.needs:
            if need in children:
                children[need].append(run.name)
    rank: dict[str, float] = {}

    def rank_of(name: str) -> float:
        if name not in rank:
            rank[name] = (wall_times.get(name) or 0.0) + max((rank_of(c) for c in children[name]), default=0.0)
        return rank[name]

    return sorted(runs, key=lambda r: -rank_of(r.name))


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds:.0f} s ({seconds / 60:.0f} min)"


def format_plan(statuses: list[RunStatus], mode: str, jobs: int = 1) -> str:
    """What a run of the study will execute: each run with its last recorded wall time, and the expected total.

    `mode`: ``"missing"`` (missing runs only), ``"stale"`` (stale and missing) or ``"all"``.
    """
    todo = [s for s in statuses if mode == "all" or s.state == "missing" or (mode == "stale" and s.state == "stale")]
    what = {"missing": "missing runs only", "stale": "stale and missing runs", "all": "every run"}[mode]
    if not todo:
        return f"plan: nothing to execute ({what}; {len(statuses)} run(s) checked)"
    lines = [f"plan: execute {len(todo)} of {len(statuses)} run(s) ({what})"]
    for s in todo:
        wall = f"{s.wall_time_s:.0f} s last time" if s.wall_time_s is not None else "no recorded time"
        lines.append(f"  {s.name:<24} {wall:>18}   {s.describe()}")
    known = [s.wall_time_s for s in todo if s.wall_time_s is not None]
    total, unknown = sum(known), len(todo) - len(known)
    if not known:
        lines.append("expected: unknown (no recorded wall time)")
    else:
        text = f"expected: {'at least ' if unknown else ''}{_minutes(total)} of notebook time"
        if unknown:
            text += f" ({unknown} run(s) without a recorded time)"
        if jobs > 1:
            text += f"; with --jobs {jobs}, roughly {_minutes(total / jobs)} of wall time"
        lines.append(text)
    if mode == "stale":
        lines.append("runs that need these are rerun too where their results change (not counted above)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- one run, anywhere


_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# One BLAS thread per kernel. Kernels run side by side (`--jobs`) on few cores, and a multi-threaded BLAS (OpenBLAS,
# numpy's and scipy's) then spins its threads against the other kernels' work: during a 2-job rebuild on 2 cores,
# five STLSQ regressions of SINDy's (a 2000 x 21 least-squares problem each) took 3.94 s with OpenBLAS's default
# threads and 0.17 s with one. The study's matrices are small; JAX's CPU backend does not use them.
ONE_THREAD = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def execute_notebook_task(notebook_json: str, parameters: dict, upstream: dict[str, dict], log_output: bool = False) -> dict:
    """Execute one notebook in a temporary folder and return its outputs as data.

    This is the unit of work sent to a local thread or a Dask worker: it
    reads nothing from the submitting machine's files. `upstream` holds the
    results of the runs it needs (written where the notebook looks for them).
    Returns ``{"ok", "notebook", "results", "error", "traceback", "wall_time_s"}``.
    """
    import papermill as pm

    t0 = time.perf_counter()
    os.environ["CRNN_PROGRESS"] = "0"  # kernels inherit it: no fit progress bars in the book's pages
    for variable in ONE_THREAD:  # kernels inherit these too (a value already set is kept)
        os.environ.setdefault(variable, "1")
    with tempfile.TemporaryDirectory(prefix="crnn-run-") as tmp:
        tmp = Path(tmp)
        results_dir = tmp / "results"
        results_dir.mkdir()
        for name, data in upstream.items():
            dump_json(data, results_dir / f"{name}.json")
        source, executed, results_path = tmp / "source.ipynb", tmp / "executed.ipynb", results_dir / "_this_run.json"
        source.write_text(notebook_json)
        out = {"ok": False, "notebook": None, "results": None, "error": None, "traceback": None}
        try:
            pm.execute_notebook(
                str(source),
                str(executed),
                parameters={**parameters, "results_path": str(results_path)},
                kernel_name="python3",
                cwd=None,  # papermill changes the process folder for cwd: not thread-safe
                progress_bar=False,
                log_output=log_output,
            )
        except pm.PapermillExecutionError as err:
            out["error"] = f"cell {err.exec_count} (index {err.cell_index}): {err.ename}: {err.evalue}"
            out["traceback"] = _ANSI.sub("", "\n".join(err.traceback))
        except Exception as err:  # kernel died, bad parameters, ...
            out["error"] = f"{type(err).__name__}: {err}"
            out["traceback"] = traceback.format_exc()
        if executed.exists():
            out["notebook"] = executed.read_text()
        if out["error"] is None:
            if results_path.exists():
                out["ok"], out["results"] = True, json.loads(results_path.read_text())
            else:
                out["error"] = "the notebook wrote no results to results_path"
        out["wall_time_s"] = time.perf_counter() - t0
    return out


def _for_readers(notebook_json: str, title: str | None, name: str) -> str:
    """The executed notebook as the book shows it: the injected-parameters cell (machine paths) removed,
    code folded away (inputs of cells with output, whole cells without), the page titled; the
    injected `results_path` (a temporary folder) replaced by the results' file name; figure labels
    (`fig-...`, in `:name:` and `{numref}`) suffixed with the run's name."""
    import nbformat

    nb = nbformat.reads(notebook_json, as_version=4)
    for cell in nb.cells:
        tags = list(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type == "code":
            if "injected-parameters" in tags:
                tags.append("remove-cell")
                cell.source = re.sub(r"(?m)^results_path = .*$", f'results_path = "{name}.json"', cell.source)
            elif not {"show-input", "remove-cell", "remove-input", "hide-cell", "hide-input"} & set(tags):
                tags.append("hide-input" if cell.get("outputs") else "hide-cell")
            cell.metadata["tags"] = tags
    for cell in nb.cells:  # figure labels made unique per run: one notebook can make several pages
        if cell.cell_type == "markdown":
            cell.source = re.sub(r"(:name:\s*)(fig-[\w-]+)", rf"\1\2-{name}", cell.source)
            cell.source = re.sub(r"(\{numref\}`(?:[^`<]*<)?)(fig-[\w-]+)", rf"\1\2-{name}", cell.source)
    if title:
        for cell in nb.cells:
            if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# "):
                first, _, rest = cell.source.lstrip().partition("\n")
                cell.source = f"# {title}\n{rest}"
                break
    return nbformat.writes(nb)


def _git_state() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return {"git_commit": commit.strip(), "git_clean": not dirty.strip()}
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": None, "git_clean": None}


def _environment() -> dict:
    from importlib import metadata

    versions = {}
    for group in pinned_versions(None).values():
        for requirement in group:
            name = re.split(r"[=<>!~\[ ]", requirement, maxsplit=1)[0]
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                versions[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(terse=True), "cpu": _cpu(), "versions": versions}


def _cpu() -> str:
    """The processor's model and widest vector extension: XLA compiles for the CPU it runs on, so chaotic trainings (many
    random starts, thousands of steps) can end elsewhere on another model (case 2 for 2A + B -> C, 4 reactions: best
    validation loss 0.02772 on one machine, 0.02766 on another, same code and pins)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    vector = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "")
    return f"{model or platform.machine()} ({vector})" if vector else model or platform.machine()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- the scheduler


def run_all(
    *,
    quick: bool = False,
    jobs: int = 1,
    only: list[str] | None = None,
    force: bool = False,
    missing_only: bool = False,
    keep_going: bool = False,
    overrides: dict[str, dict] | None = None,
    manifest: Path | None = None,
    book_dir: Path | None = None,
    results_dir: Path | None = None,
    upstream_dir: Path | None = None,
    executor: concurrent.futures.Executor | None = None,
    progress: bool = True,
    log_output: bool = False,
) -> list[dict]:
    """Execute the manifest's runs (all, or those named in `only`); returns one status dict per run.

    `overrides` maps a run name to parameters that replace or add to its
    manifest parameters (checked against the notebook's). Results of the runs
    a run needs are read from `results_dir`, else from `upstream_dir`
    (default: the canonical `data/results`). `executor` is any
    `concurrent.futures.Executor` (default: `jobs` local threads, each running
    one notebook kernel; a Dask cluster's `Client.get_executor()` works too).

    Which runs execute: those that are not cached (stale or missing), every
    one with `force`, or with `missing_only` only those without executed
    notebook or results (a stale run is kept as it is; status ``"stale"``).
    With `progress`, one line per executed run is printed as it starts and
    ends (``started NAME``, ``finished NAME in S s``, ``failed NAME ...``).

    On a failure, no new run starts (with `keep_going`, every run that does
    not depend on a failed one still runs) and `RunFailed` is raised at the
    end naming every failure with its traceback. Runs that depend on a failed
    run are reported as skipped.
    """
    manifest = Path(manifest or ROOT / "notebooks" / "runs.yml")
    notebooks_dir = manifest.parent
    runs_dir = Path(book_dir or ROOT / "book") / "runs"
    results_dir = Path(results_dir or _results.DATA / "results")
    results_dirs = [results_dir] + ([Path(upstream_dir)] if upstream_dir else [_results.DATA / "results"])
    runs = load_manifest(manifest)
    if only:
        unknown = set(only) - {r.name for r in runs}
        if unknown:
            raise ValueError(f"unknown run(s) {sorted(unknown)}; the manifest lists {[r.name for r in runs]}")
        runs = [r for r in runs if r.name in only]
    for name, extra in (overrides or {}).items():
        matching = [r for r in runs if r.name == name]
        if not matching:
            raise ValueError(f"parameters given for run {name!r}, which is not among the runs to execute")
        run = matching[0]
        check_parameter_names(name, run.notebook, extra, notebook_parameters(notebooks_dir / run.notebook))
        runs[runs.index(run)] = dataclasses.replace(run, parameters={**run.parameters, **extra})
    selected = {r.name for r in runs}

    def upstream_path(need: str) -> Path | None:
        return next((d / f"{need}.json" for d in results_dirs if (d / f"{need}.json").exists()), None)

    for run in runs:
        for need in run.needs:
            if need not in selected and upstream_path(need) is None:
                raise ValueError(f"run {run.name!r} needs the results of {need!r}; run it first (or name both)")
    runs_dir.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    upgrade_recorded_digests(results_dir)
    digest, versions, package_files = _package_digest(), pinned_versions(), package_file_digests()
    provenance = {**_environment(), **_git_state()}
    own_pool = executor is None
    pool = executor or concurrent.futures.ThreadPoolExecutor(max_workers=max(jobs, 1))
    capacity = max(jobs, 1) if own_pool else len(runs)

    statuses: dict[str, dict] = {}
    failures: list[dict] = []
    recorded = {r.name: (_recorded_run(results_dir / f"{r.name}.json") or {}).get("wall_time_s") for r in runs}
    pending, running = critical_path_first(runs, recorded), {}
    t_start = time.perf_counter()

    def say(text: str) -> None:
        if progress:
            elapsed = int(time.perf_counter() - t_start)
            print(f"[{elapsed // 3600:d}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}] {text}", flush=True)

    def finish(run: Run, key: str, components: dict, out: dict) -> dict:
        final_nb, final_json = runs_dir / f"{run.name}.ipynb", results_dir / f"{run.name}.json"
        if not out["ok"]:
            if out["notebook"]:
                (runs_dir / f"{run.name}.partial.ipynb").write_text(out["notebook"])
            message = (
                f"run {run.name!r} failed: notebook {run.notebook}, {out['error']}\n"
                f"  partial executed notebook kept at {runs_dir / (run.name + '.partial.ipynb')}"
            )
            failures.append({"name": run.name, "error": message, "traceback": out["traceback"]})
            return {"name": run.name, "status": "failed", "wall_time_s": out["wall_time_s"], "error": message}
        notebook = _for_readers(out["notebook"], run.title, run.name)
        _write_atomic(final_nb, notebook)  # the notebook first, the results last: the results mark completion
        results = dict(out["results"])
        inputs = results.pop("inputs", {})
        quick_overrides = results.pop("quick_overrides", {})  # what the notebook's quick version changed
        defaults = notebook_parameters(notebooks_dir / run.notebook)
        effective = {k: v["default"] for k, v in defaults.items() if k not in _RUNNER_PARAMETERS}
        results["run"] = {
            **results.get("run", {}),
            "name": run.name,
            "notebook": run.notebook,
            "title": run.title,
            "parameters": run.parameters_for(quick),
            "effective_parameters": {**effective, **run.parameters_for(quick), **quick_overrides, "quick": quick},
            "quick": quick,
            "wall_time_s": out["wall_time_s"],
            "cache_key": key,
            **components,
            "notebook_sha256": hashlib.sha256(notebook.encode()).hexdigest(),
            "inputs": inputs,
            **provenance,
        }
        dump_json(results, final_json)
        return {"name": run.name, "status": "ran", "wall_time_s": out["wall_time_s"]}

    try:
        while True:
            progressed = True
            while progressed and (keep_going or not failures):  # cached runs can unblock others at once
                progressed = False
                for run in list(pending):
                    blocked = [
                        n for n in run.needs if n in selected and statuses.get(n, {}).get("status") in ("failed", "skipped")
                    ]
                    if blocked:
                        pending.remove(run)
                        statuses[run.name] = {
                            "name": run.name,
                            "status": "skipped",
                            "wall_time_s": 0.0,
                            "error": f"needs {blocked}",
                        }
                        say(f"skipped {run.name} (needs {', '.join(blocked)})")
                        progressed = True
                        continue
                    if any(n in selected and statuses.get(n, {}).get("status") not in _DONE for n in run.needs):
                        continue
                    if len(running) >= capacity:  # submit no more than run at once: a failure then stops what is queued
                        break
                    pending.remove(run)
                    key = cache_key(run, notebooks_dir, quick, digest, versions)
                    final_json = results_dir / f"{run.name}.json"
                    cached = not force and _cached(
                        run, runs_dir, results_dir, key, results_dirs, (notebooks_dir, quick, package_files, versions)
                    )
                    present = (runs_dir / f"{run.name}.ipynb").exists() and _recorded_run(final_json) is not None
                    if cached or (missing_only and not force and present):
                        statuses[run.name] = {"name": run.name, "status": "cached" if cached else "stale", "wall_time_s": 0.0}
                        progressed = True
                        continue
                    for stale in (runs_dir / f"{run.name}.partial.ipynb", results_dir / f"{run.name}.partial.json"):
                        stale.unlink(missing_ok=True)
                    upstream = {n: json.loads(upstream_path(n).read_text()) for n in run.needs}
                    parameters = {**run.parameters_for(quick), "quick": quick}
                    components = _components(run, notebooks_dir, quick, package_files, versions)
                    notebook_json = (notebooks_dir / run.notebook).read_text()
                    future = pool.submit(execute_notebook_task, notebook_json, parameters, upstream, log_output)
                    running[future] = (run, key, components)
                    say(f"started {run.name}")
            if not running:
                break
            done, _ = concurrent.futures.wait(list(running), return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                run, key, components = running.pop(future)
                try:
                    out = future.result()
                except Exception as err:  # the task itself could not run (worker lost, ...)
                    out = {
                        "ok": False,
                        "notebook": None,
                        "error": f"{type(err).__name__}: {err}",
                        "traceback": "".join(traceback.format_exception(err)),
                        "wall_time_s": 0.0,
                    }
                statuses[run.name] = finish(run, key, components, out)
                ok = statuses[run.name]["status"] == "ran"
                say(f"{'finished' if ok else 'failed'} {run.name} {'in' if ok else 'after'} {out['wall_time_s']:.0f} s")
            if failures and not keep_going:  # queued runs that have not started yet do not start
                for future in [f for f in running if f.cancel()]:
                    pending.append(running.pop(future)[0])
    finally:
        if own_pool:
            pool.shutdown(wait=True)
    for run in pending:  # not started because an earlier run failed (without keep_going)
        statuses[run.name] = {"name": run.name, "status": "not run", "wall_time_s": 0.0}
    ordered = [statuses[r.name] for r in runs]
    if failures:
        text = "\n\n".join(f"{f['error']}\n{f['traceback'] or ''}".rstrip() for f in failures)
        raise RunFailed(f"{len(failures)} run(s) failed:\n{text}", failures, ordered)
    return ordered


# ----------------------------------------------------------------------------- the book


def _md(text: str) -> str:
    """Plain text safe in a Markdown table cell (MyST): markup characters escaped."""
    return re.sub(r"([\\`*_\[\]<>|#$])", r"\\\1", str(text))


def write_reproducibility_page(
    book_dir: Path,
    results_dir: Path | None = None,
    manifest: Path | None = None,
    statuses: list[RunStatus] | None = None,
) -> Path:
    """`<book>/reproducibility.md`: for every run, whether it is fresh or stale (and why), the commit that
    computed it, its wall time, effective parameters, cache key and environment."""
    results_dir = Path(results_dir or _results.DATA / "results")
    runs = load_manifest(manifest, check_parameters=False)
    if statuses is None:
        statuses = run_status(quick=None, manifest=manifest, book_dir=book_dir, results_dir=results_dir)
    state = {s.name: s for s in statuses}
    lines = [
        "# Reproducibility",
        "",
        "Generated from the results of the runs (`data/results/*.json`) when the book is built. "
        "Every number in the book comes from one of these runs. A run is *fresh* when its notebook, parameters, "
        "package source, pinned versions and every file it read are as they were when it was computed, *stale* "
        "otherwise (its page then says so); `make book` executes only missing runs, `make rebuild` reruns the "
        "stale ones, and `python -m crnn.study status` lists them.",
        "",
        "| Run | State | Notebook | Mode | Wall time (s) | Git commit | Clean tree | Cache key |",
        "|---|---|---|---|---:|---|---|---|",
    ]
    metas = []
    for run in runs:
        path = results_dir / f"{run.name}.json"
        meta = _recorded_run(path) or {}
        metas.append((run, meta))
        commit = (meta.get("git_commit") or "unknown")[:10]
        clean = {True: "yes", False: "no"}.get(meta.get("git_clean"), "unknown")
        mode = "quick" if meta.get("quick") else "full" if meta else "not run"
        wall = f"{meta['wall_time_s']:.1f}" if meta.get("wall_time_s") is not None else "–"
        s = state.get(run.name)
        if s is None:
            fresh = "unknown"
        elif s.state == "stale":
            fresh = "**stale**: " + _md("; ".join(s.reasons))
        else:
            fresh = s.state + (f": {_md('; '.join(s.reasons))}" if s.state == "missing" and s.reasons else "")
        lines.append(
            f"| [{run.title or run.name}](runs/{run.name}) | {fresh} | `{run.notebook}` | {mode} | {wall} | "
            f"`{commit}` | {clean} | `{(meta.get('cache_key') or '')[:12]}` |"
        )
    stale = [s for s in statuses if s.state != "fresh"]
    if stale:
        lines += ["", f"{len(stale)} of {len(statuses)} runs are not fresh; `make rebuild` updates them."]
    env = next((m for _, m in metas if m.get("versions")), {})
    if env:
        cpu = f", processor {env['cpu']}" if env.get("cpu") else ""
        lines += ["", "## Environment", "", f"Python {env.get('python')} on {env.get('platform')}{cpu}.", ""]
        lines += ["| Package | Version |", "|---|---|"]
        lines += [f"| {name} | {version or 'not installed'} |" for name, version in sorted(env["versions"].items())]
    lines += [
        "",
        "## Parameters of each run",
        "",
        "Notebook defaults merged with the run's parameters (`notebooks/runs.yml`).",
        "",
    ]
    for run, meta in metas:
        params = meta.get("effective_parameters") or run.parameters
        lines += [f"**{run.title or run.name}** (`{run.name}`)", "", "```yaml"]
        lines += yaml.safe_dump(params, sort_keys=True, default_flow_style=None, width=100).rstrip().splitlines()
        lines += ["```", ""]
    path = Path(book_dir) / "reproducibility.md"
    path.write_text("\n".join(lines) + "\n")
    return path


STALE_FILE = "_stale.json"  # written into the book folder by build_book, read by book/_ext/stale_pages.py


def write_stale_file(book_dir: Path, statuses: list[RunStatus]) -> Path:
    """`<book>/_stale.json`: page (``runs/<name>``) -> what changed and the commit that computed it, for every
    stale run. The book's extension `stale_pages` opens each of these pages with a warning; the executed
    notebooks themselves are left as they are."""
    stale = {
        f"runs/{s.name}": {"run": s.name, "reasons": list(s.reasons), "git_commit": s.git_commit, "git_clean": s.git_clean}
        for s in statuses
        if s.state == "stale"
    }
    return dump_json(stale, Path(book_dir) / STALE_FILE)


def build_book(
    book_dir: Path | None = None, *, results_dir: Path | None = None, manifest: Path | None = None, strict: bool = True
) -> Path:
    """Build the static HTML book with Jupyter Book 1 (warnings are errors) from the executed notebooks in
    `<book>/runs`, executing nothing; returns the HTML folder. Pages of stale runs open with a warning
    (whether a run is fresh is judged in the mode it was computed in: quick books are not stale for being quick)."""
    book_dir = Path(book_dir or ROOT / "book")
    statuses = run_status(quick=None, manifest=manifest, book_dir=book_dir, results_dir=results_dir)
    write_stale_file(book_dir, statuses)
    write_reproducibility_page(book_dir, results_dir, manifest, statuses)
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(book_dir), "--keep-going"]
    if strict:
        cmd.append("--warningiserror")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"book build failed ({' '.join(cmd)}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return book_dir / "_build" / "html"


def prepare_book_copy(target: Path, *, with_runs: bool = False) -> Path:
    """Copy the book sources to `target`, for building elsewhere: not its build or generated pages, and its
    executed notebooks (`runs/`, committed results) only `with_runs`."""
    ignore = ["_build", "reproducibility.md", STALE_FILE, "*.partial.ipynb", "*.tmp"] + ([] if with_runs else ["runs"])
    shutil.copytree(ROOT / "book", target, ignore=shutil.ignore_patterns(*ignore))
    return target


def make_datasets(out_dir: Path | None = None, spec: Path | None = None, names: list[str] | None = None) -> list[Path]:
    """Write the canonical datasets listed in `data/datasets.yml` (CSV + JSON manifest each)."""
    from ._data import make_dataset
    from ._mechanism import Mechanism

    spec = Path(spec or _results.DATA / "datasets.yml")
    out_dir = Path(out_dir or _results.DATA)
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


# ----------------------------------------------------------------------------- command line


def _parse_overrides(pairs: list[str] | None, params_file: Path | None) -> dict:
    values = dict(yaml.safe_load(Path(params_file).read_text()) or {}) if params_file else {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        values[key.strip()] = yaml.safe_load(value)  # 3 -> int, 0.5 -> float, [1, 2] -> list, abc -> str
    return values


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crnn.study", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {
        "run": "execute the notebook runs that are stale or missing (--force: all)",
        "book": "execute the missing runs (--rebuild: stale ones too; --force: all), then build the book",
    }
    for name in ("run", "book"):
        p = sub.add_parser(name, help=helps[name])
        p.add_argument("names", nargs="*", metavar="NAME", help="runs to execute (default: all of notebooks/runs.yml)")
        p.add_argument("--only", nargs="+", metavar="NAME", help="same as naming the runs")
        p.add_argument("--quick", action="store_true", help="small, fast versions of every run (for tests)")
        p.add_argument("--jobs", type=int, default=1, help="runs executed at once (local)")
        p.add_argument("--force", action="store_true", help="rerun even when cached")
        if name == "book":
            p.add_argument("--rebuild", action="store_true", help="also rerun stale runs (default: execute missing runs only)")
        p.add_argument("--keep-going", action="store_true", help="after a failure, still run what does not depend on it")
        p.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
        p.add_argument("--scheduler", metavar="ADDRESS", help="run on an existing Dask cluster (tcp://host:8786)")
        p.add_argument("--book-dir", type=Path, help="book folder (executed notebooks go to its runs/); default book/")
        p.add_argument("--results-dir", type=Path, help="results folder; default data/results")
        p.add_argument("--manifest", type=Path, help="the runs; default notebooks/runs.yml")
        if name == "run":
            p.add_argument("--set", action="append", metavar="KEY=VALUE", help="change a parameter of the one run named")
            p.add_argument("--params", type=Path, metavar="FILE", help="YAML file of parameters for the one run named")
            p.add_argument("--out", type=Path, help="output folder of a run with changed parameters (default scratch/)")
            p.add_argument("--canonical", action="store_true", help="write a run with changed parameters to the canonical places")
    b = sub.add_parser("build", help="build the book from the executed notebooks (executes nothing)")
    st = sub.add_parser("status", help="per run: fresh, stale (what changed) or missing; exit status 0 only when all are fresh")
    st.add_argument("--quick", action="store_true", help="judge against quick-mode runs (default: full runs)")
    for p in (b, st):
        p.add_argument("--book-dir", type=Path, help="book folder; default book/")
        p.add_argument("--results-dir", type=Path, help="results folder; default data/results")
        p.add_argument("--manifest", type=Path, help="the runs; default notebooks/runs.yml")
    sub.add_parser("data", help="write the canonical datasets of data/datasets.yml")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    client = None
    try:
        if args.command == "status":
            statuses = run_status(quick=args.quick, manifest=args.manifest, book_dir=args.book_dir, results_dir=args.results_dir)
            print(format_status(statuses), flush=True)
            return 0 if all(s.fresh for s in statuses) else 1
        if args.command in ("run", "book"):
            names = list(args.names or []) + list(args.only or [])
            kwargs = dict(book_dir=args.book_dir, results_dir=args.results_dir, manifest=args.manifest)
            overrides = _parse_overrides(getattr(args, "set", None), getattr(args, "params", None))
            missing_only = args.command == "book" and not args.rebuild and not args.force
            if overrides:
                if len(names) != 1:
                    raise ValueError("--set/--params change the parameters of one run: name exactly one")
                if not args.canonical:
                    out = args.out or ROOT / "scratch"
                    kwargs = dict(book_dir=out, results_dir=out / "results", manifest=args.manifest)
                    print(f"changed parameters: outputs go to {out} (canonical results untouched; --canonical to replace them)")
            else:
                before = run_status(quick=args.quick, **kwargs)
                mode = "all" if args.force else "missing" if missing_only else "stale"
                print(format_plan([s for s in before if not names or s.name in names], mode, args.jobs), flush=True)
            executor = None
            if args.scheduler:
                from distributed import Client

                client = Client(args.scheduler)
                executor = client.get_executor()
            try:
                statuses = run_all(
                    quick=args.quick,
                    jobs=args.jobs,
                    only=names or None,
                    force=args.force,
                    missing_only=missing_only,
                    keep_going=args.keep_going,
                    overrides={names[0]: overrides} if overrides else None,
                    log_output=args.log_output,
                    executor=executor,
                    **kwargs,
                )
            except RunFailed as err:
                _print_statuses(err.statuses)
                raise
            _print_statuses(statuses)
        if args.command == "data":
            for path in make_datasets():
                print(f"wrote {path}")
        if args.command in ("build", "book"):
            html = build_book(args.book_dir, results_dir=args.results_dir, manifest=args.manifest)
            print(f"book built: {html / 'index.html'}")
            quick = args.quick if args.command == "book" else None  # build: judged as the pages are (in each run's mode)
            after = run_status(quick=quick, manifest=args.manifest, book_dir=args.book_dir, results_dir=args.results_dir)
            stale = [s for s in after if not s.fresh]
            if stale:
                print(f"{len(stale)} run(s) not fresh (the pages of stale runs open with a warning):")
                print(format_status(stale, summary=False))
                print("update them with: make rebuild   (python -m crnn.study book --rebuild --jobs N)")
    except (RunFailed, RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


def format_status(statuses: list[RunStatus], summary: bool = True) -> str:
    """One line per run (name, then fresh, stale (what changed) or missing), and a count."""
    width = max([len(s.name) for s in statuses] + [20])
    lines = [f"{s.name:<{width}}  {s.describe()}" for s in statuses]
    if summary:
        counts = {state: sum(s.state == state for s in statuses) for state in ("fresh", "stale", "missing")}
        lines.append(", ".join(f"{n} {state}" for state, n in counts.items()))
        if counts["stale"] or counts["missing"]:
            lines.append("update: make rebuild (stale and missing runs), or make book (missing runs only)")
    return "\n".join(lines)


def _print_statuses(statuses: list[dict]) -> None:
    for s in statuses:
        print(f"{s['name']:<40} {s['status']:<8} {s['wall_time_s']:8.1f} s")


if __name__ == "__main__":
    sys.exit(main())
