"""The exhaustive reference: every elementary mechanism over the observed species plus one hidden species.

A CRNN's random starts are judged against this map. It lists every mechanism that is

- elementary: whole-number coefficients, at most two reactant molecules per reaction (uni- or
  bimolecular) and at most `max_products` product molecules, mass action (orders = reactant
  coefficients);
- mass-balanced for some composition of the hidden species in units of the observed ones (for
  3A -> B: A = 1, B = 3, Z = n whole);
- made of 1 to `max_reactions` distinct reactions (a reversible pair counts as two), none of them
  dead (every reaction's reactants can appear from the initial species), producing every observed
  species;

then fits the rate constants of every candidate to the same data (vmapped over candidates with
the stiff-safe Rosenbrock solver) and ranks them by validation loss and by an information
criterion. Candidates whose validation loss is within `factor` (1.1) of the true model's form the
noise-floor set: the mechanisms the data cannot tell apart.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ._data import Dataset
from ._loss import data_loss
from ._mechanism import Mechanism, Reaction
from .integrate import Adaptive, MassAction, Rosenbrock

__all__ = [
    "Candidate",
    "RateFit",
    "enumerate_mechanisms",
    "fit_rates",
    "hidden_compositions",
    "round_mechanism",
    "rounded_reactions",
]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One elementary mechanism (rate constants still to be fitted)."""

    reactions: tuple[tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]], ...]  # (reactants, products)
    species: tuple[str, ...]
    hidden_composition: tuple[int, ...] | None  # None: the hidden species takes no part

    @classmethod
    def from_mechanism(cls, mechanism: Mechanism, species: Sequence[str]) -> Candidate:
        """The structure of `mechanism` (whole-number coefficients) over `species`; rates are dropped."""
        species = tuple(species)

        def terms(side):
            if any(abs(c - round(c)) > 1e-9 for c in side.values()):
                raise ValueError(f"coefficients must be whole numbers, got {dict(side)}")
            return tuple((s, int(round(side[s]))) for s in species if s in side)

        reactions = tuple((terms(r.reactants), terms(r.products)) for r in mechanism.reactions)
        hidden = species[-1]
        uses = any(hidden in dict(r) or hidden in dict(p) for r, p in reactions)
        return cls(reactions, species, None if not uses else ())

    @property
    def key(self) -> frozenset:
        """Identifies the structure whatever the order of reactions and terms."""
        return frozenset((frozenset(r), frozenset(p)) for r, p in self.reactions)

    @property
    def n_reactions(self) -> int:
        return len(self.reactions)

    def equations(self) -> list[str]:
        side = lambda terms: " + ".join(f"{c}{s}" if c > 1 else s for s, c in terms)
        return [f"{side(r)} -> {side(p)}" for r, p in self.reactions]

    @property
    def label(self) -> str:
        return "; ".join(self.equations())

    def mechanism(self, rates: Sequence[float] | None = None) -> Mechanism:
        rates = [1.0] * self.n_reactions if rates is None else rates
        reactions = tuple(Reaction(dict(r), dict(p), float(k)) for (r, p), k in zip(self.reactions, rates))
        return Mechanism(self.species, reactions)

    def uses_hidden(self) -> bool:
        hidden = self.species[-1]
        return any(hidden in dict(r) or hidden in dict(p) for r, p in self.reactions)


def hidden_compositions(n_elements: int, max_size: int) -> list[tuple[int, ...]]:
    """Every non-zero whole-number composition with at most `max_size` units in all."""
    out = []
    for total in range(1, max_size + 1):
        for combo in itertools.product(range(total + 1), repeat=n_elements):
            if sum(combo) == total:
                out.append(combo)
    return out


def _terms(combo):
    counts: dict[str, int] = {}
    for s in combo:
        counts[s] = counts.get(s, 0) + 1
    return tuple(counts.items())


