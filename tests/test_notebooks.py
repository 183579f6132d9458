"""Every notebook run of notebooks/runs.yml in quick mode, then the book built from them.

The quick runs go to a temporary book copy and results folder, so the full
results in data/results and book/runs are never touched by the tests.
"""

import ast
import json
import re

import pytest

from crnn import study


@pytest.mark.slow
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


@pytest.mark.slow
def test_book_builds_offline_from_the_runs(quick_book_html):
    html = quick_book_html
    for page in ["intro", "runs/case1-order-penalty", "runs/case4-stiffness", "runs/conclusions"]:
        assert (html / f"{page}.html").exists(), page
    index = (html / "runs" / "conclusions.html").read_text()
    assert "quick test runs" in index  # the build says when its numbers come from quick runs
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', (html / "intro.html").read_text())
    assert any("mathjax" in s for s in scripts)
    assert not [s for s in scripts if s.startswith(("http:", "https:", "//"))], scripts
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()
    repro = (html / "reproducibility.html").read_text()
    assert all(name in repro for name in [r.name for r in study.load_manifest()])
    assert "git" in repro.lower() and "jax" in repro
    leaks = []  # no path of the machine that built the book, no environment warning, on any page
    for page in html.rglob("*.html"):
        text = page.read_text()
        leaks += [(page.name, m) for m in re.findall(r"(?:/tmp/|/home/|/root/|/work/|site-packages|\.venv/)[^\s\"'<]*", text)]
        leaks += [(page.name, "TqdmWarning")] if "TqdmWarning" in text else []
    assert not leaks, leaks[:10]
    titles = re.findall(r"<title>(.*?)</title>", (html / "runs" / "case5-2AB.html").read_text())
    assert titles and "2A + B" in titles[0], titles


def test_source_notebooks_have_no_outputs_and_one_parameters_cell():
    import nbformat

    for path in sorted((study.ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert not any(c.get("outputs") or c.get("execution_count") for c in code), path.name
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        assert "quick" in tagged[0].source and "results_path" in tagged[0].source, path.name
        params = study.notebook_parameters(path)  # typed: papermill --help-notebook shows each type
        assigned = [n.target.id for n in ast.parse(tagged[0].source).body if isinstance(n, ast.AnnAssign)]
        assert sorted(assigned) == sorted(params), (path.name, "papermill could not read", set(assigned) - set(params))
        assert all(p["type"] not in ("None", None) for p in params.values()), (path.name, params)
