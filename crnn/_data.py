"""Datasets: generation by the reference CRNN protocol, CSV + JSON manifest on disk."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._mechanism import Mechanism
from ._simulate import SolverConfig, simulate

__all__ = ["Dataset", "make_dataset"]

_FIXED_COLUMNS = ("experiment", "split", "time")
SPLITS = ("train", "validation")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Concentration time series of several experiments.

    **Fields:**

    - `species`: names of the observed species (columns of `ys`).
    - `ts`: (n_times,) sampling times, shared by all experiments.
    - `ys`: (n_experiments, n_times, n_species) concentrations.
    - `y0`: (n_experiments, n_species) the initial state each experiment was solved from.
    - `split`: (n_experiments,) `"train"` or `"validation"`.
    - `metadata`: how the data were made (generator, parameters, seed, ...).
    """

    species: tuple[str, ...]
    ts: np.ndarray
    ys: np.ndarray
    y0: np.ndarray
    split: np.ndarray
    metadata: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        n_exp, n_t, n_s = self.ys.shape
        if self.ts.shape != (n_t,) or self.y0.shape != (n_exp, n_s) or self.split.shape != (n_exp,) or len(self.species) != n_s:
            raise ValueError(
                f"inconsistent shapes: ts {self.ts.shape}, ys {self.ys.shape}, y0 {self.y0.shape}, "
                f"split {self.split.shape}, {len(self.species)} species"
            )
        bad = set(self.split.tolist()) - set(SPLITS)
        if bad:
            raise ValueError(f"split values must be 'train' or 'validation', got {sorted(bad)}")

    @property
    def n_experiments(self) -> int:
        return self.ys.shape[0]

    @property
    def train(self) -> np.ndarray:
        """Boolean mask of the training experiments."""
        return self.split == "train"

    @property
    def validation(self) -> np.ndarray:
        return self.split == "validation"

    def scale(self, lower: float = 1e-5) -> np.ndarray:
        """Per-species scale sigma_i: the largest range over time of any training experiment, plus `lower`.

        This is the reference CRNN's normalisation (max over experiments of max - min).
        """
        ys = self.ys[self.train]
        return (ys.max(axis=1) - ys.min(axis=1)).max(axis=0) + lower

    # ----------------------------------------------------------------- disk
    def to_csv_text(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([*_FIXED_COLUMNS, *self.species])
        for e in range(self.n_experiments):
            for t_index, t in enumerate(self.ts):
                writer.writerow([e, self.split[e], repr(float(t)), *(repr(float(v)) for v in self.ys[e, t_index])])
        return buffer.getvalue()

    def save(self, path) -> Path:
        """Write `<path>.csv` and the manifest `<path>.json`; returns the CSV path.

        The CSV has one row per experiment and time (columns experiment, split,
        time, then one per species); the manifest holds the metadata, the
        initial states and the CSV's SHA-256.
        """
        csv_path, json_path = _paths(path)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        text = self.to_csv_text()
        csv_path.write_text(text)
        manifest = {
            "format": "crnn-dataset/1",
            "csv": csv_path.name,
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "species": list(self.species),
            "n_experiments": self.n_experiments,
            "n_times": len(self.ts),
            "y0": self.y0.tolist(),
            "metadata": self.metadata,
        }
        json_path.write_text(json.dumps(manifest, indent=2) + "\n")
        return csv_path

    @classmethod
    def load(cls, path, verify_checksum: bool = True) -> Dataset:
        """Read a dataset written by `save` (give the CSV, the JSON or the stem).

        Raises `ValueError` naming the file and row for missing columns,
        non-numeric or NaN values, negative concentrations, unsorted or repeated
        times, experiments on different time grids, or a checksum mismatch.
        """
        csv_path, json_path = _paths(path)
        manifest = json.loads(json_path.read_text()) if json_path.exists() else {}
        text = csv_path.read_text()
        if verify_checksum and "sha256" in manifest and hashlib.sha256(text.encode()).hexdigest() != manifest["sha256"]:
            raise ValueError(f"{csv_path}: checksum does not match the manifest {json_path.name} (file edited or truncated?)")
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{csv_path}: empty file")
        missing = [c for c in _FIXED_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {missing} in the header (row 1)")
        species = tuple(manifest.get("species") or [c for c in header if c not in _FIXED_COLUMNS])
        missing = [s for s in species if s not in header]
        if missing:
            raise ValueError(f"{csv_path}: missing species column(s) {missing} in the header (row 1)")
        if not species:
            raise ValueError(f"{csv_path}: no species columns in the header (row 1)")
        col = {c: header.index(c) for c in header}
        experiments: dict[int, dict] = {}
        for row_number, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{csv_path}, row {row_number}: expected {len(header)} fields, got {len(row)}")

            def number(name, row=row, row_number=row_number):
                try:
                    value = float(row[col[name]])
                except ValueError:
                    raise ValueError(f"{csv_path}, row {row_number}: {name}={row[col[name]]!r} is not a number") from None
                if math.isnan(value) or math.isinf(value):
                    raise ValueError(f"{csv_path}, row {row_number}: {name} is {row[col[name]]}")
                return value

            experiment = number("experiment")
            if experiment != int(experiment):
                raise ValueError(f"{csv_path}, row {row_number}: experiment must be an integer")
            split = row[col["split"]]
            if split not in SPLITS:
                raise ValueError(f"{csv_path}, row {row_number}: split must be 'train' or 'validation', got {split!r}")
            t = number("time")
            values = []
            for s in species:
                v = number(s)
                if v < 0:
                    raise ValueError(f"{csv_path}, row {row_number}: negative concentration {s}={v}")
                values.append(v)
            entry = experiments.setdefault(int(experiment), {"split": split, "ts": [], "ys": [], "row": row_number})
            if entry["split"] != split:
                raise ValueError(f"{csv_path}, row {row_number}: experiment {int(experiment)} changes split")
            if entry["ts"] and t <= entry["ts"][-1]:
                kind = "repeated" if t == entry["ts"][-1] else "unsorted"
                raise ValueError(f"{csv_path}, row {row_number}: {kind} time {t} in experiment {int(experiment)}")
            entry["ts"].append(t)
            entry["ys"].append(values)
        if not experiments:
            raise ValueError(f"{csv_path}: no data rows")
        keys = sorted(experiments)
        ts = np.array(experiments[keys[0]]["ts"])
        for k in keys[1:]:
            if not np.array_equal(np.array(experiments[k]["ts"]), ts):
                raise ValueError(
                    f"{csv_path}, row {experiments[k]['row']}: experiment {k} has another time grid than experiment {keys[0]}"
                )
        ys = np.array([experiments[k]["ys"] for k in keys], dtype=float)
        split = np.array([experiments[k]["split"] for k in keys])
        y0 = np.asarray(manifest["y0"], dtype=float) if "y0" in manifest else ys[:, 0, :].copy()
        return cls(species, ts, ys, y0, split, manifest.get("metadata", {}))


def _paths(path) -> tuple[Path, Path]:
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".csv", ".json") else path
    return stem.with_suffix(".csv"), stem.with_suffix(".json")


def default_reactants(mechanism: Mechanism) -> list[str]:
    """Species that no reaction produces: the ones an experiment starts with."""
    w_in, _, w_out = mechanism.to_weights()
    produced = (w_out > 0).any(axis=0)
    return [s for s, p in zip(mechanism.species, produced) if not p]


def make_dataset(
    mechanism: Mechanism,
    n_experiments: int = 30,
    n_train: int = 20,
    t_end: float = 40.0,
    n_points: int = 100,
    noise: float = 0.0,
    seed: int = 0,
    *,
    reactants: Sequence[str] | None = None,
    y0_range: tuple[float, float] = (0.2, 1.2),
    observed: Sequence[str] | None = None,
    solver: SolverConfig | None = None,
) -> Dataset:
    """Synthetic data by the reference CRNN protocol (Ji & Deng 2021, case 1).

    Initial concentrations of the `reactants` are drawn uniformly from
    `y0_range`, all other species start at 0; each experiment is solved on
    `n_points` equally spaced times in [0, `t_end`]; multiplicative Gaussian
    noise `y * (1 + noise * N(0, 1))` is added (clipped at 0). The first
    `n_train` experiments are for training, the rest for validation.

    **Arguments:**

    - `mechanism`: the ground truth.
    - `reactants`: species that start non-zero (default: species no reaction produces).
    - `observed`: species kept in the dataset (default: all).
    - `seed`: seed of the numpy generator that draws initial states and noise.
    """
    if not 0 < n_train <= n_experiments:
        raise ValueError(f"need 0 < n_train <= n_experiments, got n_train={n_train}, n_experiments={n_experiments}")
    if n_points < 2 or not t_end > 0:
        raise ValueError("need n_points >= 2 and t_end > 0")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    lo, hi = y0_range
    if not 0 <= lo <= hi:
        raise ValueError(f"y0_range must satisfy 0 <= low <= high, got {y0_range}")
    given = reactants
    reactants = list(default_reactants(mechanism) if reactants is None else reactants)
    if not reactants:
        how = (
            "given as []"
            if given is not None
            else ("default to the species no reaction produces, and every species here is produced by some reaction")
        )
        raise ValueError(
            f"no species would start non-zero, so every concentration would be zero at all times: reactants {how}; "
            f"pass reactants=[...] naming the species an experiment starts with (species: {list(mechanism.species)})"
        )
    if hi <= 0:
        raise ValueError(
            f"y0_range={tuple(y0_range)} gives every reactant a zero initial concentration; give it a positive upper end"
        )
    observed = list(mechanism.species if observed is None else observed)
    for name in [*reactants, *observed]:
        if name not in mechanism.species:
            raise ValueError(f"unknown species {name!r}; the mechanism has {mechanism.species}")
    rng = np.random.default_rng(seed)
    y0 = np.zeros((n_experiments, mechanism.n_species))
    columns = [mechanism.species.index(s) for s in reactants]
    y0[:, columns] = rng.uniform(lo, hi, size=(n_experiments, len(columns)))
    ts = np.linspace(0.0, t_end, n_points)
    ys = np.asarray(simulate(mechanism, y0, ts, config=solver or SolverConfig()))
    ys = np.maximum(ys, 0.0)  # solver round-off below zero
    if noise > 0:
        ys = np.maximum(ys * (1.0 + noise * rng.standard_normal(ys.shape)), 0.0)
    keep = [mechanism.species.index(s) for s in observed]
    split = np.array(["train"] * n_train + ["validation"] * (n_experiments - n_train))
    metadata = {
        "generator": "crnn.make_dataset",
        "mechanism": mechanism.format(digits=12, rate_digits=12),
        "species_all": list(mechanism.species),
        "parameters": {
            "n_experiments": n_experiments,
            "n_train": n_train,
            "t_end": t_end,
            "n_points": n_points,
            "noise": noise,
            "seed": seed,
            "reactants": reactants,
            "y0_range": list(y0_range),
            "observed": observed,
        },
    }
    return Dataset(tuple(observed), ts, ys[:, :, keep], y0[:, keep], split, metadata)