def _elementary_reactions(species, composition, max_products):
    mass = lambda terms: tuple(sum(composition[s][e] * c for s, c in terms) for e in range(len(composition[species[0]])))
    sides = {
        n: [_terms(c) for c in itertools.combinations_with_replacement(species, n)] for n in range(1, max(2, max_products) + 1)
    }
    reactions = []
    for reactants in sides[1] + sides[2]:
        for n in range(1, max_products + 1):
            for products in sides[n]:
                if dict(products) != dict(reactants) and mass(products) == mass(reactants):
                    reactions.append((reactants, products))
    return reactions


def _live(reactions, initial, observed):
    """Every reaction can fire from the initial species, and every observed species appears."""
    present = set(initial)
    changed = True
    while changed:
        changed = False
        for r, p in reactions:
            if all(s in present for s, _ in r):
                new = {s for s, _ in p} - present
                if new:
                    present |= new
                    changed = True
    return all(all(s in present for s, _ in r) for r, _ in reactions) and set(observed) <= present


def enumerate_mechanisms(
    composition: Mapping[str, Sequence[int]],
    initial: Sequence[str],
    *,
    hidden: str = "Z",
    max_reactions: int = 3,
    max_products: int = 2,
    max_hidden_size: int = 3,
) -> list[Candidate]:
    """Every elementary, mass-balanced mechanism over the observed species plus `hidden`.

    **Arguments:**

    - `composition`: observed species -> element counts, e.g. `{"A": [1], "B": [3]}` for 3A -> B
      (one element, A's unit) or `{"A": [1, 0], "B": [0, 1], "C": [2, 1]}` for 2A + B -> C.
    - `initial`: the species an experiment starts with.
    - `hidden`: name of the hidden species; its composition runs over every whole-number vector of
      at most `max_hidden_size` units.
    - `max_reactions`: reactions per mechanism (each direction of a reversible pair counts).
    - `max_products`: product molecules per reaction.

    **Returns:** the candidates, duplicates removed (a mechanism not using the hidden species is
    listed once), none with a dead reaction, each producing every observed species.
    """
    observed = list(composition)
    n_elements = len(next(iter(composition.values())))
    if any(len(v) != n_elements for v in composition.values()):
        raise ValueError("every species needs the same number of element counts")
    species = [*observed, hidden]
    candidates, seen = [], set()
    for z in hidden_compositions(n_elements, max_hidden_size):
        comp = {**{s: tuple(v) for s, v in composition.items()}, hidden: z}
        reactions = _elementary_reactions(species, comp, max_products)
        for size in range(1, max_reactions + 1):
            for subset in itertools.combinations(reactions, size):
                if not _live(subset, initial, observed):
                    continue
                uses_hidden = any(hidden in dict(r) or hidden in dict(p) for r, p in subset)
                key = (frozenset(subset), z if uses_hidden else None)
                if key in seen:
                    continue
                seen.add(key)
                candidates.append(Candidate(tuple(subset), tuple(species), z if uses_hidden else None))
    return candidates


# ----------------------------------------------------------------------------------------- rate fits
@dataclasses.dataclass
class RateFit:
    """Rate constants of every candidate fitted to one dataset (`fit_rates`).

    `table` has one row per candidate: `mechanism` (equations), `reactions`, `hidden composition`,
    `rates`, `train loss`, `validation loss` (re-solved adaptively, exact mass action), `validation
    loss per experiment` (a list), `sse` (scaled squared residuals on the training experiments), `aic`,
    `bic`, `deviance` (`N ln(sse / N)`: -2 log-likelihood up to a constant, Gaussian residuals with their
    variance profiled out), `at bound` (a rate constant at
    `ln_k_bounds`: the loss may still fall beyond it), `validation rank`, `bic rank`.
    """

    candidates: list[Candidate]
    table: pd.DataFrame
    timing: dict

    def noise_floor(self, reference_loss: float, factor: float = 1.1) -> pd.DataFrame:
        """The candidates whose validation loss is within `factor` of `reference_loss`."""
        return self.table[self.table["validation loss"] <= factor * reference_loss]

    def members(self, reference: int = 0, threshold: float = 10.0) -> pd.DataFrame:
        """The candidates the data do not reject against candidate `reference` (e.g. the refitted truth): their
        deviance exceeds its deviance by at most `threshold` (`NOISE_FLOOR_DEVIANCE`)."""
        return self.table[self.table["deviance"] - self.table["deviance"].iloc[reference] <= threshold]


