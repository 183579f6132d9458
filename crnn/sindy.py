"""Intervals on SINDy's coefficients: the bootstrap over experiments applied to a fitted pysindy model.

`crnn.intervals` bounds a mechanism's rate constants; SINDy (the peer method of the SINDy chapter: `pysindy`, the
`sindy` extra) learns a polynomial rate law whose coefficients need the same. `coefficient_intervals` refits a
fitted model's sparse regression (STLSQ) on resamples of the training experiments drawn with replacement, its
library, threshold and derivative estimates kept: the bootstrap over experiments of `rate_intervals(...,
method="bootstrap")`. Each experiment's derivatives and library are computed once (for smoothed derivatives the
library is evaluated on the smoothed states, as `SINDy.fit` does), so a resample costs one regression (0.06 s against
0.25 s for `SINDy.fit` on 3A -> B, measured beside a rebuild); refitting all the experiments must give the model's
own coefficients, which is checked.

What the interval measures: how much the fit depends on which experiments it sees. A bias that every resample
shares (the error of finite-difference derivatives, a library without the true terms) is not in it;
`bench/sindy_coverage.py` measures how often the interval contains a true coefficient.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ._data import Dataset

__all__ = ["bootstrap_coefficients", "coefficient_intervals"]


def _stlsq(model):
    """A maker of unfitted copies of the model's optimiser (every setting kept), which must be STLSQ."""
    import pysindy as ps
    from sklearn.base import clone

    if not isinstance(model.optimizer, ps.STLSQ):
        raise ValueError(f"the model's optimiser must be pysindy's STLSQ, got {type(model.optimizer).__name__}")
    return lambda: clone(model.optimizer)


def bootstrap_coefficients(model, dataset: Dataset, *, n_boot: int = 200, seed: int = 0) -> np.ndarray:
    """A fitted pysindy model (polynomial library, STLSQ, fitted on `dataset`'s training experiments) refitted on
    `n_boot` resamples of those experiments drawn with replacement. Returns the coefficients, shape
    `(n_boot, species, terms)` (a term a refit drops: 0). Raises `ValueError` for another optimiser, a model fitted
    on other species, or a model that refitting all the training experiments does not reproduce."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    new_optimizer = _stlsq(model)
    coef = np.asarray(model.coefficients())
    if coef.shape[0] != len(dataset.species):
        raise ValueError(f"the model has {coef.shape[0]} equations, the dataset {len(dataset.species)} species")
    train = np.flatnonzero(dataset.train)
    powers, diff = np.asarray(model.feature_library.powers_), model.differentiation_method
    thetas, xdots = [], []
    for i in train:
        xdots.append(np.asarray(diff(np.asarray(dataset.ys[i], dtype=float), t=np.asarray(dataset.ts, dtype=float))))
        states = getattr(diff, "smoothed_x_", np.asarray(dataset.ys[i], dtype=float))
        thetas.append(np.prod(states[:, None, :] ** powers[None], axis=2))

    def refit(idx):
        opt = new_optimizer()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ill-conditioned or empty regressions of a resample
            opt.fit(np.concatenate([thetas[j] for j in idx]), np.concatenate([xdots[j] for j in idx]))
        return np.asarray(opt.coef_)

    if not np.allclose(refit(np.arange(len(train))), coef, rtol=1e-8, atol=1e-12):
        raise ValueError("refitting all the training experiments does not give the model's coefficients: was it fitted "
                         "on this dataset's training experiments, with a polynomial library?")  # fmt: skip
    rng = np.random.default_rng(seed)
    return np.asarray([refit(rng.integers(0, len(train), len(train))) for _ in range(n_boot)])


def coefficient_intervals(
    model, dataset: Dataset, *, n_boot: int = 200, seed: int = 0, level: float = 0.95, truth: np.ndarray | None = None
) -> pd.DataFrame:
    """Percentile intervals at `level` on every coefficient the model keeps (`bootstrap_coefficients`).

    One row per kept coefficient, and per true term the model dropped where `truth` (the true coefficients in the
    model's library, shape `(species, terms)`) is given: `equation` (`"dA/dt"`), `term` (the library's name),
    `coefficient` (the model's), `low`, `high`, `kept` (the share of refits that keep the term), and with `truth`,
    `true` and `contains the truth`."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    bag = bootstrap_coefficients(model, dataset, n_boot=n_boot, seed=seed)
    coef = np.asarray(model.coefficients())
    if truth is not None and np.shape(truth) != coef.shape:
        raise ValueError(f"truth must have the coefficients' shape {coef.shape}, got {np.shape(truth)}")
    names = model.feature_library.get_feature_names(list(dataset.species))
    shown = coef != 0
    if truth is not None:
        shown |= np.asarray(truth) != 0
    alpha = 100 * (1 - level) / 2
    rows = []
    for i, j in zip(*np.nonzero(shown)):
        low, high = np.percentile(bag[:, i, j], [alpha, 100 - alpha])
        row = {"equation": f"d{dataset.species[i]}/dt", "term": names[j], "coefficient": float(coef[i, j]),
               "low": float(low), "high": float(high), "kept": float(np.mean(bag[:, i, j] != 0))}  # fmt: skip
        if truth is not None:
            true = float(truth[i][j])
            row |= {"true": true, "contains the truth": bool(low <= true <= high)}
        rows.append(row)
    columns = ["equation", "term", "coefficient", "low", "high", "kept"]
    return pd.DataFrame(rows, columns=columns + (["true", "contains the truth"] if truth is not None else []))
