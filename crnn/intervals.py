"""Intervals on the rate constants of a fixed mechanism: profile likelihood and a bootstrap over experiments.

A mechanism's structure is fixed (a map candidate, the rounded mechanism of a CRNN start, a learner's
result); its rate constants are fitted to the training experiments and every rate constant, and every
combination of them the caller names (e.g. `K = k1 / k-1`), gets a 95 % interval:

- `method="profile"`: the profile likelihood. The quantity is held at each point of a grid while the
  other rate constants are refitted (Levenberg-Marquardt, vmapped over the grid); the interval is where
  the profile deviance stays within the chi-square quantile (3.84 at 95 %) of its minimum. A side the
  profile never leaves within `ln_k_bounds` is open (0 below, `inf` above: every quantity is a positive
  constant): the data do not bound it there.
- `method="bootstrap"`: the training experiments are resampled with replacement `n_boot` times and the
  rate constants refitted on each resample (vmapped over resamples); percentile intervals.
- `method="nuts"`: the posterior of ln k (uniform prior within `ln_k_bounds`, the noise scale integrated out
  under its Jeffreys prior: log density `-(N/2) ln SSE`) sampled by NUTS (blackjax, the `bayes` extra, with
  window adaptation) in coordinates whitened by the Laplace covariance at the fit, gradients through the same
  stiff-safe solve; equal-tailed credible intervals, as the Bayesian CRNN (Li, Chen, Koenig & Deng 2023) does
  over CRNN weights.

The likelihood: Gaussian residuals relative to the prediction, `(prediction - observation) / prediction`
(the study's data carry multiplicative noise `y (1 + s N(0, 1))`, so these residuals have one variance),
with the prediction in the denominator that of a first fit, held fixed (generalised least squares with
estimated weights: weighting by the observations instead biases the estimates), over the observations
that are not zero; the variance profiled out: deviance `N ln(SSE / N)`.
Where the parameters are not all identified, `identified_combinations` names the combinations of ln k
that the data do fix (the Fisher information's well-determined directions), ready to be profiled.

Quantities are written as exponents of the rate constants over the ln k: `{"K": [1, -1, 0]}` is k1 / k-1.

A CRNN's result is bounded at its rounded structure (whole-number coefficients, what the study judges) or, with
`stoichiometry="trained"`, at its coefficients as trained; a fit whose hidden species sits at its quasi-steady state
keeps that model there (`QSSField`).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy.stats import chi2, norm

from ._data import Dataset
from ._mechanism import Mechanism, _format_side
from .integrate import Field, MassAction, QSSField, Rosenbrock
from .landscape import Candidate, _levenberg_marquardt, _padded_weights, fit_rates, rounded_reactions

__all__ = ["Intervals", "identified_combinations", "rate_intervals", "trained_rate_table"]

METHODS = ("profile", "bootstrap", "nuts")
NOISE = ("relative", "scaled")
STOICHIOMETRY = ("rounded", "trained")


@dataclasses.dataclass
class Intervals:
    """The result of `rate_intervals`.

    - `table`: one row per quantity: `quantity`, `exponents` (over the rate constants), `estimate`,
      `low`, `high` (the interval on the constant itself, not its logarithm; 0 below and `inf` above where open),
      `bounded` (neither end open), `method`, `level`.
    - `profiles`: quantity -> DataFrame of `value` (the constant) and `deviance` above the minimum
      (profile method only).
    - `samples`: quantity -> the bootstrap estimates (bootstrap only).
    - `mechanism`: the structure with the fitted rate constants; `deviance`: at the fit; `timing`.
    - `restarts`: how often a profile found a lower deviance than the fit, which was then refitted from there.
    - `combinations`: the combinations of ln k the Fisher information at the (final) fit names, best determined
      first, as `identified_combinations` gives them (its `quantity` column names each by its reactions).
    """

    table: pd.DataFrame
    mechanism: Mechanism
    deviance: float
    profiles: dict
    samples: dict
    timing: dict
    restarts: int = 0  # refits from a profile point below the fit (profile method; see `rate_intervals`)
    combinations: pd.DataFrame | None = None

    def plot(self, truth: Mapping[str, float] | None = None, axes=None, relative_to: Mapping[str, float] | None = None):
        """The profile deviance (or the bootstrap histogram) of each quantity, its interval shaded, the
        threshold dashed and `truth` (quantity -> value) marked.

        `relative_to` (quantity -> value): draw those quantities as their deviation from the value, in per cent
        (for intervals a fraction of a per cent wide, whose own axis would need an offset); pass `truth` as
        well to mark it at 0."""
        from .report import panel_grid

        if axes is None:  # at most three panels a row, the book's figure width
            _, axes = panel_grid(len(self.table))
        level = float(self.table["level"].iloc[0])
        for ax, (_, row) in zip(axes, self.table.iterrows()):
            q = row["quantity"]
            ref = (relative_to or {}).get(q)

            def x(v, ref=ref):
                return 100 * (np.asarray(v, dtype=float) / ref - 1) if ref else np.asarray(v, dtype=float)

            if q in self.profiles:
                p = self.profiles[q]
                ax.plot(x(p["value"]), p["deviance"], "o-", ms=2.5)
                ax.axhline(chi2.ppf(level, 1), color="k", ls="--", lw=0.8)
                ax.set_ylim(0, max(3 * chi2.ppf(level, 1), 1.0))
                ax.set_ylabel("profile deviance")
            elif q in self.samples:
                ax.hist(x(self.samples[q]), bins=30, color="C0", alpha=0.7)
                ax.set_ylabel("resamples")
            drawn = np.asarray(self.profiles[q]["value"] if q in self.profiles else self.samples.get(q, []), dtype=float)
            drawn = drawn[np.isfinite(drawn)]
            if ref is None and len(drawn) and drawn.min() > 0 and drawn.max() / drawn.min() > 3:
                ax.set_xscale("log")  # a logarithmic axis where the drawn values span more than a factor 3
            else:
                from matplotlib.ticker import MaxNLocator, ScalarFormatter

                ax.xaxis.set_major_locator(MaxNLocator(nbins=3))  # few, short tick labels: a panel is a third wide
                short = ScalarFormatter(useOffset=False, useMathText=True)
                short.set_powerlimits((-3, 4))  # values ~1e-4: the power of ten once, at the axis' end
                ax.xaxis.set_major_formatter(short)
            lo, hi = row["low"], row["high"]
            lims = ax.get_xlim()  # an open side is shaded to the edge of the drawn profile
            ax.axvspan(x(lo) if lo > 0 else lims[0], x(hi) if np.isfinite(hi) else lims[1], color="C1", alpha=0.2)
            ax.set_xlim(lims)
            if truth is not None and q in truth:
                ax.axvline(x(truth[q]), color="C3", lw=1.2)
            ax.set_xlabel(_wrapped(f"{q}: % from {ref:.4g}" if ref else q))
        return axes


def _wrapped(label: str, width: int = 30) -> str:
    """A long axis label broken into lines of about `width` characters, between the factors of a product
    (`" · "`) or, failing that, at spaces (a combination's name would run into the next panel)."""
    if len(label) <= width:
        return label
    parts = label.split(" · ")
    sep = " ·" if len(parts) > 1 else ""
    if len(parts) == 1:
        parts = label.split(" ")
    lines, line = [], ""
    for part in parts:
        if line and len(line) + len(part) + 3 > width:
            lines.append(line + sep)
            line = part
        else:
            line = f"{line}{sep} {part}" if line else part
    return "\n".join([*lines, line])


# ----------------------------------------------------------------------------------------- the problem


@dataclasses.dataclass(frozen=True)
class _Problem:
    """One structure on one dataset's training experiments, as arrays."""

    w_in: jax.Array
    w_out: jax.Array
    y0: jax.Array
    ys: jax.Array
    weight: jax.Array  # 1 / observation where the observation is not zero, else 0
    ts: tuple
    n_obs: int
    bounds: tuple[float, float]
    field: Field  # MassAction, or QSSField where the one hidden species sits at its quasi-steady state

    @classmethod
    def of(cls, candidate: Candidate, dataset: Dataset, bounds) -> _Problem:
        """The study's scaled residuals (`(prediction - observation) / scale`); `reweighted` makes them relative.
        A quasi-steady-state structure (`_AsTrained` of a QSS fit) is solved over the observed species only."""
        w_in, w_out, _ = _padded_weights([candidate])
        observed = list(dataset.species)
        trained = isinstance(candidate, _AsTrained)
        qss = trained and candidate.qss
        floor = candidate.floor if trained else 1e-12  # whole-number orders: (near) exact mass action
        n_s = len(observed) if qss else w_in.shape[-1]
        y0 = np.concatenate([dataset.y0, np.zeros((dataset.n_experiments, n_s - len(observed)))], axis=1)[dataset.train]
        ys = np.asarray(dataset.ys[dataset.train], dtype=float)
        weight = np.broadcast_to(1.0 / np.asarray(dataset.scale(), dtype=float), ys.shape)
        return cls(
            jnp.asarray(w_in[0]), jnp.asarray(w_out[0]), jnp.asarray(y0), jnp.asarray(ys), jnp.asarray(weight),
            tuple(np.asarray(dataset.ts, dtype=float).tolist()), len(observed), (float(bounds[0]), float(bounds[1])),
            QSSField(floor) if qss else MassAction(floor),
        )  # fmt: skip

    def arrays(self):
        return self.w_in, self.w_out, self.y0, self.ys, self.weight

    def reweighted(self, integrator, x) -> _Problem:
        """Residuals relative to the prediction of `x` (held fixed): `(prediction - observation) / prediction(x)`,
        over the observations that are not zero where that prediction is not negligible."""
        pred = np.asarray(_predict(integrator, self.field, self.ts, self.w_in, jnp.asarray(x), self.w_out, self.y0))
        pred = pred[..., : self.n_obs]
        scale = np.asarray(self.ys).max(axis=(0, 1))
        keep = (np.asarray(self.ys) > 0) & (pred > 1e-6 * scale)
        return dataclasses.replace(self, weight=jnp.asarray(np.where(keep, 1.0 / np.where(keep, pred, 1.0), 0.0)))


@eqx.filter_jit
def _predict(integrator, field, ts, w_in, x, w_out, y0):
    """The solve of one structure (module-level: a second call with equal shapes compiles nothing)."""
    return integrator.solve(field, (w_in, x, w_out), y0, ts)[0]


def _constrained(x, c, v):
    """`x` moved along `c` onto the plane `c . x = v` (c = 0: x unchanged)."""
    cc = c @ c
    return x + c * jnp.where(cc > 0, (v - c @ x) / jnp.where(cc > 0, cc, 1.0), 0.0)


def _residuals(integrator, field, n_obs, ts, bounds, w_in, w_out, y0, ys, weight, x):
    pred, _ = integrator.solve(field, (w_in, jnp.clip(x, bounds[0], bounds[1]), w_out), y0, ts)
    return (pred[..., :n_obs] - ys) * weight


FIT_ITERATIONS = 80  # Levenberg-Marquardt steps of the fit itself (a profile point's refit takes `iterations`)
MAX_RESTARTS = 2  # refits of an unconverged fit from the lowest profile point
RESTART_DEVIANCE = 1e-2  # how far (deviance) a profile point must fall below the fit to restart from it
BOUND_PENALTY = 1e3  # weight of the residuals that keep ln k within its bounds during a fit


@eqx.filter_jit
def _fits(integrator, field, n_obs, ts, bounds, iterations, arrays, experiment_weight, x0, c, v):
    """Levenberg-Marquardt from each row of `x0` with `c . x = v` held (c = 0: free), each residual of an
    experiment times `experiment_weight` (bootstrap counts, square-rooted); vmapped over the leading axis of
    `experiment_weight`, `x0`, `c` and `v`. The ln k are kept within `bounds` by a penalty; a fit that ends
    outside them (the held value needs a rate constant beyond its bound) gets an infinite sum of squares.
    Returns the fitted ln k and the unweighted sum of squares."""
    w_in, w_out, y0, ys, weight = arrays
    mask = jnp.ones(x0.shape[1], bool)

    def one(ew, x_start, ci, vi):
        def residual(x):
            xf = _constrained(x, ci, vi)
            r = _residuals(integrator, field, n_obs, ts, bounds, w_in, w_out, y0, ys, weight, xf)
            return jnp.concatenate([(r * ew[:, None, None]).ravel(), BOUND_PENALTY * (xf - jnp.clip(xf, *bounds))])

        x, _ = _levenberg_marquardt(residual, x_start, mask, iterations)
        x = _constrained(x, ci, vi)
        r = _residuals(integrator, field, n_obs, ts, bounds, w_in, w_out, y0, ys, weight, x)
        sse = jnp.sum(r**2)
        inside = jnp.all(jnp.abs(x - jnp.clip(x, *bounds)) < 1e-3)
        return x, jnp.where(jnp.isfinite(sse) & inside, sse, jnp.inf)

    return jax.vmap(one)(experiment_weight, x0, c, v)


def _widened(bounds, by: float = 4.0):
    """Bounds widened by `by` (ln): derivatives at a fit that sits on a bound see the rate law, not the clip."""
    return (bounds[0] - by, bounds[1] + by)


@eqx.filter_jit
def _jacobian(integrator, field, n_obs, ts, bounds, arrays, x, step: float = 1e-6):
    w_in, w_out, y0, ys, weight = arrays
    residual = lambda z: _residuals(integrator, field, n_obs, ts, bounds, w_in, w_out, y0, ys, weight, z).ravel()
    eye = jnp.eye(x.shape[0]) * step
    return ((jax.vmap(residual)(x + eye) - jax.vmap(residual)(x - eye)) / (2 * step)).T


# ----------------------------------------------------------------------------------------- the calls


@dataclasses.dataclass(frozen=True)
class _AsTrained:
    """A CRNN start's learned mechanism with its coefficients and orders as trained (not rounded): the structure
    of `rate_intervals(fit, data, stoichiometry="trained")`, in the part of a map `Candidate`'s interface the
    intervals use (`species`, `n_reactions`, `equations`, `mechanism`). `qss`: the last species is the fit's
    hidden species in quasi-steady state (its model is `QSSField`'s, solved over the observed species). `floor`: the
    fit's concentration floor, kept: an order below one has an unbounded derivative at zero, so the floor is part of
    a fractional model (at 1e-12, a reactant that starts at zero with order 0.07 gave the implicit solver Jacobian
    entries near 1e10, and a prediction that no rate constant moved)."""

    learned: Mechanism
    qss: bool = False
    floor: float = 1e-5  # the fit's concentration floor: with fractional orders it is part of the model

    @property
    def species(self) -> tuple[str, ...]:
        return tuple(self.learned.species)

    @property
    def n_reactions(self) -> int:
        return self.learned.n_reactions

    def equations(self) -> list[str]:
        names = [f"{_format_side(r.reactants, 3)} -> {_format_side(r.products, 3)}" for r in self.learned.reactions]
        return [n if names.count(n) == 1 else f"{n} #{j + 1}" for j, n in enumerate(names)]  # unique names

    def mechanism(self, rates: Sequence[float] | None = None) -> Mechanism:
        if rates is None:
            return self.learned
        reactions = tuple(dataclasses.replace(r, rate=float(k)) for r, k in zip(self.learned.reactions, rates))
        return Mechanism(self.learned.species, reactions)


def _structure(
    structure, which: int | None = None, threshold: float = 0.01, stoichiometry: str = "rounded"
) -> tuple[Candidate | _AsTrained, np.ndarray | None]:
    """The fixed structure and its starting ln k (None: `fit_rates` starts it) from any of the study's results.

    - `Mechanism`: its reactions, its rate constants as the start.
    - map `Candidate`: its reactions, started by the map's own rate fit.
    - `RateFit` (`fit_rates`): candidate `which` (a row of its table; default the first), its fitted rates.
    - `Discovery` (`crnn.discover`): the final mechanism of start `which` (default the best), its rates.
    - `FitResult` (`crnn.fit`): start `which`'s learned mechanism (default the best start), weights below
      `threshold` pruned, rounded to whole numbers as the study judges it (`landscape.round_mechanism`);
      rounding changes what the rate constants mean, so the map's rate fit starts it. With
      `stoichiometry="trained"`: the pruned weights as trained (fractional coefficients and orders kept), started
      at the trained rate constants: intervals on the CRNN's own rate constants, conditional on its stoichiometry
      (its rate law floored at the fit's own concentration floor, as the CRNN trained it).
      A quasi-steady-state fit keeps its model: the hidden species at its QSS (`QSSField`), its learned mechanism in
      the unit `normalize_hidden` gives it (the rate constants of the steps that consume it are in that unit).
      Rounded, its structure is refitted with the hidden species integrated, as the study judges it.
    """
    from ._train import FitResult  # here: `crnn.fit`'s module is not needed for the other types
    from .discover import Discovery
    from .hidden import QuasiSteadyState
    from .landscape import RateFit, round_mechanism

    if stoichiometry not in STOICHIOMETRY:
        raise ValueError(f"stoichiometry must be one of {STOICHIOMETRY}, got {stoichiometry!r}")
    if which is not None and not isinstance(structure, RateFit | Discovery | FitResult):
        raise ValueError(f"`which` picks a row or a start of a result; a {type(structure).__name__} has one structure")
    if stoichiometry == "trained":
        if not isinstance(structure, FitResult):
            raise ValueError(f'stoichiometry="trained" is for a CRNN fit (FitResult); got a {type(structure).__name__}')
        learned = structure.mechanism(threshold, start=structure.best_start if which is None else which)
        if not learned.n_reactions:
            raise ValueError("nothing is left of the learned mechanism after pruning")
        as_trained = _AsTrained(learned, isinstance(structure.hidden, QuasiSteadyState), float(structure.floor))
        return as_trained, np.log(np.asarray(learned.rates, dtype=float))
    if isinstance(structure, Mechanism):
        return Candidate.from_mechanism(structure, structure.species), np.log(np.asarray(structure.rates, dtype=float))
    if isinstance(structure, Candidate):
        return structure, None
    if isinstance(structure, RateFit):
        row = 0 if which is None else which
        if not 0 <= row < len(structure.candidates):
            raise ValueError(f"which must be a row of the rate fit, 0 to {len(structure.candidates) - 1}; got {row}")
        rates = np.asarray(structure.table["rates"].iloc[row], dtype=float)
        return structure.candidates[row], np.log(rates) if np.all(rates > 0) else None
    if isinstance(structure, Discovery):
        return _structure(structure.mechanism(which))
    if isinstance(structure, FitResult):
        learned = structure.mechanism(threshold, start=structure.best_start if which is None else which)
        if structure.n_observed < len(structure.species):  # the hidden species' unit first (it has none in the data)
            candidate, _ = round_mechanism(learned, {s: [1] for s in learned.species[:-1]}, max_hidden_size=1)
        else:
            candidate = _rounded(learned)
        if candidate is None:
            raise ValueError("nothing is left of the learned mechanism after pruning and rounding")
        return candidate, None
    raise TypeError(
        "expected a Mechanism, a map Candidate, a RateFit, a Discovery or a FitResult; got " + type(structure).__name__
    )


def _rounded(mechanism: Mechanism) -> Candidate | None:
    """A mechanism without hidden species, its net coefficients rounded to whole numbers (reactions without a
    reactant, or repeated, dropped); None when nothing is left."""
    reactions = rounded_reactions(mechanism.species, mechanism.to_weights()[2])
    return Candidate(tuple(reactions), tuple(mechanism.species), None) if reactions else None


def _quantities(candidate: Candidate, combinations: Mapping[str, Sequence[float]] | None, rates: bool):
    p = candidate.n_reactions
    out = {}
    if rates:
        for j, eq in enumerate(candidate.equations()):
            out[f"k({eq})"] = np.eye(p)[j]
    for name, c in (combinations or {}).items():
        c = np.asarray(c, dtype=float)
        if c.shape != (p,) or not np.any(c):
            raise ValueError(f"combination {name!r} needs {p} exponents, not all zero; got {list(c)}")
        out[name] = c
    return out


def trained_rate_table(
    fit,
    dataset: Dataset,
    *,
    which: int | None = None,
    threshold: float = 0.01,
    noise: str = "scaled",
    level: float = 0.95,
    **kwargs,
) -> pd.DataFrame:
    """A CRNN start's rate constants as trained, each with its refit and interval at the start's coefficients as
    trained (`rate_intervals(fit, dataset, stoichiometry="trained")`; `kwargs` go there): what a book's table of a
    CRNN's learned rates shows. `noise="scaled"` by default: the CRNN weighs its errors on the scaled residuals (and
    residuals relative to the prediction fail where an order below one makes a species run out in finite time).

    One row per reaction of start `which` (default the best), pruned at `threshold`, in the learned mechanism's order:
    `reaction (as trained)`, `trained k`, `refitted k`, `95 % low`, `95 % high` (the `level`'s), `bounded` and
    `trained k inside` (the rate as trained within its interval). Raises `ValueError` where nothing is left after
    pruning."""
    start = fit.best_start if which is None else which
    iv = rate_intervals(
        fit, dataset, which=start, threshold=threshold, stoichiometry="trained", noise=noise, level=level, **kwargs
    )
    rows = iv.table[iv.table["quantity"].str.startswith("k(")]
    trained = np.asarray(fit.mechanism(threshold, start=start).rates, dtype=float)
    pct = f"{100 * level:g} %"
    low, high = rows["low"].to_numpy(), rows["high"].to_numpy()
    return pd.DataFrame({
        "reaction (as trained)": rows["quantity"].str[2:-1].to_numpy(), "trained k": trained,
        "refitted k": rows["estimate"].to_numpy(), f"{pct} low": low, f"{pct} high": high,
        "bounded": rows["bounded"].to_numpy(), "trained k inside": (low <= trained) & (trained <= high),
    })  # fmt: skip


def identified_combinations(
    structure,
    dataset: Dataset,
    *,
    which: int | None = None,
    threshold: float = 0.01,
    stoichiometry: str = "rounded",
    max_se: float = 0.25,
    level: float = 0.95,
    ln_k_bounds=(-12.0, 8.0),
    noise: str = "relative",
    integrator=None,
) -> pd.DataFrame:
    """Which combinations of the rate constants the data determine: the eigenvectors of the Fisher information
    at the fit (in ln k), best determined first. One row each: `combination` (`"k1^1 k2^-1"`: `kj` is the rate
    constant of the structure's j-th reaction, exponents scaled to a largest of 1, rounded to halves where within
    0.1 of one), `quantity` (the same named by the reactions, `"k(2A -> Z) · k(Z -> 2A)^-1"`, as `rate_intervals`
    names its rows), `exponents`, `estimate` (the combination's value at the fit), `se` (Wald standard error of its
    logarithm), `low` and `high` (the Wald interval at `level`, `estimate * exp(-/+ z se)`) and `identified`
    (`se <= max_se`). Where a rate constant's own interval is open, the identified rows name what the data fix
    instead (`rate_intervals(combinations="identified")` profiles them at its own fit; `Intervals.combinations`
    is this table there)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    candidate, x0 = _structure(structure, which, threshold, stoichiometry)
    fitted = _fit_one(candidate, dataset, x0, ln_k_bounds, integrator, noise)
    problem, x, sse, integrator = fitted["problem"], fitted["x"], fitted["sse"], fitted["integrator"]
    J = np.asarray(
        _jacobian(
            integrator, problem.field, problem.n_obs, problem.ts, _widened(problem.bounds), problem.arrays(), jnp.asarray(x)
        )
    )
    return _fisher_table(candidate, J, sse, int(np.count_nonzero(np.asarray(problem.weight))), x, level, max_se)


def _fisher_table(candidate, J, sse: float, n: int, x, level: float, max_se: float) -> pd.DataFrame:
    """`identified_combinations`' table from the Jacobian `J` of the residuals at the fit `x` (sum of squares `sse`
    over `n` residuals); `quantity` names each combination by the structure's reactions, as `rate_intervals` names
    the rate constants (`"k(2A -> Z) · k(Z -> 2A)^-1"`)."""
    values, vectors = np.linalg.eigh(J.T @ J / (sse / n))
    z = norm.ppf(0.5 + level / 2)
    equations = candidate.equations()
    rows = []
    for value, vec in sorted(zip(values, vectors.T), key=lambda t: -t[0]):
        scaled = vec / vec[np.argmax(np.abs(vec))]
        halves = np.round(scaled * 2) / 2
        scaled = np.where(np.abs(scaled - halves) <= 0.1, halves, scaled)
        se = float(np.linalg.norm(scaled) / np.sqrt(value)) if value > 0 else np.inf  # the SE of scaled . ln k
        name = " ".join(f"k{j + 1}^{e:.3g}" for j, e in enumerate(scaled) if e != 0)
        quantity = " · ".join(f"k({eq})" + ("" if e == 1 else f"^{e:.3g}") for eq, e in zip(equations, scaled) if e != 0)
        estimate = float(np.exp(scaled @ x))
        with np.errstate(over="ignore"):  # a direction the data do not fix (se ~1e7) overflows to an open interval
            low, high = estimate * np.exp(-z * se), estimate * np.exp(z * se)
        row = {"combination": name, "quantity": quantity, "exponents": scaled.tolist(), "estimate": estimate, "se": se}
        rows.append(row | {"low": low, "high": high, "identified": se <= max_se})
    return pd.DataFrame(rows)


def _fit_one(
    candidate: Candidate, dataset: Dataset, x0, ln_k_bounds, integrator, noise: str = "relative", iterations: int = FIT_ITERATIONS
):
    """The fit on the training experiments: scaled residuals, then (`noise="relative"`) twice reweighted to
    residuals relative to the fitted prediction (generalised least squares with estimated weights)."""
    integrator = integrator or Rosenbrock(substeps=2)
    problem = _Problem.of(candidate, dataset, ln_k_bounds)
    if x0 is None:  # no starting rates: the map's own rate fit (random starts) gives them
        x0 = np.log(np.asarray(fit_rates([candidate], dataset, progress=False).table["rates"].iloc[0]))
    p = candidate.n_reactions
    x = jnp.asarray(x0, dtype=float)
    for rounds in range(3 if noise == "relative" else 1):
        if rounds:
            problem = problem.reweighted(integrator, x)
        xs, sse = _fits(
            integrator, problem.field, problem.n_obs, problem.ts, problem.bounds, iterations, problem.arrays(),
            jnp.ones((1, problem.y0.shape[0])), x[None], jnp.zeros((1, p)), jnp.zeros(1),
        )  # fmt: skip
        x = xs[0]
    return {"problem": problem, "x": np.asarray(x), "sse": float(sse[0]), "integrator": integrator}


def rate_intervals(
    structure,
    dataset: Dataset,
    *,
    which: int | None = None,
    threshold: float = 0.01,
    stoichiometry: str = "rounded",
    level: float = 0.95,
    method: str = "profile",
    combinations: Mapping[str, Sequence[float]] | str | None = None,
    rates: bool = True,
    max_se: float = 0.25,
    grid: int = 10,
    iterations: int = 20,
    n_boot: int = 200,
    n_samples: int = 500,
    n_warmup: int = 300,
    chains: int = 2,
    seed: int = 0,
    ln_k_bounds=(-12.0, 8.0),
    noise: str = "relative",
    integrator=None,
) -> Intervals:
    """Intervals at `level` on every rate constant of `structure` (and on each named combination) from `dataset`.

    **Arguments:**

    - `structure`: what fixes the reactions: a `Mechanism` (its rate constants start the fit), a map
      `Candidate` (started by `fit_rates`), or a result: a `RateFit` (row `which`), a `Discovery` or a
      `FitResult` (start `which`, default the best; a CRNN's weights below `threshold` pruned and the rest
      rounded to whole numbers, or with `stoichiometry="trained"` kept as trained: intervals on the CRNN's own
      rate constants, conditional on its fractional coefficients; a hidden species in quasi-steady state stays so).
      Its species:
      the dataset's observed species, then any hidden ones (they start at zero).
    - `method`: `"profile"` or `"bootstrap"` (module docstring).
    - `combinations`: name -> exponents over the rate constants, e.g. `{"K = k1/k-1": [1, -1, 0]}`; or
      `"identified"`: every combination the Fisher information at the fit determines (Wald standard error of its
      logarithm at most `max_se`; `identified_combinations`), named by its reactions, taken at the final fit
      (after any restart below). `Intervals.combinations` holds the Fisher information's table in any case.
    - `rates`: also every rate constant on its own.
    - `grid`: profile points per side and pass (a second pass extends a side the first did not close);
      `iterations`: Levenberg-Marquardt steps per refit.
    - `n_boot`, `seed`: bootstrap resamples and their seed (and the sampler's).
    - `n_samples`, `n_warmup`, `chains`: NUTS draws per chain after `n_warmup` steps of window adaptation
      (step size, diagonal mass matrix, in coordinates whitened by the Laplace covariance at the fit); the table
      adds the posterior median and the split R-hat.
    - `ln_k_bounds`: the rate constants stay within these (ln); a profile side that reaches them is open.
      Where a profile point fits better than the fit (by more than `RESTART_DEVIANCE`: the fit had not converged,
      as along a ridge of rate constants the data do not fix), the fit is redone from that point and every profile
      again (at most `MAX_RESTARTS` times; `Intervals.restarts`): the estimate is the minimum its interval surrounds.
    - `noise`: `"relative"` (residuals relative to the fitted prediction: multiplicative noise, the study's
      data) or `"scaled"` (the study's scaled residuals, as the map's deviance).
    - `integrator`: the training integrator (default the stiff-safe `Rosenbrock(substeps=2)`, as `fit_rates`).

    **Returns:** `Intervals` (its `table` and, per quantity, the profile or the resampled estimates).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if noise not in NOISE:
        raise ValueError(f"noise must be one of {NOISE}, got {noise!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if grid < 3 or iterations < 1 or n_boot < 10:
        raise ValueError("need grid >= 3, iterations >= 1 and n_boot >= 10")
    identified = isinstance(combinations, str)
    if identified and combinations != "identified":
        raise ValueError(f'combinations must be a mapping of name -> exponents or "identified", got {combinations!r}')
    candidate, x0 = _structure(structure, which, threshold, stoichiometry)
    if list(candidate.species[: len(dataset.species)]) != list(dataset.species):
        raise ValueError(f"the structure's species {list(candidate.species)} must start with the data's {list(dataset.species)}")
    quantities = _quantities(candidate, None if identified else combinations, rates)
    if not quantities and not identified:
        raise ValueError("nothing to bound: rates=False and no combinations")
    t0 = time.perf_counter()
    fitted = _fit_one(candidate, dataset, x0, ln_k_bounds, integrator, noise)
    problem, x_hat, sse_hat, integrator = fitted["problem"], fitted["x"], fitted["sse"], fitted["integrator"]
    n = int(np.count_nonzero(np.asarray(problem.weight)))
    deviance = lambda sse: n * np.log(np.asarray(sse) / n)
    d_hat = float(deviance(sse_hat))
    fit_s = time.perf_counter() - t0
    args = (integrator, problem.field, problem.n_obs, problem.ts, problem.bounds, iterations, problem.arrays())
    n_exp = problem.y0.shape[0]

    def at_fit(x):
        """The Jacobian at the fit `x`, the Fisher information's table and the quantities to bound there."""
        J = np.asarray(_jacobian(*args[:4], _widened(problem.bounds), args[6], jnp.asarray(x)))
        fisher = _fisher_table(candidate, J, sse_hat, n, x, level, max_se)
        named = dict(quantities)
        if identified:  # a combination that is one rate constant on its own is that rate's row
            for _, r in fisher[fisher["identified"]].iterrows():
                named.setdefault(r["quantity"], np.asarray(r["exponents"], dtype=float))
        if not named:
            raise ValueError("nothing to bound: rates=False and the data identify no combination")
        return J, fisher, named

    rows, profiles, samples, restarts = [], {}, {}, 0
    J, fisher, named = at_fit(x_hat)
    if method == "profile":
        for restart in range(MAX_RESTARTS + 1):
            last = restart == MAX_RESTARTS
            stop = None if last else -RESTART_DEVIANCE  # a lower point found: refit at once (the last round: finish)
            rows, profiles, lowest = _profile_rows(args, n_exp, named, x_hat, sse_hat, n, deviance, grid, level,
                                                   ln_k_bounds, problem.bounds, J, stop)  # fmt: skip
            if lowest[0] >= -RESTART_DEVIANCE:
                break
            if last:
                warnings.warn(
                    f"rate_intervals: after {MAX_RESTARTS} refits a profile point still fits better than the fit (by "
                    f"{-lowest[0]:.3g} in deviance): the fit has not converged and an estimate may lie outside its interval",
                    stacklevel=2,
                )
                break
            # a profile found a lower deviance than the fit (which had not converged, e.g. along a ridge): refit
            # from that point at once (the profiles so far are of the wrong minimum) and profile again, so the
            # estimate is the minimum its interval is built around
            x, sse = _fits(*args[:5], FIT_ITERATIONS, args[6], jnp.ones((1, n_exp)), jnp.asarray(lowest[1])[None],
                           jnp.zeros((1, candidate.n_reactions)), jnp.zeros(1))  # fmt: skip
            if not np.isfinite(float(sse[0])) or float(sse[0]) >= sse_hat:  # no better than the point: keep the fit
                x, sse = jnp.asarray(lowest[1])[None], jnp.asarray([sse_hat * np.exp(lowest[0] / n)])
            x_hat, sse_hat = np.asarray(x[0]), float(sse[0])
            d_hat, restarts = float(deviance(sse_hat)), restart + 1
            J, fisher, named = at_fit(x_hat)
    elif method == "nuts":
        draws = _nuts(problem, integrator, x_hat, n, sse_hat, n_samples, n_warmup, chains, seed)
        rows, samples = _posterior_rows(draws, named, x_hat, chains, ln_k_bounds, level)
    else:
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n_exp, np.full(n_exp, 1.0 / n_exp), size=n_boot).astype(float)
        p = candidate.n_reactions
        x, sse = _fits(*args, jnp.asarray(np.sqrt(counts)), jnp.tile(jnp.asarray(x_hat), (n_boot, 1)), jnp.zeros((n_boot, p)),
                       jnp.zeros(n_boot))  # fmt: skip
        x = np.asarray(x)
        ok = np.isfinite(np.asarray(sse))
        alpha = (1 - level) / 2
        for name, c in named.items():
            v = x[ok] @ c
            samples[name] = np.exp(v)
            lo, hi = np.quantile(v, [alpha, 1 - alpha])
            at_bound = lambda t: min(abs(t - e) for e in _reach(c, ln_k_bounds)) < 1e-3
            rows.append(_row(name, c, float(np.exp(c @ x_hat)), 0.0 if at_bound(lo) else float(np.exp(lo)),
                             np.inf if at_bound(hi) else float(np.exp(hi)), method, level))  # fmt: skip
    table = pd.DataFrame(rows)
    mechanism = candidate.mechanism(np.exp(x_hat).tolist())
    timing = {"fit_s": fit_s, "total_s": time.perf_counter() - t0}
    return Intervals(table, mechanism, d_hat, profiles, samples, timing, restarts, fisher)


def _profile_rows(args, n_exp, quantities, x_hat, sse_hat, n, deviance, grid, level, ln_k_bounds, bounds, J,
                  stop_below: float | None = None):  # fmt: skip
    """The profile interval of each quantity around the fit `x_hat` (rows, profiles; `J`: the Jacobian of the
    residuals there), and the lowest deviance any profile point reached relative to the fit's, with that point's
    ln k (`(difference, x)`; a difference below 0: the fit had not converged). With `stop_below`, returns as soon
    as a quantity's profile falls below it (the rows then incomplete: the caller refits)."""
    d_hat = float(deviance(sse_hat))
    cov = np.linalg.pinv(J.T @ J) * (sse_hat / n)
    q = chi2.ppf(level, 1)
    rows, profiles, lowest = [], {}, (0.0, np.asarray(x_hat))
    for name, c in quantities.items():
        v_hat = float(c @ x_hat)
        se = float(np.sqrt(max(c @ cov @ c, 0.0)))
        span = float(np.clip(3 * se, 1e-6, 4.0)) if np.isfinite(se) and se > 0 else 4.0
        lo_end, hi_end = _reach(c, ln_k_bounds)
        values, devs, xs = [v_hat], [0.0], [np.asarray(x_hat)]
        for side in (-1, 1):
            reach = span
            for _ in range(3):  # widen a side that stays below the threshold, up to the bounds
                pts = v_hat + side * np.linspace(reach / grid, reach, grid)
                pts = pts[(pts > lo_end) & (pts < hi_end)]
                if not len(pts):
                    break
                k = len(pts)  # fewer than `grid` near a bound: padded to `grid` (one compilation for every side)
                padded = np.concatenate([pts, np.repeat(pts[-1:], grid - k)])
                starts, held = jnp.tile(jnp.asarray(x_hat), (grid, 1)), jnp.tile(jnp.asarray(c), (grid, 1))
                x, sse = _fits(*args, jnp.ones((grid, n_exp)), starts, held, jnp.asarray(padded))
                x, sse = np.asarray(x)[:k], np.asarray(sse)[:k]
                d = deviance(sse) - d_hat
                values += list(pts)
                devs += list(np.where(np.isfinite(d), d, np.inf))
                xs += list(np.asarray(x))
                if np.nanmax(d) > q:
                    break
                reach *= 4
        order = np.argsort(values)
        values, devs, xs = np.asarray(values)[order], np.asarray(devs)[order], np.asarray(xs)[order]
        devs, xs = _continued(args, n_exp, c, values, devs, xs, grid, lambda sse: deviance(sse) - d_hat)
        if devs.min() < lowest[0]:
            lowest = (float(devs.min()), xs[int(np.argmin(devs))])
            if stop_below is not None and lowest[0] < stop_below:
                return rows, profiles, lowest
        shift = min(devs.min(), 0.0)  # a refit lower than the fit (within RESTART_DEVIANCE) moves the minimum
        devs = devs - shift
        centre = int(np.argmin(devs))
        ends = []
        for walk in (np.arange(centre, -1, -1), np.arange(centre, len(values))):
            end = _crossing(values[walk], devs[walk], q)
            i = walk[np.flatnonzero(devs[walk] >= q)[0]] if end is not None else None
            if i is not None and np.any(np.minimum(np.abs(xs[i] - ln_k_bounds[0]), np.abs(xs[i] - ln_k_bounds[1])) < 1e-3):
                # a rate constant at its bound where the profile crosses: is the data or the bound closing this side?
                # A factor e further out, with the bounds widened by 4 (ln), a side the data close stays above q
                wide, far = _widened(bounds), values[i] + np.sign(values[i] - values[centre])
                _, sse = _fits(*args[:4], wide, *args[5:], jnp.ones((1, n_exp)), jnp.asarray(xs[i])[None],
                               jnp.asarray(c)[None], jnp.asarray([far]))  # fmt: skip
                if deviance(float(sse[0])) - d_hat - shift < q:
                    end = None  # the bound, not the data, closed this side: open
            ends.append(end)
        low, high = ends
        profiles[name] = pd.DataFrame({"value": np.exp(values), "deviance": devs})
        rows.append(_row(name, c, float(np.exp(v_hat)), np.exp(low) if low is not None else 0.0,
                         np.exp(high) if high is not None else np.inf, "profile", level))  # fmt: skip
    return rows, profiles, lowest


def _posterior_rows(draws, quantities, x_hat, chains: int, ln_k_bounds, level: float):
    """The table rows (equal-tailed intervals, posterior median, split R-hat) and samples of NUTS draws."""
    rows, samples = [], {}
    alpha = (1 - level) / 2
    for name, c in quantities.items():
        v = draws @ c
        samples[name] = np.exp(v)
        lo, hi = np.quantile(v, [alpha, 1 - alpha])
        ends = _reach(c, ln_k_bounds)
        near = lambda t: min(abs(t - e) for e in ends) < 0.5  # a tail that runs into the prior's edge: open
        rows.append({**_row(name, c, float(np.exp(c @ x_hat)), 0.0 if near(lo) else float(np.exp(lo)),
                            np.inf if near(hi) else float(np.exp(hi)), "nuts", level),
                     "posterior median": float(np.exp(np.median(v))),
                     "r_hat": float(_split_rhat(v.reshape(chains, -1)))})  # fmt: skip
    return rows, samples


@eqx.filter_jit
def _nuts_chains(integrator, field, n_obs: int, ts, bounds, n_samples: int, n_warmup: int, arrays, n_value, centre, factor,
                 keys, starts):  # fmt: skip
    """NUTS chains with window adaptation (vmapped over the leading axis of `keys` and `starts`), in whitened
    coordinates `z`, `ln k = centre + factor @ z` (`factor`: a Cholesky factor of the Laplace covariance), where
    the posterior is near a unit sphere: a linear change of variables (constant Jacobian), so the draws are
    those of the posterior of ln k, with short trajectories where ln k has a ridge (k1 and k-1 of a fast
    equilibrium: 61 s against 2 s for 30 + 30 steps of two chains on the positive control). Module-level: the
    integrator, field, times, bounds and chain lengths are static, the data arguments, so every call with
    equal shapes reuses one compilation. Returns ln k draws of shape (chains, n_samples, p)."""
    import blackjax

    lo, hi = bounds
    w_in, w_out, y0, ys, weight = arrays

    def logdensity(z):
        x = centre + factor @ z
        r = _residuals(integrator, field, n_obs, ts, _widened(bounds), w_in, w_out, y0, ys, weight, x)
        value = -0.5 * n_value * jnp.log(jnp.sum(r**2))
        inside = jnp.all((x > lo) & (x < hi))
        return jnp.where(inside & jnp.isfinite(value), value, -jnp.inf)

    def chain(key, start):
        warm, sample = jax.random.split(key)
        adapt = blackjax.window_adaptation(blackjax.nuts, logdensity)
        (state, parameters), _ = adapt.run(warm, jnp.linalg.solve(factor, start - centre), num_steps=n_warmup)
        kernel = blackjax.nuts(logdensity, **parameters).step

        def step(state, k):
            state, _ = kernel(k, state)
            return state, centre + factor @ state.position

        _, draws = jax.lax.scan(step, state, jax.random.split(sample, n_samples))
        return draws

    return jax.vmap(chain)(keys, starts)


PRIOR_SD = 20.0  # ln k: the Laplace covariance is regularised by this spread (the width of the default bounds)


def _laplace_factor(problem: _Problem, integrator, x_hat, n_value: int, sse: float) -> np.ndarray:
    """A Cholesky factor of the Laplace covariance of ln k at the fit: `(N / SSE) J'J` (the Hessian of
    `(N/2) ln SSE` in the Gauss-Newton form), plus `1 / PRIOR_SD^2` so that directions the data do not fix keep a
    finite spread."""
    J = np.asarray(_jacobian(integrator, problem.field, problem.n_obs, problem.ts, _widened(problem.bounds),
                             problem.arrays(), jnp.asarray(x_hat)))  # fmt: skip
    precision = (n_value / sse) * (J.T @ J) + np.eye(len(x_hat)) / PRIOR_SD**2
    return np.linalg.cholesky(np.linalg.inv(precision))


def _nuts(problem: _Problem, integrator, x_hat, n_value: int, sse: float, n_samples: int, n_warmup: int, chains: int, seed: int):
    """`chains * n_samples` posterior draws of ln k, one row each, chain by chain (the chains in one vmapped
    batch; batching datasets as well was slower on 2 CPU cores: 34 s against 21 s a dataset for 8, every step
    as deep as the deepest tree of the batch)."""
    try:
        import blackjax  # noqa: F401
    except ImportError as err:  # pragma: no cover - the extra is installed by `make env`
        raise ImportError('method="nuts" needs blackjax: pip install -e ".[bayes]"') from err
    keys = jax.random.split(jax.random.PRNGKey(seed), chains)
    starts = jnp.asarray(x_hat) + 0.01 * jax.random.normal(jax.random.PRNGKey(seed + 1), (chains, len(x_hat)))
    draws = _nuts_chains(
        integrator, problem.field, problem.n_obs, problem.ts, problem.bounds, n_samples, n_warmup, problem.arrays(),
        jnp.asarray(float(n_value)), jnp.asarray(x_hat, dtype=float),
        jnp.asarray(_laplace_factor(problem, integrator, x_hat, n_value, sse)), keys, starts,
    )  # fmt: skip
    draws = np.asarray(draws)
    return draws.reshape(-1, draws.shape[-1])


def _continued(args, n_exp: int, c, values, devs, xs, chunk: int, deviance, passes: int = 3):
    """Profile continuation: points where the profile is not monotone away from its minimum refitted from the
    solutions of both their neighbours, the lowest deviance kept; then the neighbours of every point that
    improved, until none improves (at most `passes`). Each grid point is first fitted from the overall fit; far
    from it `iterations` steps may not converge, which shows as a profile that dips again away from its minimum
    (measured on the nitric-oxide dimer: K's upper end at 0.00317 from the first fits, 0.00425 once converged).
    A monotone profile costs nothing more. Refits run in chunks of the grid's size, so they reuse its
    compilation."""
    devs, xs = np.array(devs, dtype=float), np.array(xs, dtype=float)
    m = len(values)
    index = np.arange(m)
    todo = _not_monotone(devs)
    for _ in range(passes):
        if not todo.any():
            break
        better_any = np.zeros(m, bool)
        for neighbour in (np.maximum(index - 1, 0), np.minimum(index + 1, m - 1)):
            new_x, new_d = np.empty_like(xs), np.full(m, np.inf)
            points = index[todo]
            for i in range(0, len(points), chunk):
                take = points[i : i + chunk]
                pad = np.concatenate([take, np.repeat(take[:1], chunk - len(take))])
                x, sse = _fits(*args, jnp.ones((chunk, n_exp)), jnp.asarray(xs[neighbour[pad]]),
                               jnp.tile(jnp.asarray(c), (chunk, 1)), jnp.asarray(values[pad]))  # fmt: skip
                new_x[take], new_d[take] = np.asarray(x)[: len(take)], np.asarray(deviance(np.asarray(sse)))[: len(take)]
            better = todo & np.isfinite(new_d) & (new_d < devs - 1e-6)
            devs, xs = np.where(better, new_d, devs), np.where(better[:, None], new_x, xs)
            better_any |= better
        near = better_any.copy()
        near[1:] |= better_any[:-1]
        near[:-1] |= better_any[1:]
        todo = (near & ~better_any) | _not_monotone(devs)
        if not better_any.any():
            break
    return devs, xs


def _not_monotone(devs) -> np.ndarray:
    """Points of a profile that lie above their outer neighbour (the one farther from the minimum), or are not
    finite: where a refit from a neighbour's solution can lower the profile."""
    d = np.where(np.isfinite(devs), devs, np.inf)
    centre = int(np.argmin(d))
    out = ~np.isfinite(devs)
    out[centre + 1 :] |= d[centre + 1 :] > np.append(d[centre + 2 :], np.inf) + 1e-6
    if centre > 1:  # (at centre 0 or 1 no point lies below the minimum with an outer neighbour)
        out[1:centre] |= d[1:centre] > d[: centre - 1] + 1e-6
    return out


def _split_rhat(draws) -> float:
    """Split R-hat (Gelman et al.) of one quantity, draws of shape (chains, n)."""
    half = draws.shape[1] // 2
    parts = np.concatenate([draws[:, :half], draws[:, half : 2 * half]])
    m, n = parts.shape
    within = parts.var(axis=1, ddof=1).mean()
    between = n * parts.mean(axis=1).var(ddof=1)
    return float(np.sqrt(((n - 1) / n * within + between / n) / within)) if within > 0 else float("nan")


def _reach(c, ln_k_bounds):
    """The smallest and largest c . ln k with every ln k within the bounds."""
    lo, hi = ln_k_bounds
    return float(np.sum(np.minimum(c * lo, c * hi))), float(np.sum(np.maximum(c * lo, c * hi)))


def _crossing(values, devs, q):
    """The first value (walking away from the minimum) where the deviance reaches q, interpolated linearly in
    the root of the deviance; None where it never does."""
    above = np.flatnonzero(devs >= q)
    if not len(above) or not np.isfinite(devs[above[0]]):  # never reached, or the bounds came first: open
        return None
    i = above[0]
    if i == 0:
        return float(values[0])
    a, b = np.sqrt(max(devs[i - 1], 0.0)), np.sqrt(devs[i])  # the signed root of a deviance is near linear
    return float(values[i - 1] + (np.sqrt(q) - a) / (b - a) * (values[i] - values[i - 1]))


def _row(name, c, estimate, low, high, method, level):
    return {"quantity": name, "exponents": [float(e) for e in c], "estimate": estimate, "low": float(low), "high": float(high),
            "bounded": bool(low > 0 and np.isfinite(high)), "method": method, "level": level}  # fmt: skip