def _padded_weights(candidates: Sequence[Candidate]):
    n_r = max(c.n_reactions for c in candidates)
    n_s = len(candidates[0].species)
    w_in = np.zeros((len(candidates), n_r, n_s))
    w_out = np.zeros((len(candidates), n_r, n_s))
    active = np.zeros((len(candidates), n_r), bool)
    for i, c in enumerate(candidates):
        m_in, _, m_out = c.mechanism().to_weights()
        w_in[i, : c.n_reactions], w_out[i, : c.n_reactions] = m_in, m_out
        active[i, : c.n_reactions] = True
    return w_in, w_out, active


EXACT = MassAction(0.0)  # exact mass action, max(y, 0) ** order: how every reported loss is scored
RATE_FIT_CHUNK = 8  # most candidates per compiled rate fit (fewer: the next power of two), so calls share compilations


@eqx.filter_jit
def _rate_losses(integrator, field, n_obs, w_in, ln_k, w_out, y0, ys, scale, ts, train):
    """Per candidate (vmapped; `integrator` an `Adaptive`): data loss and scaled sum of squared residuals of the
    experiments where `train`, data loss of the others, and each experiment's data loss. One solve of every
    experiment (one trace and compilation for both subsets); a subset with a failed solve gets infinite losses."""
    val = ~train

    def one(a, b, c):
        pred, ok = integrator.solve_each(field, (a, b, c), y0, ts)  # ok per experiment
        pred = jnp.where(ok[:, None, None], pred[..., :n_obs], ys)  # a failed solve adds nothing to either subset's sums
        residual = (pred - ys) / scale
        per_experiment = jnp.sum(jnp.mean(jnp.abs(residual), axis=1), axis=-1)  # each experiment's data loss
        ok_train, ok_val = jnp.all(ok | val), jnp.all(ok | train)
        sse = jnp.sum(jnp.where(train[:, None, None], residual**2, 0.0))
        train_loss = jnp.where(ok_train, data_loss(pred, ys, scale, train), jnp.inf)
        val_loss = jnp.where(ok_val, data_loss(pred, ys, scale, val), jnp.inf)
        each = jnp.where(jnp.where(train, ok_train, ok_val), per_experiment, jnp.inf)
        return train_loss, jnp.where(ok_train, sse, jnp.inf), val_loss, each

    return jax.vmap(one)(w_in, ln_k, w_out)


@eqx.filter_jit
def _fit_chunk(integrator, field, n_obs, iterations, ts, w_in, w_out, mask, bounds, ln_k0, y0, ys, scale):
    """Levenberg-Marquardt of every candidate of a chunk from every start (vmapped over both).

    Module-level and jitted once per shape: the data, bounds and weights are arguments."""

    def one(a, c, m, b, x0):
        def residual(x):
            pred, _ = integrator.solve(field, (a, jnp.clip(x, b[0], b[1]), c), y0, ts)
            return ((pred[..., :n_obs] - ys) / scale).ravel()

        return _levenberg_marquardt(residual, x0, m, iterations)

    per_start = jax.vmap(one, in_axes=(None, None, None, None, 0))
    return jax.vmap(per_start)(w_in, w_out, mask, bounds, ln_k0)


