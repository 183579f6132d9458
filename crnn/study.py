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
    python -m crnn.study book [--jobs N]               # run, then build

Each run executes `notebooks/<notebook>` with its parameters plus `quick` and
`results_path`. The executed notebook goes to `<book>/runs/<name>.ipynb`, the
results to `<results>/<name>.json`. A run is skipped (cached) when its
notebook, parameters, mode, package source (the runner aside) and pinned
versions are unchanged and every input it read last time (datasets, seed
reference, other runs' results, as recorded by `crnn.results`) has the same
digest. A run executes in a temporary folder (on a cluster worker, or here)
and its outputs come back as data; completion writes the notebook first and
the results last, each through a temporary file, so an interrupted run is
never mistaken for a finished one.
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
from .results import ROOT, dump_json, file_digest, results_digest

PACKAGE = Path(__file__).resolve().parent
RUNNER_ONLY = {"study.py"}  # package files whose edits do not change any run's output

__all__ = [
    "Run",
    "RunFailed",
    "build_book",
    "execute_notebook_task",
    "load_manifest",
    "main",
    "make_datasets",
    "notebook_parameters",
    "run_all",
]

_MANIFEST_KEYS = {"name", "notebook", "title", "parameters", "quick_parameters", "needs"}
_RUNNER_PARAMETERS = {"quick", "results_path"}


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    notebook: str
    parameters: dict
    needs: tuple[str, ...] = ()
    title: str | None = None
    quick_parameters: dict = dataclasses.field(default_factory=dict)  # applied on top in quick mode (tests)

    def parameters_for(self, quick: bool) -> dict:
        """The parameters the notebook gets from the manifest: `parameters`, and `quick_parameters` in quick mode."""
        return {**self.parameters, **(self.quick_parameters if quick else {})}


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
        quick_parameters = dict(entry.get("quick_parameters") or {})
        if check_parameters:
            if entry["notebook"] not in declared:
                declared[entry["notebook"]] = notebook_parameters(notebook)
            for given in (parameters, quick_parameters):
                check_parameter_names(entry["name"], entry["notebook"], given, declared[entry["notebook"]])
        runs.append(Run(entry["name"], entry["notebook"], parameters, needs, entry.get("title"), quick_parameters))
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


def _input_digest(label: str, results_dirs: list[Path]) -> str | None:
    kind, _, rest = label.partition("/")
    if kind == "data":
        path = _results.DATA / rest
        return file_digest(path) if path.exists() else None
    if kind == "results":
        for folder in results_dirs:
            path = folder / f"{rest}.json"
            if path.exists():
                try:
                    return results_digest(json.loads(path.read_text()))
                except json.JSONDecodeError:
                    return None
    return None  # an input that cannot be checked counts as changed


def _cached(run: Run, runs_dir: Path, results_dir: Path, key: str, results_dirs: list[Path]) -> bool:
    final_nb, final_json = runs_dir / f"{run.name}.ipynb", results_dir / f"{run.name}.json"
    if not (final_nb.exists() and final_json.exists()):
        return False
    try:
        meta = json.loads(final_json.read_text()).get("run", {})
    except json.JSONDecodeError:
        return False
    if meta.get("cache_key") != key or meta.get("notebook_sha256") != file_digest(final_nb):
        return False
    return all(_input_digest(label, results_dirs) == digest for label, digest in meta.get("inputs", {}).items())


# ----------------------------------------------------------------------------- one run, anywhere


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


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
    return {"python": platform.python_version(), "platform": platform.platform(terse=True), "versions": versions}


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

    On a failure, no new run starts (with `keep_going`, every run that does
    not depend on a failed one still runs) and `RunFailed` is raised at the
    end naming every failure with its traceback. Runs that depend on a failed
    run are reported as skipped.
    """
    from tqdm.auto import tqdm

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
    digest, versions = _package_digest(), pinned_versions()
    provenance = {**_environment(), **_git_state()}
    own_pool = executor is None
    pool = executor or concurrent.futures.ThreadPoolExecutor(max_workers=max(jobs, 1))
    capacity = max(jobs, 1) if own_pool else len(runs)

    statuses: dict[str, dict] = {}
    failures: list[dict] = []
    pending, running = list(runs), {}
    bar = tqdm(total=len(runs), desc="notebook runs", unit="run", disable=not progress)

    def finish(run: Run, key: str, out: dict) -> dict:
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
        defaults = notebook_parameters(notebooks_dir / run.notebook)
        effective = {k: v["default"] for k, v in defaults.items() if k not in _RUNNER_PARAMETERS}
        results["run"] = {
            **results.get("run", {}),
            "name": run.name,
            "notebook": run.notebook,
            "title": run.title,
            "parameters": run.parameters_for(quick),
            "effective_parameters": {**effective, **run.parameters_for(quick), "quick": quick},
            "quick": quick,
            "wall_time_s": out["wall_time_s"],
            "cache_key": key,
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
                        bar.update(1)
                        progressed = True
                        continue
                    if any(n in selected and statuses.get(n, {}).get("status") not in ("ran", "cached") for n in run.needs):
                        continue
                    if len(running) >= capacity:  # submit no more than run at once: a failure then stops what is queued
                        break
                    pending.remove(run)
                    key = cache_key(run, notebooks_dir, quick, digest, versions)
                    if not force and _cached(run, runs_dir, results_dir, key, results_dirs):
                        statuses[run.name] = {"name": run.name, "status": "cached", "wall_time_s": 0.0}
                        bar.update(1)
                        progressed = True
                        continue
                    for stale in (runs_dir / f"{run.name}.partial.ipynb", results_dir / f"{run.name}.partial.json"):
                        stale.unlink(missing_ok=True)
                    upstream = {n: json.loads(upstream_path(n).read_text()) for n in run.needs}
                    parameters = {**run.parameters_for(quick), "quick": quick}
                    notebook_json = (notebooks_dir / run.notebook).read_text()
                    future = pool.submit(execute_notebook_task, notebook_json, parameters, upstream, log_output)
                    running[future] = (run, key)
            if not running:
                break
            done, _ = concurrent.futures.wait(list(running), return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                run, key = running.pop(future)
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
                statuses[run.name] = finish(run, key, out)
                bar.set_postfix_str(f"{run.name} {statuses[run.name]['status']}")
                bar.update(1)
            if failures and not keep_going:  # queued runs that have not started yet do not start
                for future in [f for f in running if f.cancel()]:
                    pending.append(running.pop(future)[0])
    finally:
        bar.close()
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


def write_reproducibility_page(book_dir: Path, results_dir: Path | None = None, manifest: Path | None = None) -> Path:
    """`<book>/reproducibility.md`: for every run, its effective parameters, wall time, cache key and provenance."""
    results_dir = Path(results_dir or _results.DATA / "results")
    runs = load_manifest(manifest, check_parameters=False)
    lines = [
        "# Reproducibility",
        "",
        "Generated from the results of the runs (`data/results/*.json`) when the book is built. "
        "Every number in the book comes from one of these runs; `make book` reruns those whose inputs changed.",
        "",
        "| Run | Notebook | Mode | Wall time (s) | Cache key | Git commit | Clean tree |",
        "|---|---|---|---:|---|---|---|",
    ]
    metas = []
    for run in runs:
        path = results_dir / f"{run.name}.json"
        meta = json.loads(path.read_text()).get("run", {}) if path.exists() else {}
        metas.append((run, meta))
        commit = (meta.get("git_commit") or "unknown")[:10]
        clean = {True: "yes", False: "no"}.get(meta.get("git_clean"), "unknown")
        mode = "quick" if meta.get("quick") else "full" if meta else "not run"
        wall = f"{meta['wall_time_s']:.1f}" if meta.get("wall_time_s") is not None else "–"
        lines.append(
            f"| [{run.title or run.name}](runs/{run.name}) | `{run.notebook}` | {mode} | {wall} | "
            f"`{(meta.get('cache_key') or '')[:12]}` | `{commit}` | {clean} |"
        )
    env = next((m for _, m in metas if m.get("versions")), {})
    if env:
        lines += ["", "## Environment", "", f"Python {env.get('python')} on {env.get('platform')}.", ""]
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


def build_book(book_dir: Path | None = None, *, results_dir: Path | None = None, strict: bool = True) -> Path:
    """Build the static HTML book with Jupyter Book 1 (warnings are errors); returns the HTML folder."""
    book_dir = Path(book_dir or ROOT / "book")
    write_reproducibility_page(book_dir, results_dir)
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(book_dir), "--keep-going"]
    if strict:
        cmd.append("--warningiserror")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"book build failed ({' '.join(cmd)}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return book_dir / "_build" / "html"


def prepare_book_copy(target: Path) -> Path:
    """Copy the book sources (not its build or runs) to `target`, for building elsewhere."""
    shutil.copytree(ROOT / "book", target, ignore=shutil.ignore_patterns("_build", "runs", "reproducibility.md"))
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
    for name in ("run", "book"):
        p = sub.add_parser(name, help="execute the notebook runs" + (" and build the book" if name == "book" else ""))
        p.add_argument("names", nargs="*", metavar="NAME", help="runs to execute (default: all of notebooks/runs.yml)")
        p.add_argument("--only", nargs="+", metavar="NAME", help="same as naming the runs")
        p.add_argument("--quick", action="store_true", help="small, fast versions of every run (for tests)")
        p.add_argument("--jobs", type=int, default=1, help="runs executed at once (local)")
        p.add_argument("--force", action="store_true", help="rerun even when cached")
        p.add_argument("--keep-going", action="store_true", help="after a failure, still run what does not depend on it")
        p.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
        p.add_argument("--scheduler", metavar="ADDRESS", help="run on an existing Dask cluster (tcp://host:8786)")
        p.add_argument("--book-dir", type=Path, help="book folder (executed notebooks go to its runs/); default book/")
        p.add_argument("--results-dir", type=Path, help="results folder; default data/results")
        if name == "run":
            p.add_argument("--set", action="append", metavar="KEY=VALUE", help="change a parameter of the one run named")
            p.add_argument("--params", type=Path, metavar="FILE", help="YAML file of parameters for the one run named")
            p.add_argument("--out", type=Path, help="output folder of a run with changed parameters (default scratch/)")
            p.add_argument("--canonical", action="store_true", help="write a run with changed parameters to the canonical places")
    b = sub.add_parser("build", help="build the book from the executed notebooks")
    b.add_argument("--book-dir", type=Path, help="book folder; default book/")
    b.add_argument("--results-dir", type=Path, help="results folder; default data/results")
    sub.add_parser("data", help="write the canonical datasets of data/datasets.yml")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    client = None
    try:
        if args.command in ("run", "book"):
            names = list(args.names or []) + list(args.only or [])
            kwargs = dict(book_dir=args.book_dir, results_dir=args.results_dir)
            overrides = _parse_overrides(getattr(args, "set", None), getattr(args, "params", None))
            if overrides:
                if len(names) != 1:
                    raise ValueError("--set/--params change the parameters of one run: name exactly one")
                if not args.canonical:
                    out = args.out or ROOT / "scratch"
                    kwargs = dict(book_dir=out, results_dir=out / "results")
                    print(f"changed parameters: outputs go to {out} (canonical results untouched; --canonical to replace them)")
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
            html = build_book(args.book_dir, results_dir=args.results_dir)
            print(f"book built: {html / 'index.html'}")
    except (RunFailed, RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


def _print_statuses(statuses: list[dict]) -> None:
    for s in statuses:
        print(f"{s['name']:<40} {s['status']:<8} {s['wall_time_s']:8.1f} s")


if __name__ == "__main__":
    sys.exit(main())
