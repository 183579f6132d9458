"""The source notebooks: no outputs, one typed parameters cell each.

Their quick runs and the book built from them are tested in tests/test_book.py.
"""

import ast

from crnn import study


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