def _levenberg_marquardt(residual, x0, mask, iterations: int, fd_step: float = 1e-6):
    """Minimise `sum residual(x)^2` over the entries of `x` where `mask`, from `x0` (one problem).

    Jacobians by central finite differences of `residual` (a fixed-grid solve is smooth in x);
    a non-finite trial is rejected like a worse one.
    """
    p = x0.shape[0]
    eye = jnp.eye(p)

    def cost(x):
        r = residual(x)
        return jnp.where(jnp.all(jnp.isfinite(r)), jnp.sum(r**2), jnp.inf), r

    def jacobian(x):
        # the 2p perturbed solves as one batched solve: traced and compiled once, vectorised across perturbations
        steps = jnp.concatenate([eye, -eye]) * fd_step
        r = jax.vmap(residual)(x[None, :] + steps)
        cols = (r[:p] - r[p:]) / (2 * fd_step)  # (p, n_residuals)
        return jnp.where(mask[None, :], cols.T, 0.0)

    def body(carry, _):
        x, c, r, mu = carry
        J = jacobian(x)
        JTJ = J.T @ J
        g = J.T @ r
        A = JTJ + mu * jnp.diag(jnp.diag(JTJ)) + (1e-12 + 1e-9 * mu) * eye
        delta = -jnp.linalg.solve(A, g) * mask
        delta = jnp.clip(delta, -2.0, 2.0)  # at most a factor e^2 per iteration
        x_new = x + delta
        c_new, r_new = cost(x_new)
        better = c_new < c
        x = jnp.where(better, x_new, x)
        r = jnp.where(better, r_new, r)
        c = jnp.where(better, c_new, c)
        mu = jnp.where(better, mu * 0.3, mu * 4.0)
        return (x, c, r, mu), None

    c0, r0 = cost(x0)
    (x, c, _, _), _ = jax.lax.scan(body, (x0, c0, r0, jnp.asarray(1e-2)), None, length=iterations)
    return x, c


