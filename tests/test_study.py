"""The papermill runner: caching, inputs, failures, atomic completion, parameters. Uses tiny throwaway notebooks."""

import json
import math
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
    _notebook(nbdir / "good.ipynb", "import json\njson.dump({'value': value, 'quick': quick}, open(results_path, 'w'))")
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
        progress=False,
        **kw,
    )


@pytest.mark.slow
def test_runs_write_results_and_are_cached(project):
    first = _run(project, quick=True, jobs=2)
    assert sorted(s["status"] for s in first) == ["ran", "ran"]
    result = json.loads((project / "results" / "two.json").read_text())
    assert result["value"] == 2 and result["quick"] is True and result["run"]["name"] == "two"
    assert result["run"]["effective_parameters"] == {"value": 2, "quick": True}
    assert {"python", "platform", "versions", "git_commit", "git_clean"} <= set(result["run"])
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
        nbdir / "down.ipynb", f"crnn.load_results('a', __import__('pathlib').Path(results_path).parent)\n{reader}", "import crnn"
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


def test_the_study_manifest_is_valid():
    runs = study.load_manifest()  # every parameter is one its notebook declares
    assert len({r.name for r in runs}) == len(runs)
    same_notebook = {}
    for r in runs:
        same_notebook.setdefault(r.notebook, []).append(r)
    for group in same_notebook.values():  # pages of one notebook need titles that tell them apart
        if len(group) > 1:
            assert len({r.title for r in group}) == len(group) and all(group_run.title for group_run in group)
