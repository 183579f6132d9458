"""What a notebook of the study reads and writes: canonical datasets, other runs' results, its own results.

Every file a notebook reads through this module is recorded with its SHA-256
(`inputs()`), and `Results.save` writes that record beside the results; the
runner (`python -m crnn.study`) reruns a notebook when any recorded input
changes. Of another run's results only the keys the notebook reads count
(`{"keys": [...], "sha256": ...}`): a rerun that changes a key nobody reads
(a wall time, say) leaves its readers fresh. Results are JSON: NaN and infinities are written as `null` and read
back as NaN by `load_results`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CRNN_DATA_DIR") or ROOT / "data")  # the override is for tests of the runner

__all__ = ["DATA", "Results", "inputs", "load_dataset", "load_results", "load_seed_reference", "results_digest"]

_INPUTS: dict[str, str] = {}  # label -> sha256 of every data file this process has read
_READS: dict[str, list] = {}  # "results/<run>" -> (results as read, the dict handed out, which records its reads)


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


_ABSENT = "<absent>"


def results_digest(data: dict, keys=None) -> str:
    """Digest of a run's results without its `run` block (wall time, cache key: noise, not content); with
    `keys`, of those keys only (a key the results lack counts as a value of its own)."""
    if keys is None:
        content = {k: v for k, v in dict.items(data) if k != "run"}
    else:
        content = {k: dict.get(data, k, _ABSENT) for k in keys if k != "run"}
    return hashlib.sha256(json.dumps(_jsonable(content), sort_keys=True, allow_nan=False).encode()).hexdigest()


class _ReadResults(dict):
    """A run's results as `load_results` hands them out: a dict that records which keys are read.

    Reading one key (`r[k]`, `r.get(k)`, `k in r`) records it; iterating (`for k in r`, `r.items()`,
    `{**r}`, `dict(r)`) records every key."""

    def __init__(self, data: dict):
        super().__init__(data)
        self.read: set | None = set()  # None: every key

    def _note(self, key):
        if self.read is not None:
            self.read.add(key)

    def __getitem__(self, key):
        self._note(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._note(key)
        return super().get(key, default)

    def __contains__(self, key):
        self._note(key)
        return super().__contains__(key)

    def _everything(self):
        self.read = None

    def __iter__(self):
        self._everything()
        return super().__iter__()

    def keys(self):
        self._everything()
        return super().keys()

    def values(self):
        self._everything()
        return super().values()

    def items(self):
        self._everything()
        return super().items()

    def copy(self):
        self._everything()
        return dict(super().items())


def inputs() -> dict:
    """The inputs read so far: ``data/<file>`` (project data) -> digest, and ``results/<run>`` (another run's
    results) -> ``{"keys": [the keys read], "sha256": digest of those keys}`` (every key: just the digest)."""
    out = dict(_INPUTS)
    for label, handed in _READS.items():
        whole = handed[-1][0]
        if any(r.read is None for _, r in handed):
            out[label] = results_digest(whole)
        else:
            keys = sorted(set().union(*(r.read for _, r in handed)) - {"run"})
            out[label] = {"keys": keys, "sha256": results_digest(whole, keys)}
    return out


def input_matches(recorded, data: dict) -> bool:
    """Whether results `data` give the digest `recorded` for them (a digest of all keys, or of the keys read)."""
    if isinstance(recorded, dict):
        return results_digest(data, recorded.get("keys", [])) == recorded.get("sha256")
    return results_digest(data) == recorded


def _record_data_file(path: Path) -> None:
    path = Path(path).resolve()
    try:
        label = "data/" + path.relative_to(DATA.resolve()).as_posix()
    except ValueError:  # a file outside the project's data folder: recorded by its name only
        label = "file/" + path.name
    _INPUTS[label] = file_digest(path)


def load_dataset(name: str):
    """The canonical dataset `name` from `data/` (see `data/datasets.yml`); recorded as an input."""
    from ._data import Dataset

    path = DATA / f"{name}.csv"
    if not path.exists():
        known = sorted(yaml.safe_load((DATA / "datasets.yml").read_text())["datasets"])
        raise ValueError(f"no dataset {name!r} in data/; known: {known} (python -m crnn.study data writes them)")
    for file in (path, path.with_suffix(".json")):
        if file.exists():
            _record_data_file(file)
    return Dataset.load(path)


def load_seed_reference(section: str | None = None) -> dict:
    """The seed deck's numbers (`data/seed_reference.yml`), or one section of them; recorded as an input."""
    path = DATA / "seed_reference.yml"
    _record_data_file(path)
    ref = yaml.safe_load(path.read_text())
    if section is None:
        return ref
    if section not in ref:
        raise ValueError(f"no section {section!r} in data/seed_reference.yml; known: {sorted(ref)}")
    return ref[section]


def _nan_for_null(value):
    if value is None:
        return math.nan
    if isinstance(value, dict):
        return {k: _nan_for_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_for_null(v) for v in value]
    return value


def load_results(name: str, results_dir: Path | None = None) -> dict:
    """The results of the run `name` (JSON `null` read back as NaN); recorded as an input."""
    path = Path(results_dir or DATA / "results") / f"{name}.json"
    if not path.exists():
        raise ValueError(f"no results for run {name!r} in {path.parent.name}/; run: python -m crnn.study run {name}")
    raw = json.loads(path.read_text())
    data = _ReadResults(_nan_for_null(raw))
    _READS.setdefault(f"results/{name}", []).append((raw, data))
    return data


def _jsonable(value):
    """Plain JSON types; NaN and +-inf become None (JSON null), the one way they are written."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a pandas DataFrame
        return _jsonable(value.to_dict(orient="records"))
    if hasattr(value, "__jax_array__") or type(value).__module__.startswith("jax"):
        return _jsonable(np.asarray(value))
    return value


def dump_json(data: dict, path: Path) -> Path:
    """Write `data` as JSON (NaN/inf as null) atomically: a temporary file, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


class Results:
    """Collects a notebook's machine-readable results and glues them for the book's prose.

    `results.glue("name", value)` stores the value and makes it available to
    the notebook's markdown as ``{glue:text}`name` `` (myst-nb); `save()`
    writes everything as JSON to the run's `results_path`, with the inputs the
    notebook read (`inputs()`).
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

    def quick(self, **values):
        """The values a notebook's quick version (`quick=True`, for tests) uses instead of its parameters,
        returned in the order given and recorded: the runner writes them into the run's
        `effective_parameters`, so that what a quick run computed with is on record in one place.

        Usage: ``if quick: epochs, n_starts = results.quick(epochs=100, n_starts=2)``.
        """
        self.data.setdefault("quick_overrides", {}).update(values)
        return tuple(values.values())

    def save(self) -> Path:
        return dump_json({**self.data, "inputs": inputs()}, self.path)