def fit_rates(
    candidates: Sequence[Candidate],
    dataset: Dataset,
    *,
    n_starts: int = 4,
    iterations: int = 60,
    ln_k_range: tuple[float, float] = (-3.0, 3.0),
    ln_k_bounds=(-12.0, 8.0),
    seed: int = 0,
    integrator=None,
    floor: float = 1e-12,
    progress: bool | None = None,
) -> RateFit:
    """Fit the rate constants of every candidate (stoichiometry fixed) to `dataset`.

    Every candidate is fitted from `n_starts` random `ln k ~ U(ln_k_range)` by Levenberg-Marquardt
    on the scaled residuals of the training experiments (`iterations` steps, Jacobians by finite
    differences in ln k, which stays within `ln_k_bounds`: one (low, high) pair, or one pair per
    candidate), vmapped over candidates and starts,
    with the stiff-safe `Rosenbrock(substeps=2)` solver by default and the rate law floored at
    `floor` (the solver works with logarithms; whole-number orders need no more than a tiny floor).
    Candidates are fitted in chunks of `RATE_FIT_CHUNK` (8; fewer candidates: the next power of two,
    the last chunk padded), so that calls share compilations. Each candidate keeps its best start, re-solved with an
    adaptive implicit solver (Kvaerno5) and exact mass action (`EXACT`, no floor) for the reported
    losses (the data loss, i.e. scaled mean absolute error, as everywhere in the study).

    Information criteria from the scaled squared residuals on the training experiments
    (N values, p rate constants): `aic = N ln(sse / N) + 2p`, `bic = N ln(sse / N) + p ln N`.
    """
    from ._train import _progress

    integrator = integrator or Rosenbrock(substeps=2)
    candidates = list(candidates)
    if not candidates:
        raise ValueError("no candidates to fit")
    observed = list(dataset.species)
    if list(candidates[0].species[: len(observed)]) != observed:
        raise ValueError(f"candidates are over {candidates[0].species}, the data over {observed}")
    t0 = time.perf_counter()
    w_in, w_out, active = _padded_weights(candidates)
    n_c, n_r, n_s = w_in.shape
    bounds = np.broadcast_to(np.asarray(ln_k_bounds, dtype=float), (n_c, 2)).copy()
    if np.any(bounds[:, 0] >= bounds[:, 1]):
        raise ValueError(f"ln_k_bounds must be (low, high) with low < high, got {ln_k_bounds}")
    rng = np.random.default_rng(seed)
    ln_k0 = rng.uniform(*ln_k_range, size=(n_c, n_starts, n_r))
    ln_k0 = np.where(active[:, None, :], np.clip(ln_k0, bounds[:, None, :1], bounds[:, None, 1:]), bounds[:, None, :1])
    scale = jnp.asarray(dataset.scale())
    ts = tuple(np.asarray(dataset.ts, dtype=float).tolist())
    y0 = np.concatenate([dataset.y0, np.zeros((dataset.n_experiments, n_s - len(observed)))], axis=1)
    tr, va = dataset.train, dataset.validation
    y0_tr, ys_tr = jnp.asarray(y0[tr]), jnp.asarray(dataset.ys[tr])
    n_obs = len(observed)
    chunk = min(RATE_FIT_CHUNK, 1 << (n_c - 1).bit_length())
    pad = (-n_c) % chunk
    padded = lambda a: np.concatenate([a, np.repeat(a[:1], pad, axis=0)]) if pad else a
    arrays = [padded(a) for a in (w_in, w_out, active, bounds, ln_k0)]
    xs, costs = [], []
    bar = _progress(n_c + pad, progress, f"rate fits of {n_c} candidates")
    bar.unit = "candidate"
    for i in range(0, n_c + pad, chunk):
        part = [jnp.asarray(a[i : i + chunk]) for a in arrays]
        x, cost = _fit_chunk(integrator, MassAction(floor), n_obs, iterations, ts, *part, y0_tr, ys_tr, scale)
        xs.append(np.asarray(x))
        costs.append(np.asarray(cost))
        bar.update(chunk)
    bar.close()
    x, cost = np.concatenate(xs)[:n_c], np.concatenate(costs)[:n_c]
    pick = np.argmin(np.where(np.isfinite(cost), cost, np.inf), axis=1)
    best = np.clip(x[np.arange(n_c), pick], bounds[:, :1], bounds[:, 1:])
    train_s = time.perf_counter() - t0

    rescore = Adaptive()
    args = (rescore, EXACT, n_obs, jnp.asarray(w_in), jnp.asarray(best), jnp.asarray(w_out))
    losses = _rate_losses(*args, jnp.asarray(y0), jnp.asarray(dataset.ys), scale, ts, jnp.asarray(tr))
    train_loss, sse, val_loss, each = (np.asarray(a) for a in losses)
    val_each = each[:, va]
    n_values = int(ys_tr.size)
    p = np.array([c.n_reactions for c in candidates])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_term = n_values * np.log(sse / n_values)
    at_bound = (best <= bounds[:, :1] + 1e-6) | (best >= bounds[:, 1:] - 1e-6)
    rows = []
    for i, c in enumerate(candidates):
        rows.append(
            {
                "mechanism": c.label,
                "reactions": c.n_reactions,
                "hidden composition": None if c.hidden_composition is None else list(c.hidden_composition),
                "rates": np.exp(best[i, : c.n_reactions]).tolist(),
                "train loss": float(train_loss[i]),
                "validation loss": float(val_loss[i]),
                "validation loss per experiment": val_each[i].tolist(),
                "sse": float(sse[i]),
                "deviance": float(log_term[i]),
                "aic": float(log_term[i] + 2 * p[i]),
                "bic": float(log_term[i] + p[i] * np.log(n_values)),
                "at bound": bool(np.any(at_bound[i, : c.n_reactions])),
            }
        )
    table = pd.DataFrame(rows)
    table["validation rank"] = table["validation loss"].rank(method="min").astype(int)
    table["bic rank"] = table["bic"].rank(method="min").astype(int)
    return RateFit(candidates, table, {"fit_s": train_s, "total_s": time.perf_counter() - t0})


# ----------------------------------------------------------------------------------------- rounding
def _balance(candidate: Candidate, composition: Mapping[str, Sequence[int]], max_hidden_size: int):
    """The composition of the hidden species that balances every reaction, or None."""
    hidden = candidate.species[-1]
    n_elements = len(next(iter(composition.values())))
    for z in [(0,) * n_elements, *hidden_compositions(n_elements, max_hidden_size)]:
        comp = {**{s: np.asarray(v) for s, v in composition.items()}, hidden: np.asarray(z)}
        if all(np.array_equal(sum(comp[s] * c for s, c in r), sum(comp[s] * c for s, c in p)) for r, p in candidate.reactions):
            uses = candidate.uses_hidden()
            if uses == any(z):  # a hidden species that takes part needs a composition, one that does not needs none
                return tuple(z) if uses else None
    return False


