"""The runner on a Dask cluster: a LocalCluster of 2 single-threaded worker processes stands in for a real one."""

import json
import math
import re

import nbformat
import pytest

from crnn import study

distributed = pytest.importorskip("distributed")

NOISE = re.compile(r"(_s$|time|seconds|per_s)")  # wall times and speeds differ between any two runs


def _same(a, b, path="") -> list[str]:
    """Differences between two results, wall times aside (floats to 1e-9)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}: keys {sorted(set(a) ^ set(b))}"] if set(a) != set(b) else []
        for k in set(a) & set(b):
            if not NOISE.search(k):
                out += _same(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: lengths {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _same(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


SIMULATE = """import json
import numpy as np
import crnn
m = crnn.Mechanism.parse("2A <=> Z ; 2, 10\\nZ + A -> B ; 0.5")
ys = crnn.simulate(m, np.array([[1.0, 0.0, 0.0], [value, 0.0, 0.0]]), np.linspace(0.0, 10.0, 11))
json.dump({"ys": np.asarray(ys).tolist(), "value": value, "quick": quick}, open(results_path, "w"))
"""


def _project(root):
    nbdir = root / "notebooks"
    nbdir.mkdir()
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("quick = False\nresults_path = 'out.json'\nvalue = 1.0")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(SIMULATE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nbdir / "simulate.ipynb")
    (nbdir / "runs.yml").write_text(
        "runs:\n  - {name: one, notebook: simulate.ipynb, parameters: {value: 0.5}}\n"
        "  - {name: two, notebook: simulate.ipynb, parameters: {value: 2.0}}\n"
    )
    return nbdir / "runs.yml"


@pytest.mark.slow
def test_runs_on_a_cluster_equal_the_local_ones(client, tmp_path):
    """The package's numerics (a stiff implicit solve) give the same results on a worker as here."""
    manifest = _project(tmp_path)
    kw = dict(manifest=manifest, quick=True, progress=False)
    local = study.run_all(book_dir=tmp_path / "local" / "book", results_dir=tmp_path / "local" / "results", **kw)
    remote = study.run_all(
        executor=client.get_executor(pure=False), book_dir=tmp_path / "book", results_dir=tmp_path / "results", **kw
    )
    assert sorted(s["status"] for s in local) == sorted(s["status"] for s in remote) == ["ran", "ran"]
    for name in ("one", "two"):
        there = json.loads((tmp_path / "results" / f"{name}.json").read_text())
        here = json.loads((tmp_path / "local" / "results" / f"{name}.json").read_text())
        assert there["run"]["cache_key"] == here["run"]["cache_key"]
        there.pop("run"), here.pop("run")
        assert not _same(there, here), _same(there, here)[:10]
        assert there["ys"][1][-1][1] > 0.01  # the run really integrated (B formed)
        assert (tmp_path / "book" / "runs" / f"{name}.ipynb").exists()  # came back from the worker


@pytest.mark.slow
def test_a_run_raising_on_a_worker_is_reported_with_its_traceback_while_the_others_finish(client, tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    for name, body in [("good", "import json\njson.dump({'v': 1}, open(results_path, 'w'))"), ("bad", "1 / 0")]:
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell("quick = False\nresults_path = 'out.json'")
        cell.metadata["tags"] = ["parameters"]
        nb.cells = [cell, nbformat.v4.new_code_cell(body)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, nbdir / f"{name}.ipynb")
    (nbdir / "runs.yml").write_text(
        "runs:\n  - {name: bad, notebook: bad.ipynb}\n"
        "  - {name: one, notebook: good.ipynb}\n  - {name: two, notebook: good.ipynb}\n"
    )
    with pytest.raises(study.RunFailed) as info:
        study.run_all(
            manifest=nbdir / "runs.yml",
            executor=client.get_executor(pure=False),
            keep_going=True,
            book_dir=tmp_path / "book",
            results_dir=tmp_path / "results",
            progress=False,
        )
    assert {s["name"]: s["status"] for s in info.value.statuses} == {"bad": "failed", "one": "ran", "two": "ran"}
    assert "ZeroDivisionError" in info.value.failures[0]["traceback"] and "1 / 0" in info.value.failures[0]["traceback"]
    assert json.loads((tmp_path / "results" / "one.json").read_text())["v"] == 1
