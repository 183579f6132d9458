"""The papermill runner: caching, failures, outputs. Uses tiny throwaway notebooks."""

import json

import nbformat
import pytest

from crnn import study


def _notebook(path, body):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("quick = False\nresults_path = 'out.json'\nvalue = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
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
        "  - {name: two, notebook: good.ipynb, parameters: {value: 2}}\n"
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
    assert (project / "book" / "runs" / "one.ipynb").exists()
    again = _run(project, quick=True)
    assert [s["status"] for s in again] == ["cached", "cached"]
    assert [s["status"] for s in _run(project, quick=False, only=["one"])] == ["ran"]  # other mode, other key
    assert [s["status"] for s in _run(project, quick=True, only=["one"], force=True)] == ["ran"]


@pytest.mark.slow
def test_failure_names_cell_and_keeps_partial_and_other_outputs(project):
    _run(project, quick=True)
    before = (project / "results" / "one.json").read_text()
    manifest = project / "notebooks" / "runs.yml"
    manifest.write_text(manifest.read_text() + "  - {name: three, notebook: bad.ipynb}\n")
    with pytest.raises(study.RunFailed) as info:
        _run(project, quick=True)
    message = str(info.value)
    assert "three" in message and "bad.ipynb" in message and "cell" in message and "boom in cell" in message
    assert (project / "book" / "runs" / "three.partial.ipynb").exists()
    assert not (project / "book" / "runs" / "three.ipynb").exists()
    assert (project / "results" / "one.json").read_text() == before


def test_manifest_errors(tmp_path):
    (tmp_path / "runs.yml").write_text("runs:\n  - {name: a, notebook: missing.ipynb}\n")
    with pytest.raises(ValueError, match="missing notebook"):
        study.load_manifest(tmp_path / "runs.yml")
    (tmp_path / "x.ipynb").write_text("{}")
    (tmp_path / "runs.yml").write_text("runs:\n  - {name: a, notebook: x.ipynb}\n  - {name: a, notebook: x.ipynb}\n")
    with pytest.raises(ValueError, match="repeats"):
        study.load_manifest(tmp_path / "runs.yml")


def test_the_study_manifest_is_valid():
    runs = study.load_manifest()
    assert len({r.name for r in runs}) == len(runs)