def rounded_reactions(species: Sequence[str], w_out) -> list[tuple]:
    """The reactions `(reactants, products)` of net coefficients `w_out` (rows reactions, columns `species`)
    rounded to whole numbers; reactions left with no reactant (a zero-order source is not a mass-action
    reaction) dropped, repeated ones merged."""
    reactions, seen = [], set()
    for row in np.round(np.asarray(w_out, dtype=float)).astype(int):
        reactants = tuple((s, int(-v)) for s, v in zip(species, row) if v < 0)
        products = tuple((s, int(v)) for s, v in zip(species, row) if v > 0)
        key = (frozenset(reactants), frozenset(products))
        if reactants and key not in seen:
            seen.add(key)
            reactions.append((reactants, products))
    return reactions


def round_mechanism(
    mechanism: Mechanism,
    composition: Mapping[str, Sequence[int]],
    *,
    max_hidden_size: int = 6,
    max_reactants: int = 2,
    max_products: int = 3,
) -> tuple[Candidate | None, dict]:
    """Round a learned mechanism to whole numbers and say whether the result is elementary.

    The hidden species (the last of `mechanism.species`) has no unit of its own in the data: its
    coefficients are first divided by the one of its nonzero |coefficients| (or 1) that leaves them
    closest to whole numbers. Every coefficient is then rounded; reactions left with no reactant or
    no change are dropped, and repeated reactions merged.

    **Returns:** `(candidate, info)`; `candidate` is None when nothing is left. `info` has
    `rounding_error` (largest |coefficient - rounded|), `elementary` (at most `max_reactants`
    reactant and `max_products` product molecules in every reaction), `balanced` (some hidden
    composition of at most `max_hidden_size` units balances every reaction), `hidden_composition`.
    """
    species = tuple(mechanism.species)
    _, _, w_out = mechanism.to_weights()
    h = w_out[:, -1]
    scales = [1.0, *sorted({float(abs(v)) for v in h if abs(v) > 1e-9})]
    best_scale, best_err = 1.0, np.inf
    for c in scales:
        scaled = w_out.copy()
        scaled[:, -1] = h / c
        err = float(np.max(np.abs(scaled - np.round(scaled)))) if scaled.size else 0.0
        if err < best_err - 1e-12:
            best_scale, best_err = c, err
    scaled = w_out.copy()
    scaled[:, -1] = h / best_scale
    reactions = rounded_reactions(species, scaled)
    info = {"rounding_error": best_err, "hidden_scale": best_scale}
    if not reactions:
        return None, {**info, "elementary": False, "balanced": False, "hidden_composition": None}
    candidate = Candidate(tuple(reactions), species, None)
    elementary = all(
        sum(c for _, c in r) <= max_reactants and sum(c for _, c in p) <= max_products for r, p in candidate.reactions
    )
    z = _balance(candidate, composition, max_hidden_size)
    candidate = dataclasses.replace(candidate, hidden_composition=z if z is not False else None)
    info.update(elementary=elementary, balanced=z is not False, hidden_composition=None if z is False else z)
    return candidate, info


# The noise floor: a candidate the data do not reject against the true mechanism, refitted on the same data. The test is
# the likelihood ratio: its deviance (-2 log L, Gaussian residuals, variance profiled out) at most 10 above the truth's,
# i.e. the data make it at most e^5 (about 150) times less likely. Not BIC: the truth of a third-order law has one rate
# constant, an elementary split three, and BIC's complexity penalty (2 ln N = 17 here) would reject every split, even one
# that fits as well as the truth; the question here is whether the data tell them apart, not which is simpler.
NOISE_FLOOR_DEVIANCE = 10.0


