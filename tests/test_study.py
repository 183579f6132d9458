"""The papermill runner: caching, inputs, failures, atomic completion, parameters. Uses tiny throwaway notebooks."""

import json
import math
import re
import shutil

import nbformat
import pytest

from crnn import results as results_module
from crnn import study


def _notebook(path, body, params="value = 1"):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(f"quick = False\nresults_path = 'out.json'\n{params}")
    cell.metadata["tags"] = ["parameters"]
    md = nbformat.v4.new_markdown_cell("# A page\n\nText.")
    nb.cells = [md, cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def project(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    _notebook(
        nbdir / "good.ipynb",
        "import json, os\njson.dump({'value': value, 'quick': quick, "
        "'blas_threads': os.environ.get('OPENBLAS_NUM_THREADS')}, open(results_path, 'w'))",
    )
    _notebook(nbdir / "bad.ipynb", "x = 1\nraise ZeroDivisionError('boom in cell')")
    (nbdir / "runs.yml").write_text(
        "runs:\n"
        "  - {name: one, notebook: good.ipynb, parameters: {value: 1}}\n"
        "  - {name: two, notebook: good.ipynb, title: Two of them, parameters: {value: 2}}\n"
    )
    return tmp_path


def _run(project, **kw):
    return study.run_all(
        manifest=project / "notebooks" / "runs.yml",
        book_dir=project / "book",
        results_dir=project / "results",
        **{"progress": False, **kw},
    )


@pytest.mark.slow
def test_runs_write_results_and_are_cached(project, monkeypatch):
    for variable in study.ONE_THREAD:
        monkeypatch.delenv(variable, raising=False)
    first = _run(project, quick=True, jobs=2)
    assert sorted(s["status"] for s in first) == ["ran", "ran"]
    result = json.loads((project / "results" / "two.json").read_text())
    assert result["value"] == 2 and result["quick"] is True and result["run"]["name"] == "two"
    assert result["blas_threads"] == "1"  # kernels side by side: one BLAS thread each
    assert result["run"]["effective_parameters"] == {"value": 2, "quick": True}
    assert {"python", "platform", "cpu", "versions", "git_commit", "git_clean"} <= set(result["run"])
    page = nbformat.read(project / "book" / "runs" / "two.ipynb", as_version=4)
    assert page.cells[0].source.startswith("# Two of them")  # the run's title names the page
    tags = [c.metadata.get("tags", []) for c in page.cells if c.cell_type == "code"]
    assert any("injected-parameters" in t and "remove-cell" in t for t in tags)  # it holds this machine's paths
    assert all({"hide-input", "hide-cell", "remove-cell"} & set(t) for t in tags)  # code folded away for readers
    again = _run(project, quick=True)
    assert [s["status"] for s in again] == ["cached", "cached"]
    assert [s["status"] for s in _run(project, quick=False, only=["one"])] == ["ran"]  # other mode, other key
    assert [s["status"] for s in _run(project, quick=True, only=["one"], force=True)] == ["ran"]


@pytest.mark.slow
def test_failures_are_all_reported_with_tracebacks_and_keep_going_runs_the_rest(project):
    _run(project, quick=True)
    before = (project / "results" / "one.json").read_text()
    manifest = project / "notebooks" / "runs.yml"
    manifest.write_text(
        manifest.read_text()
        + "  - {name: three, notebook: bad.ipynb}\n"
        + "  - {name: four, notebook: good.ipynb, needs: [three]}\n"
        + "  - {name: five, notebook: good.ipynb, parameters: {value: 5}}\n"
    )
    with pytest.raises(study.RunFailed) as info:
        _run(project, quick=True, keep_going=True)
    message = str(info.value)
    assert "three" in message and "bad.ipynb" in message and "cell" in message and "boom in cell" in message
    assert "ZeroDivisionError" in info.value.failures[0]["traceback"] and "x = 1" in info.value.failures[0]["traceback"]
    statuses = {s["name"]: s["status"] for s in info.value.statuses}
    assert statuses == {"one": "cached", "two": "cached", "three": "failed", "four": "skipped", "five": "ran"}
    assert (project / "book" / "runs" / "three.partial.ipynb").exists()
    assert not (project / "book" / "runs" / "three.ipynb").exists()
    assert (project / "results" / "one.json").read_text() == before
    (project / "results" / "five.json").unlink()
    with pytest.raises(study.RunFailed) as info:  # without keep_going nothing new starts after the failure
        _run(project, quick=True, jobs=1)
    assert {s["name"]: s["status"] for s in info.value.statuses}["five"] == "not run"


@pytest.mark.slow
def test_an_interrupted_run_is_not_mistaken_for_a_finished_one(project):
    _run(project, quick=True)
    runs, res = project / "book" / "runs", project / "results"
    (res / "one.partial.json").write_text("{}")  # stale leftovers of a crash
    (runs / "one.partial.ipynb").write_text("{}")
    nb = runs / "one.ipynb"
    nb.write_text(nb.read_text().replace("Text.", "Text of a newer run"))  # notebook replaced, results not yet
    statuses = {s["name"]: s["status"] for s in _run(project, quick=True)}
    assert statuses == {"one": "ran", "two": "cached"}
    assert not (res / "one.partial.json").exists() and not (runs / "one.partial.ipynb").exists()


@pytest.mark.slow
def test_a_changed_input_reruns_its_run_and_only_what_depends_on_it(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("classic_noise5", "third_order_3A"):
        for ext in (".csv", ".json"):
            shutil.copy(study.ROOT / "data" / (name + ext), data / (name + ext))
    monkeypatch.setenv("CRNN_DATA_DIR", str(data))  # the kernels read their data here
    monkeypatch.setattr(results_module, "DATA", data)
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    reader = "import crnn\nr = crnn.Results(results_path)\nr['digests'] = crnn.results.inputs()\nr.save()"
    _notebook(nbdir / "read.ipynb", f"crnn.load_dataset(name)\n{reader}", params="name = 'x'\nimport crnn")
    _notebook(
        nbdir / "down.ipynb",
        f"crnn.load_results('a', __import__('pathlib').Path(results_path).parent)['digests']\n{reader}",
        "import crnn",
    )
    (nbdir / "runs.yml").write_text(
        "runs:\n"
        "  - {name: a, notebook: read.ipynb, parameters: {name: classic_noise5}}\n"
        "  - {name: b, notebook: read.ipynb, parameters: {name: third_order_3A}}\n"
        "  - {name: c, notebook: down.ipynb, needs: [a]}\n"
    )
    first = {s["name"]: s["status"] for s in _run(tmp_path, quick=True)}
    assert first == {"a": "ran", "b": "ran", "c": "ran"}
    inputs = json.loads((tmp_path / "results" / "c.json").read_text())["run"]["inputs"]
    assert list(inputs) == ["results/a"]
    with open(data / "third_order_3A.json", "a") as f:
        f.write(" ")
    assert {s["name"]: s["status"] for s in _run(tmp_path, quick=True)} == {"a": "cached", "b": "ran", "c": "cached"}
    with open(data / "classic_noise5.json", "a") as f:
        f.write(" ")
    assert {s["name"]: s["status"] for s in _run(tmp_path, quick=True)} == {"a": "ran", "b": "cached", "c": "ran"}


@pytest.mark.slow
def test_changed_parameters_go_to_their_own_folder(project):
    _run(project, quick=True)
    before = (project / "results" / "one.json").read_text()
    out = project / "scratch"
    statuses = study.run_all(
        manifest=project / "notebooks" / "runs.yml",
        book_dir=out,
        results_dir=out / "results",
        only=["one"],
        overrides={"one": {"value": 7}},
        quick=True,
        progress=False,
    )
    assert [s["status"] for s in statuses] == ["ran"]
    assert json.loads((out / "results" / "one.json").read_text())["value"] == 7
    assert (project / "results" / "one.json").read_text() == before
    with pytest.raises(ValueError, match="run 'one'.*no parameter 'valeu'"):
        _run(project, only=["one"], overrides={"one": {"valeu": 7}})


def test_manifest_errors(tmp_path):
    (tmp_path / "runs.yml").write_text("runs:\n  - {name: a, notebook: missing.ipynb}\n")
    with pytest.raises(ValueError, match="missing notebook"):
        study.load_manifest(tmp_path / "runs.yml")
    _notebook(tmp_path / "x.ipynb", "pass")
    (tmp_path / "runs.yml").write_text("runs:\n  - {name: a, notebook: x.ipynb}\n  - {name: a, notebook: x.ipynb}\n")
    with pytest.raises(ValueError, match="repeats"):
        study.load_manifest(tmp_path / "runs.yml")
    (tmp_path / "runs.yml").write_text("runs:\n  - {name: a, notebook: x.ipynb, parameters: {valeu: 3}}\n")
    with pytest.raises(ValueError, match="run 'a'.*no parameter 'valeu'"):
        study.load_manifest(tmp_path / "runs.yml")
    (tmp_path / "runs.yml").write_text("runs:\n  - {name: a, notebook: x.ipynb, paramters: {value: 3}}\n")
    with pytest.raises(ValueError, match="unknown key.*paramters"):
        study.load_manifest(tmp_path / "runs.yml")


def test_set_values_are_parsed_as_yaml(tmp_path):
    (tmp_path / "p.yml").write_text("epochs: 100\nname: x\n")
    got = study._parse_overrides(["epochs=300", "lr=0.5", "counts=[2, 3]", "dataset=third_order_2AB"], tmp_path / "p.yml")
    assert got == {"epochs": 300, "name": "x", "lr": 0.5, "counts": [2, 3], "dataset": "third_order_2AB"}
    with pytest.raises(ValueError, match="key=value"):
        study._parse_overrides(["epochs"], None)


def test_nan_and_infinities_are_written_as_null_and_read_back_as_nan(tmp_path):
    import numpy as np

    results_module.dump_json({"a": float("nan"), "b": [1.0, np.inf, -np.inf], "c": np.array([np.nan, 2.0])}, tmp_path / "r.json")
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text and "nan" not in text and "inf" not in text.lower()
    back = results_module.load_results("r", tmp_path)
    assert math.isnan(back["a"]) and back["b"][0] == 1.0 and math.isnan(back["b"][1]) and math.isnan(back["c"][0])


def test_only_the_keys_a_notebook_reads_of_other_results_are_its_inputs(tmp_path, monkeypatch):
    monkeypatch.setattr(results_module, "_READS", {})
    results_module.dump_json({"rate": 0.1, "fit_s": 30.0, "table": [1, 2], "run": {"wall_time_s": 9}}, tmp_path / "up.json")
    up = results_module.load_results("up", tmp_path)
    assert up["rate"] == 0.1 and "missing" not in up and up.get("other") is None
    recorded = results_module.inputs()["results/up"]
    assert recorded["keys"] == ["missing", "other", "rate"]
    changed = {"rate": 0.1, "fit_s": 31.0, "table": [1, 2, 3], "run": {"wall_time_s": 10}}
    assert results_module.input_matches(recorded, changed)  # what it did not read changed
    assert not results_module.input_matches(recorded, {**changed, "rate": 0.2})
    assert not results_module.input_matches(recorded, {**changed, "other": 1})  # a key it found absent appeared
    dict(up.items())  # iterating reads everything
    everything = results_module.inputs()["results/up"]
    assert isinstance(everything, str) and not results_module.input_matches(everything, changed)
    assert results_module.input_matches(everything, {"rate": 0.1, "fit_s": 30.0, "table": [1, 2], "run": {}})


def test_the_study_manifest_is_valid():
    runs = study.load_manifest()  # every parameter is one its notebook declares
    assert len({r.name for r in runs}) == len(runs)
    same_notebook = {}
    for r in runs:
        same_notebook.setdefault(r.notebook, []).append(r)
    for group in same_notebook.values():  # pages of one notebook need titles that tell them apart
        if len(group) > 1:
            assert len({r.title for r in group}) == len(group) and all(group_run.title for group_run in group)


# ----------------------------------------------------------------------------- freshness: status, book, stale pages


def _status(project, quick=True, **kw):
    got = study.run_status(
        quick=quick, manifest=project / "notebooks" / "runs.yml", book_dir=project / "book", results_dir=project / "results", **kw
    )
    return {s.name: s for s in got}


def _cli(project, *argv):
    where = ["--manifest", str(project / "notebooks" / "runs.yml"), "--book-dir", str(project / "book")]
    return study.main([*argv, *where, "--results-dir", str(project / "results")])


@pytest.fixture
def two_notebooks(project):
    """The `project`, its second run on a notebook of its own."""
    shutil.copy(project / "notebooks" / "good.ipynb", project / "notebooks" / "other.ipynb")
    manifest = project / "notebooks" / "runs.yml"
    manifest.write_text(manifest.read_text().replace("{name: two, notebook: good.ipynb", "{name: two, notebook: other.ipynb"))
    return project


@pytest.mark.slow
def test_status_names_what_changed(two_notebooks, monkeypatch, capsys):
    project = two_notebooks
    package = project / "package"
    package.mkdir()
    for file in study.PACKAGE.glob("*.py"):
        shutil.copy(file, package / file.name)
    monkeypatch.setattr(study, "PACKAGE", package)  # a copy of the package source, to edit
    # run "one" imports the package (its closure: __init__.py and what it imports), run "two" imports nothing of it
    source = "import json\nimport crnn._loss\njson.dump({'value': value, 'quick': quick}, open(results_path, 'w'))"
    _notebook(project / "notebooks" / "good.ipynb", source)
    _run(project, quick=True)
    status = _status(project)
    assert {n: (s.state, s.reasons) for n, s in status.items()} == {"one": ("fresh", ()), "two": ("fresh", ())}
    assert status["two"].wall_time_s > 0 and status["two"].git_commit == study._git_state()["git_commit"]
    recorded = json.loads((project / "results" / "two.json").read_text())["run"]
    assert recorded["notebook_sha256_source"] == results_module.file_digest(project / "notebooks" / "other.ipynb")
    assert set(recorded["package_sha256"]) == {f.name for f in package.glob("*.py")} - {"study.py"}
    assert recorded["pins"] == study.pinned_versions() and recorded["parameters"] == {"value": 2}
    assert _cli(project, "status", "--quick") == 0
    assert "0 stale, 0 missing" in capsys.readouterr().out
    assert _cli(project, "status") == 1  # judged against full runs, these quick ones are stale
    assert "stale (computed in quick mode)" in capsys.readouterr().out

    good = project / "notebooks" / "good.ipynb"
    original = good.read_bytes()
    good.write_bytes(original + b" ")  # one byte appended to one run's notebook
    assert _cli(project, "status", "--quick") == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("one") and line.endswith("stale (notebook good.ipynb)") for line in lines), lines
    assert any(line.startswith("two") and line.endswith("fresh") for line in lines), lines
    good.write_bytes(original)

    manifest = project / "notebooks" / "runs.yml"
    manifest.write_text(manifest.read_text().replace("parameters: {value: 2}", "parameters: {value: 3}"))
    assert {n: s.reasons for n, s in _status(project).items()} == {"one": (), "two": ("parameters",)}
    manifest.write_text(manifest.read_text().replace("parameters: {value: 3}", "parameters: {value: 2}"))

    assert "_loss.py" in study.package_closure(good) and "__init__.py" in study.package_closure(good)
    assert study.package_closure(project / "notebooks" / "other.ipynb") == set()
    loss_source = (package / "_loss.py").read_text()
    (package / "_loss.py").write_text(
        loss_source.replace('"""The CRNN loss', '"""Edited. The CRNN loss').replace('"""`sum_j', '"""Edited too. `sum_j')
        + "\n\n# a comment\n"
    )
    assert (status := _status(project))["one"].fresh, status["one"].reasons  # documentation, comments: no output changes
    (package / "_loss.py").write_text(loss_source)
    with open(package / "_loss.py", "a") as f:
        f.write("\nEDIT = 1\n")  # code
    (package / "new_module.py").write_text("x = 1\n")
    (package / "study.py").write_text("# the runner changes no result\n")
    status = _status(project)  # a module no notebook imports, and the runner, change nothing
    assert (status["one"].reasons, status["two"].reasons) == (("package source (_loss.py)",), ())
    init = (package / "__init__.py").read_text()
    (package / "__init__.py").write_text(init + "\nfrom . import new_module as new_module\n")  # now every importer runs it
    assert _status(project)["one"].reasons == ("package source (__init__.py, _loss.py, new_module.py)",)
    assert [s["status"] for s in _run(project, quick=True)] == ["ran", "cached"]  # the runner decides the same way
    (package / "__init__.py").write_text(init)
    (package / "new_module.py").unlink()
    shutil.copy(study.ROOT / "crnn" / "_loss.py", package / "_loss.py")  # back as it was: "one" was computed with the edits
    assert _status(project)["one"].reasons == ("package source (__init__.py, _loss.py)",)
    assert [s["status"] for s in _run(project, quick=True)] == ["ran", "cached"]
    assert _status(project)["one"].fresh

    pins = study.pinned_versions()
    monkeypatch.setattr(study, "pinned_versions", lambda groups=None: {**pins, "dependencies": ["jax==0.0.1"]})
    assert [s.reasons for s in _status(project).values()] == [("pins",), ("pins",)]
    monkeypatch.undo()
    monkeypatch.setattr(study, "PACKAGE", package)

    executed = project / "book" / "runs" / "one.ipynb"
    executed.write_text(executed.read_text().replace("Text.", "Text, edited by hand."))
    assert _status(project)["one"].reasons == ("executed notebook edited",)
    executed.unlink()
    assert (_status(project)["one"].state, _status(project)["one"].reasons) == ("missing", ("no executed notebook",))
    (project / "results" / "two.json").unlink()
    assert _status(project)["two"].state == "missing"
    assert _cli(project, "status", "--quick") == 1
    assert "0 fresh, 0 stale, 2 missing" in capsys.readouterr().out


@pytest.mark.slow
def test_status_of_results_that_record_only_the_combined_key(two_notebooks):
    project = two_notebooks
    _run(project, quick=True)
    path = project / "results" / "two.json"
    data = json.loads(path.read_text())
    for key in ("notebook_sha256_source", "package_sha256", "pins"):
        del data["run"][key]  # as written before the components were recorded
    path.write_text(json.dumps(data))
    assert _status(project)["two"].fresh  # the recomputed key matches
    manifest = project / "notebooks" / "runs.yml"
    manifest.write_text(manifest.read_text().replace("parameters: {value: 2}", "parameters: {value: 3}"))
    assert _status(project)["two"].reasons == ("parameters",)  # the parameters alone explain the new key
    with open(project / "notebooks" / "other.ipynb", "a") as f:
        f.write(" ")
    assert _status(project)["two"].reasons == (study.LEGACY_REASON,)
    assert _status(project)["one"].fresh


@pytest.mark.slow
def test_book_mode_executes_missing_runs_and_keeps_stale_ones(two_notebooks, capsys):
    project = two_notebooks
    _run(project, quick=True)
    with open(project / "notebooks" / "good.ipynb", "a") as f:
        f.write(" ")  # run one is now stale
    one_before = (project / "results" / "one.json").read_text()
    (project / "book" / "runs" / "two.ipynb").unlink()  # run two is now missing
    statuses = {s["name"]: s["status"] for s in _run(project, quick=True, missing_only=True, progress=True)}
    assert statuses == {"one": "stale", "two": "ran"}
    assert (project / "results" / "one.json").read_text() == one_before  # not re-executed
    out = capsys.readouterr().out
    assert "started two" in out and re.search(r"finished two in \d+ s", out) and "started one" not in out
    status = _status(project)
    assert status["one"].reasons == ("notebook good.ipynb",) and status["two"].fresh
    assert [s["status"] for s in _run(project, quick=True)] == ["ran", "cached"]  # the rebuild semantics: stale reruns


def test_the_plan_lists_runs_with_their_last_wall_time():
    statuses = [
        study.RunStatus("a", "fresh", wall_time_s=10.0),
        study.RunStatus("b", "stale", ("parameters",), wall_time_s=100.0),
        study.RunStatus("c", "missing", ("no results",)),
        study.RunStatus("d", "missing", ("no executed notebook",), wall_time_s=300.0),
    ]
    missing = study.format_plan(statuses, "missing", jobs=2)
    assert "execute 2 of 4" in missing and "\n  c " in missing and "\n  d " in missing and "\n  b " not in missing
    assert "at least 300 s (5 min)" in missing and "1 run(s) without a recorded time" in missing
    assert "--jobs 2, roughly 150 s" in missing
    stale = study.format_plan(statuses, "stale")
    assert "execute 3 of 4" in stale and "stale (parameters)" in stale and "at least 400 s" in stale and "--jobs" not in stale
    assert "execute 4 of 4" in study.format_plan(statuses, "all", jobs=4)
    assert "nothing to execute" in study.format_plan(statuses[:1], "stale")


def test_stale_pages_file_lists_stale_runs_only(tmp_path):
    statuses = [
        study.RunStatus("a", "fresh", git_commit="1" * 40),
        study.RunStatus("b", "stale", ("notebook b.ipynb", "results of a"), git_commit="2" * 40, git_clean=True),
        study.RunStatus("c", "missing", ("no results",)),
    ]
    study.write_stale_file(tmp_path, statuses)
    got = json.loads((tmp_path / "_stale.json").read_text())
    entry = {"run": "b", "reasons": ["notebook b.ipynb", "results of a"], "git_commit": "2" * 40, "git_clean": True}
    assert got == {"runs/b": entry}


@pytest.mark.slow
def test_status_names_changed_data_and_upstream_results(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    for ext in (".csv", ".json"):
        shutil.copy(study.ROOT / "data" / ("classic_noise5" + ext), data / ("classic_noise5" + ext))
    monkeypatch.setenv("CRNN_DATA_DIR", str(data))
    monkeypatch.setattr(results_module, "DATA", data)
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    reader = "import crnn\nr = crnn.Results(results_path)\nr['n'] = 1\nr.save()"
    _notebook(nbdir / "read.ipynb", f"crnn.load_dataset('classic_noise5')\n{reader}", params="import crnn")
    _notebook(
        nbdir / "down.ipynb",
        f"crnn.load_results('a', __import__('pathlib').Path(results_path).parent)['n']\n{reader}",
        "import crnn",
    )
    (nbdir / "runs.yml").write_text(
        "runs:\n  - {name: a, notebook: read.ipynb}\n  - {name: c, notebook: down.ipynb, needs: [a]}\n"
    )
    _run(tmp_path, quick=True)
    assert all(s.fresh and not s.upstream for s in _status(tmp_path).values())
    with open(data / "classic_noise5.json", "a") as f:
        f.write(" ")
    status = _status(tmp_path)
    assert status["a"].reasons == ("data file classic_noise5.json",)
    assert status["c"].fresh and status["c"].upstream == ("a",)  # its input, a's results, has not changed yet
    assert status["c"].describe() == "fresh (upstream not fresh: a)"
    shutil.copy(study.ROOT / "data" / "classic_noise5.json", data / "classic_noise5.json")
    path = tmp_path / "results" / "a.json"
    path.write_text(path.read_text().replace('"n": 1', '"n": 2'))  # a's results changed (as a rerun could change them)
    status = _status(tmp_path)
    assert status["a"].fresh and status["c"].reasons == ("results of a",)
    path.write_text(path.read_text().replace('"n": 2', '"n": 1').replace('"n": 1', '"n": 1, "wall_s": 12.5'))
    status = _status(tmp_path)  # a key of a's results that c does not read: c stays fresh
    assert status["c"].fresh, status["c"].reasons


@pytest.fixture
def tiny_book(two_notebooks):
    """A book of the project's two runs, with the study's configuration, extensions and styles."""
    book = two_notebooks / "book"
    book.mkdir()
    for name in ("_config.yml", "references.bib"):
        shutil.copy(study.ROOT / "book" / name, book / name)
    for name in ("_ext", "_static"):
        shutil.copytree(study.ROOT / "book" / name, book / name, ignore=shutil.ignore_patterns("__pycache__"))
    (book / "intro.md").write_text("# A tiny book\n\nIts runs are [one](runs/one) and [two](runs/two).\n")
    (book / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: runs/one\n  - file: runs/two\n  - file: reproducibility\n"
    )
    return two_notebooks


@pytest.mark.slow
def test_book_builds_missing_runs_and_marks_stale_pages(tiny_book, capsys):
    project = tiny_book
    html = project / "book" / "_build" / "html"
    assert _cli(project, "book", "--quick") == 0
    out = capsys.readouterr().out
    assert "plan: execute 2 of 2 run(s) (missing runs only)" in out and "started one" in out and "book built" in out
    assert "not fresh" not in out
    assert "crnn-stale" not in (html / "runs" / "one.html").read_text()  # a fresh page shows nothing extra

    executed = (project / "book" / "runs" / "one.ipynb").read_bytes()
    results = (project / "results" / "one.json").read_bytes()
    with open(project / "notebooks" / "good.ipynb", "a") as f:
        f.write(" ")  # run one is stale now
    assert _cli(project, "book", "--quick") == 0
    out = capsys.readouterr().out
    assert "plan: nothing to execute" in out and "started" not in out
    assert "1 run(s) not fresh" in out and "stale (notebook good.ipynb)" in out and "make rebuild" in out
    assert (project / "results" / "one.json").read_bytes() == results  # kept, not re-executed
    assert (project / "book" / "runs" / "one.ipynb").read_bytes() == executed  # the warning is not written into it
    page = (html / "runs" / "one.html").read_text()
    text = re.sub(r"<[^>]+>", "", page)
    assert "crnn-stale" in page and "This page is stale" in text and "what changed since: notebook good.ipynb" in text
    assert re.search(r"computed at commit [0-9a-f]{10}", text) and "Run make rebuild to update it" in text
    assert text.index("This page is stale") < text.index("Text.")  # at the top, before the page's own text
    assert "crnn-stale" not in (html / "runs" / "two.html").read_text()
    repro = (html / "reproducibility.html").read_text()
    assert re.search(r"<strong>stale</strong>: notebook good.ipynb", repro), repro[:3000]

    assert _cli(project, "book", "--quick", "--rebuild") == 0
    out = capsys.readouterr().out
    assert "plan: execute 1 of 2 run(s) (stale and missing runs)" in out and "started one" in out and "started two" not in out
    assert "crnn-stale" not in (html / "runs" / "one.html").read_text()  # the incremental build read the page again
    assert "<strong>stale</strong>" not in (html / "reproducibility.html").read_text()


def test_runs_start_longest_chain_first():
    def run(name, needs=()):
        return study.Run(name=name, notebook=f"{name}.ipynb", parameters={}, needs=tuple(needs))

    runs = [run("short"), run("mid"), run("long"), run("after_short", ["short"]), run("unknown")]
    times = {"short": 100.0, "mid": 300.0, "long": 1000.0, "after_short": 1500.0, "unknown": None}
    order = [r.name for r in study.critical_path_first(runs, times)]
    # short heads a 1 600 s chain, so it goes before the single 1 000 s run; unknown times count as 0
    assert order == ["short", "after_short", "long", "mid", "unknown"]
    assert [r.name for r in study.critical_path_first(runs, {})] == [r.name for r in runs]  # ties: manifest order


def test_code_digest_ignores_documentation_and_counts_code(tmp_path, monkeypatch):
    module = tmp_path / "mod.py"
    source = '"""Module."""\n\nX = "a"  # a comment\n\n\ndef f(y):\n    """Doc."""\n    "another bare string"\n    return y + 1\n'
    module.write_text(source)
    digest = study.code_digest(module)
    for same in (
        source.replace("Module.", "Module, documented better."),
        source.replace("# a comment", "# another comment").replace("def f(y):", "def f(y):  # here"),
        source.replace('    """Doc."""\n', '    """Doc.\n\n    More of it."""\n').replace('    "another bare string"\n', ""),
        source.replace("(y):", "(\n    y,\n):"),
    ):
        module.write_text(same)
        assert study.code_digest(module) == digest, same
    for other in (source.replace('X = "a"', 'X = "b"'), source.replace("y + 1", "y + 2"), source + "\nZ = 0\n"):
        module.write_text(other)
        assert study.code_digest(module) != digest, other
    module.write_text("def broken(:\n")
    assert study.code_digest(module) == results_module.file_digest(module)

    # results written before code digests record each file's own sha256: it still counts while the file is as it was
    monkeypatch.setattr(study, "PACKAGE", tmp_path)
    module.write_text(source)
    today = {"mod.py": study.code_digest(module)}
    assert study._changed_files({"mod.py": results_module.file_digest(module)}, {"mod.py"}, today) == []
    assert study._changed_files({"mod.py": digest}, {"mod.py"}, today) == []
    assert study._changed_files({}, {"mod.py"}, today) == ["mod.py"]  # not recorded: a new module in the closure
    raw = results_module.file_digest(module)
    module.write_text(source.replace("Module.", "Edited."))  # documentation only
    now = {"mod.py": study.code_digest(module)}
    assert study._changed_files({"mod.py": digest}, {"mod.py"}, now) == []  # recorded as code: fresh
    assert study._changed_files({"mod.py": raw}, {"mod.py"}, now) == ["mod.py"]  # an old record cannot tell: stale

    # the runner rewrites such records where the file is as it was: from then on documentation stales nothing
    module.write_text(source)
    results = tmp_path / "results"
    results.mkdir()
    record = {"value": 1, "run": {"package_sha256": {"mod.py": raw, "gone.py": "0" * 64}, "inputs": {"data/x": raw}}}
    (results / "r.json").write_text(json.dumps(record, indent=2) + "\n")
    (results / "other.json").write_text(json.dumps({"run": {"package_sha256": {"mod.py": "1" * 64}}}))
    assert study.upgrade_recorded_digests(results) == ["r"]
    upgraded = json.loads((results / "r.json").read_text())
    assert upgraded["run"]["package_sha256"] == {"mod.py": digest, "gone.py": "0" * 64}
    assert upgraded["run"]["inputs"] == {"data/x": raw} and upgraded["value"] == 1  # nothing else: only the package's
    assert study.upgrade_recorded_digests(results) == []
    module.write_text(source.replace("Module.", "Edited."))
    assert study._changed_files(upgraded["run"]["package_sha256"], {"mod.py"}, {"mod.py": study.code_digest(module)}) == []