def judge_fit(
    result,
    dataset: Dataset,
    composition: Mapping[str, Sequence[int]],
    truth: Mechanism,
    *,
    noise_floor: Sequence[Sequence[str]] = (),
    template: Sequence[str] = (),
    threshold: float = 0.01,
    flux_rel: float = 1e-3,
    max_deviance: float = NOISE_FLOOR_DEVIANCE,
    n_starts: int = 2,
    iterations: int = 40,
) -> pd.DataFrame:
    """Every random start of a `FitResult`, rounded to an elementary mechanism and judged against the truth.

    For each start: reactions whose largest rate along the model's own trajectories is below
    `flux_rel` times the largest are dropped, weights below `threshold` pruned, the rest rounded
    (`round_mechanism`) and its rate constants refitted (`fit_rates`: Levenberg-Marquardt, exact
    mass action for the losses) together with the true mechanism's structure, refitted the same way
    on the same data. A start whose learned model cannot be solved (its adaptive re-solve fails) is
    kept and marked (`solve failed`), with nothing dropped for lack of flux.

    Columns: `validation loss` (the start as trained), `solve failed`, `learned`, `rounded`,
    `rounding error`, `elementary`, `balanced`, `refit validation loss`, `refit mechanism` (with its
    refitted rates, `Mechanism.parse`-able), `loss ratio` (refit validation loss over the refitted
    truth's), `delta deviance` (deviance over the refitted truth's, on the training experiments),
    `noise-floor member` (the rounded structure is one of `noise_floor`, a list of equation lists,
    e.g. the map's), `template` (it is `template`), `success`: elementary, balanced, at most
    bimolecular, and not rejected against the truth: `delta deviance <= max_deviance` (default 10, the
    likelihood-ratio test of `NOISE_FLOOR_DEVIANCE`).
    """
    species = tuple(result.species)
    reference = Candidate.from_mechanism(truth.with_species(species), species)
    rows, rounded = [], []
    floor_keys = {frozenset(m) for m in noise_floor}
    for s in range(result.n_starts):
        failed = not result.solve_ok(dataset, s)
        learned = result.mechanism(threshold, start=s, keep=result.active(dataset, s, flux_rel))
        candidate, info = round_mechanism(learned, composition)
        rounded.append(candidate if candidate is not None and info["balanced"] and info["elementary"] else None)
        rows.append(
            {
                "start": s,
                "validation loss": float(result.final_validation_loss[s]),
                "solve failed": failed,
                "learned": str(learned).replace("\n", "; "),
                "rounded": "" if candidate is None else candidate.label,
                "rounding error": info["rounding_error"],
                "elementary": bool(info["elementary"]),
                "balanced": bool(info["balanced"]),
            }
        )
    table = pd.DataFrame(rows)
    unique = list({c.key: c for c in [reference, *(c for c in rounded if c is not None)]}.values())
    fitted = fit_rates(unique, dataset, n_starts=n_starts, iterations=iterations)
    by_key = {c.key: row for c, (_, row) in zip(unique, fitted.table.iterrows())}
    ref = by_key[reference.key]
    texts = {c.key: c.mechanism(by_key[c.key]["rates"]).format(digits=12, rate_digits=12) for c in unique}
    table["refit validation loss"] = [by_key[c.key]["validation loss"] if c is not None else np.nan for c in rounded]
    table["refit mechanism"] = [texts[c.key] if c is not None else "" for c in rounded]
    table["loss ratio"] = table["refit validation loss"] / ref["validation loss"]
    table["delta deviance"] = [by_key[c.key]["deviance"] - ref["deviance"] if c is not None else np.nan for c in rounded]
    table["noise-floor member"] = [c is not None and frozenset(c.equations()) in floor_keys for c in rounded]
    table["template"] = [c is not None and frozenset(c.equations()) == frozenset(template) for c in rounded]
    table["success"] = table["elementary"] & table["balanced"] & (table["delta deviance"] <= max_deviance)
    table.attrs["truth refit"] = {"validation loss": float(ref["validation loss"]), "bic": float(ref["bic"]),
                                  "rates": list(ref["rates"])}  # fmt: skip
    return table
