"""The library learner: a CRNN over a library of elementary reactions, then pruning and simplification.

The seed's CRNN learns continuous stoichiometry and reaches its in-class positive control in none of
its random starts. This learner fixes the stoichiometry to whole numbers instead and learns only which
reactions run:

1. **Library.** Every elementary reaction (at most two reactant molecules, at most `max_products`
   product molecules, whole-number coefficients, mass action) among the observed species and the
   hidden ones (`Z`, or `Z1, Z2, ...`), mass-balanced for one composition of the hidden species.
   One library per candidate composition (given, or every whole-number vector of at most
   `max_hidden_size` units, as `crnn.landscape.hidden_compositions`), each small; reactions that can
   never fire from the initial species are dropped (the reasoning of `crnn.landscape`), and so is a
   library that cannot make every observed species that changes, or one of its hidden species.
2. **Learning.** Each library reaction has its own learnable `ln k`; nothing else is learned. From
   `n_starts` random starts per library (`ln k ~ U(ln_k_range)`, slow rates), full-batch Adam on the
   study's data loss (scaled MAE, `crnn.data_loss`) of the training experiments plus a sparsity
   penalty `sparsity * sum_j (ln k_j - ln_k_min)` that is off for the first 40 % of the epochs and
   then ramps up, through the stiff-safe Rosenbrock solve with its hand-written adjoint. The starts of
   one library are one vmapped batch, through that library's own field (`FixedMassAction`: its
   stoichiometry compiled in, so the solve writes only the nonzero terms); the steps are one
   module-level jitted function whose data and hyperparameters are arguments, compiled once per
   library and batch size. With more than two libraries, each start goes on with its two
   best libraries after a quarter of the epochs (`Training.keep_libraries`).
3. **Pruning.** Each start keeps its library of lowest data loss; reactions whose largest rate along
   the learned model's own trajectories is below `flux_rel` times the largest are dropped.
4. **Refit and simplification.** The rates of what is left are refitted by Levenberg-Marquardt on the
   scaled residuals (warm-started from the learned ones), then stepwise simplification by an
   information criterion (BIC): reactions are removed while a removal lowers it (first the removals
   a linearisation predicts to be cheapest and one bulk removal, then every single reaction, then
   every pair), and when no removal helps, library reactions that a score test favours are tried as
   additions (`_eliminate`). Pairs matter: `X + Y -> 2X` and `X + Y -> 2Y` at equal rates net to
   nothing, and two reactions can stand in for one that is also present or compensate each other;
   removing one of them at a time makes the fit worse, removing both does not. Additions matter: a
   reaction the learning switched off early cannot come back by gradient (its gradient is
   proportional to its rate).
5. **Re-scoring.** Every distinct final mechanism is re-solved on the validation experiments
   (`Simplification.rescore`); `Discovery.ranked` lists them, best validation loss first.

Why a sparsity penalty on `ln k`: Adam moves each parameter by about its learning rate whatever the
size of its gradient, so a reaction the data do not need (zero data gradient) slides down at full
speed to the lower bound, where it carries no flux, while a reaction the data need stays as long as
one e-fold of its rate constant is worth more than `sparsity` in loss. The bias this puts on the
surviving rates is removed by the refit.

Why a resolution in the criterion: on noise-free data the residuals of the true mechanism are the
solver's and the data's rounding (about 1e-6 of the species scales here); spurious reactions at tiny
rates could fit that and look better. The criterion uses `sse / N + resolution^2` in place of the
residual variance `sse / N`, so fits better than `resolution` (1e-4 of the scales) count as equal.
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
import optax
import pandas as pd

from ._data import Dataset
from ._fields import FixedMassAction
from ._loss import data_loss
from ._mechanism import Mechanism
from ._model import mass_action_rates
from ._train import _cosine, _progress, hidden_species_names
from .integrate import Integrator, MassAction, Rosenbrock
from .landscape import Candidate, _elementary_reactions
from .landscape import hidden_compositions as _all_compositions

__all__ = ["Discovery", "Library", "Simplification", "Training", "discover", "enumerate_libraries", "simplify"]

Terms = tuple[tuple[str, int], ...]
Reaction = tuple[Terms, Terms]  # (reactants, products), as in crnn.landscape.Candidate


# ----------------------------------------------------------------------------------------- the library
@dataclasses.dataclass(frozen=True)
class Library:
    """The elementary reactions among `species` for one composition of the hidden species.

    **Fields:**

    - `species`: observed species, then hidden ones.
    - `n_observed`: how many of `species` the data have.
    - `hidden_composition`: the element counts of each hidden species (in the order of `species`), or
      None without mass balance.
    - `reactions`: `(reactants, products)` pairs of `(species, coefficient)` terms.
    """

    species: tuple[str, ...]
    n_observed: int
    hidden_composition: tuple[tuple[int, ...], ...] | None
    reactions: tuple[Reaction, ...]

    @property
    def n_reactions(self) -> int:
        return len(self.reactions)

    @property
    def hidden(self) -> tuple[str, ...]:
        return self.species[self.n_observed :]

    def composition_of(self, used: Sequence[str] | None = None) -> dict[str, list[int]] | None:
        """Hidden species -> element counts (only those in `used`, when given)."""
        if self.hidden_composition is None:
            return None
        return {h: list(z) for h, z in zip(self.hidden, self.hidden_composition) if used is None or h in used}

    def candidate(self, indices: Sequence[int]) -> Candidate:
        """The mechanism made of the library reactions `indices` (a `crnn.landscape.Candidate`)."""
        reactions = tuple(self.reactions[i] for i in indices)
        used = {s for r, p in reactions for s, _ in (*r, *p)}
        comp = self.composition_of(used)
        flat = None if not comp else tuple(v for z in comp.values() for v in z)
        return Candidate(reactions, self.species, flat)

    def mechanism(self, indices: Sequence[int], rates: Sequence[float] | None = None) -> Mechanism:
        """The `Mechanism` (over all of `species`) of the library reactions `indices`."""
        return self.candidate(indices).mechanism(rates)

    def weights(self, n_reactions: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`(w_in, w_out)` of every library reaction, padded with zero rows to `n_reactions`."""
        n_r = self.n_reactions if n_reactions is None else n_reactions
        index = {s: i for i, s in enumerate(self.species)}
        w_in = np.zeros((n_r, len(self.species)))
        w_out = np.zeros((n_r, len(self.species)))
        for j, (r, p) in enumerate(self.reactions):
            for s, c in r:
                w_in[j, index[s]] += c
                w_out[j, index[s]] -= c
            for s, c in p:
                w_out[j, index[s]] += c
        return w_in, w_out

    def equations(self, indices: Sequence[int] | None = None) -> list[str]:
        indices = range(self.n_reactions) if indices is None else indices
        return self.candidate(list(indices)).equations() if len(indices) else []

    @property
    def label(self) -> str:
        if self.hidden_composition is None:
            return "no mass balance"
        return ", ".join(f"{h}={list(z)}" for h, z in zip(self.hidden, self.hidden_composition)) or "no hidden species"


def _reachable(reactions: Sequence[Reaction], initial) -> set[str]:
    """Every species that can appear from `initial` by `reactions` (the closure of `crnn.landscape`)."""
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
    return present


def _whole_vector(value, n_elements: int, what: str) -> tuple[int, ...]:
    try:
        vector = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a vector of whole numbers, got {value!r}") from None
    if vector.shape != (n_elements,) or np.any(vector < 0) or np.any(vector != np.round(vector)) or not np.any(vector):
        raise ValueError(f"{what} must be {n_elements} non-negative whole numbers, not all zero; got {value!r}")
    return tuple(int(v) for v in vector)


def enumerate_libraries(
    observed: Sequence[str],
    initial: Sequence[str],
    composition: Mapping[str, Sequence[int]] | None,
    *,
    hidden_species: int = 1,
    hidden_compositions: Mapping[str, Sequence[int]] | None = None,
    max_products: int = 2,
    max_hidden_size: int = 3,
    required: Sequence[str] | None = None,
) -> list[Library]:
    """Every library of elementary reactions the learner trains on (one per hidden composition).

    **Arguments:**

    - `observed`: the observed species (the data's columns).
    - `initial`: the species an experiment starts with (non-zero in the data's `y0`).
    - `composition`: observed species -> element counts, e.g. `{"A": [1], "B": [3]}` for 3A -> B or
      `{"A": [1, 0], "B": [0, 1], "C": [2, 1]}` for 2A + B -> C; every reaction of a library conserves
      every element. None: no mass balance (one library of every elementary reaction).
    - `hidden_species`: how many hidden species (named as `crnn._train.hidden_species_names`).
    - `hidden_compositions`: hidden species -> element counts (one library); None: every assignment of
      whole-number vectors of at most `max_hidden_size` units (`crnn.landscape.hidden_compositions`),
      without repeats that only swap hidden species.
    - `max_products`: product molecules per reaction (reactant molecules are at most two).
    - `required`: species every library must be able to make (default: all observed species).

    **Returns:** the libraries, each without reactions that can never fire from `initial`, none that
    cannot make every `required` species and every one of its hidden species.
    """
    observed = list(observed)
    if hidden_species < 0:
        raise ValueError(f"hidden_species must be >= 0, got {hidden_species}")
    if max_products < 1:
        raise ValueError(f"max_products must be >= 1, got {max_products}")
    hidden = hidden_species_names(hidden_species, observed) if hidden_species else []
    species = (*observed, *hidden)
    required = observed if required is None else list(required)
    if composition is None:
        if hidden_compositions is not None:
            raise ValueError("hidden_compositions needs a composition of the observed species (mass balance)")
        assignments = [None]
        n_elements = 1
    else:
        if set(composition) != set(observed):
            raise ValueError(
                f"composition must give element counts for exactly the observed species {observed}, got {list(composition)}"
            )
        n_elements = len(next(iter(composition.values()))) if composition else 0
        comp = {s: _whole_vector(composition[s], n_elements, f"composition[{s!r}]") for s in observed}
        if hidden_compositions is not None:
            if set(hidden_compositions) != set(hidden):
                raise ValueError(
                    f"hidden_compositions must give element counts for the hidden species {hidden}, "
                    f"got {list(hidden_compositions)}"
                )
            assignments = [
                tuple(_whole_vector(hidden_compositions[h], n_elements, f"hidden_compositions[{h!r}]") for h in hidden)
            ]
        else:
            if max_hidden_size < 1:
                raise ValueError(f"max_hidden_size must be >= 1, got {max_hidden_size}")
            assignments = list(
                itertools.combinations_with_replacement(_all_compositions(n_elements, max_hidden_size), len(hidden))
            )
    libraries, seen = [], set()
    for assignment in assignments:
        if assignment is None:
            masses = {s: (0,) for s in species}  # every reaction balances
        else:
            masses = {**comp, **dict(zip(hidden, assignment))}
        reactions = _elementary_reactions(list(species), masses, max_products)
        present = _reachable(reactions, initial)
        live = tuple(rx for rx in reactions if all(s in present for s, _ in rx[0]))
        if not live or not set(required) <= present or not set(hidden) <= present:
            continue
        key = frozenset(live)
        if key in seen:
            continue
        seen.add(key)
        libraries.append(Library(species, len(observed), assignment, live))
    return libraries


# ----------------------------------------------------------------------------------------- settings
class Training(eqx.Module):
    """How `discover` learns the rate constants of its libraries (besides `epochs` and `sparsity`).

    **Arguments:**

    - `lr`: Adam's learning rate for `ln k`, cosine-decayed to `lr_decay` times itself over the epochs
      (Adam moves a parameter by about its rate per step: 0.1 over 600 epochs reaches ~30 in ln k).
    - `grad_clip`: each problem's gradient is clipped to this global norm.
    - `delay`, `ramp`: the sparsity penalty is off for the first `delay` of the epochs (a fraction),
      then grows linearly to its full weight over the next `ramp`. Off at first, the whole library
      fits the data (the true mechanism is in it, and an over-complete model seldom sticks in a poor
      minimum); on later, it removes what the fit does not need. Measured on A <=> Z -> B: a penalty
      from the start (even 1e-4) kills the slow back reaction before it is of use, and once a rate
      constant is at its lower bound its gradient (proportional to the rate) cannot bring it back.
    - `ln_k_range`: the random starts draw `ln k` uniform in it: slow rates (k in 0.0025-0.37), so that
      every reaction starts small and grows only as far as the data pull it.
    - `ln_k_bounds`: `ln k` is kept within these bounds (the lower one is where dead reactions go).
    - `integrator`: the training integrator (stiff-safe `Rosenbrock()`).
    - `floor`: concentration floor of the training rate law (whole-number orders need only a tiny one).
    - `eval_every`: epochs per jitted chunk (progress updates between chunks).
    - `screen_at`, `keep_libraries`: with more than `keep_libraries` libraries, after `screen_at` of the
      epochs (before the penalty starts) each start goes on with only its `keep_libraries` libraries of
      lowest data loss; the others stop there (recorded as screened out). Cost: all libraries for a
      quarter of the epochs, two for the rest.
    """

    lr: float = 0.1
    lr_decay: float = 0.01
    grad_clip: float = 10.0
    delay: float = 0.4
    ramp: float = 0.3
    ln_k_range: tuple[float, float] = eqx.field(static=True, default=(-6.0, -1.0))
    ln_k_bounds: tuple[float, float] = eqx.field(static=True, default=(-12.0, 8.0))
    integrator: Rosenbrock = Rosenbrock()
    floor: float = eqx.field(static=True, default=1e-12)
    eval_every: int = eqx.field(static=True, default=100)
    screen_at: float = 0.25
    keep_libraries: int = 2

    def describe(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["integrator"] = self.integrator.describe()
        return out


class Simplification(eqx.Module):
    """How `discover` prunes, refits and simplifies each learned mechanism.

    **Arguments:**

    - `flux_rel`: a reaction whose largest rate along the learned trajectories is below `flux_rel`
      times the largest is pruned.
    - `criterion`: `"bic"` (default: `N ln(s2) + p ln N`) or `"aic"` (`N ln(s2) + 2p`), with N
      scaled residuals on the training experiments, p rate constants, `s2 = sse / N + resolution^2`.
    - `resolution`: scaled residual level below which fits count as equal (see the module docstring).
    - `max_group`: the largest group of reactions removed at once (1: one at a time; 2: pairs too).
    - `screen`: single removals refitted first in each round, those predicted cheapest, besides one
      bulk removal (see `_eliminate`); 0 skips this stage (every single removal, then every group).
    - `additions`: when no removal helps, also try adding library reactions (a score test picks
      `screen` of them to refit): a reaction the learning switched off early is not lost for good.
    - `per_start`: how many libraries of each random start are pruned, refitted and simplified: those
      with the lowest data loss after learning (the others are recorded, not simplified).
    - `iterations`: at most this many Levenberg-Marquardt steps in the refit after pruning;
      `child_iterations` in the refits during elimination (warm-started from the parent's rates).
      Each stops earlier once converged (several rejected steps in a row).
    - `integrator`: the integrator of the refits.
    - `rescore`: the integrator of the validation losses of the final mechanisms: `Rosenbrock(substeps=4)`
      (within ~1e-6 of the species scales of an adaptive solve here, and quick to compile), or
      `crnn.integrate.Adaptive()` as the map re-scores (~20 s more to compile).
    """

    flux_rel: float = 1e-3
    criterion: str = eqx.field(static=True, default="bic")
    resolution: float = 1e-4
    max_group: int = eqx.field(static=True, default=2)
    screen: int = eqx.field(static=True, default=3)
    additions: bool = eqx.field(static=True, default=True)
    per_start: int = eqx.field(static=True, default=1)
    iterations: int = eqx.field(static=True, default=60)
    child_iterations: int = eqx.field(static=True, default=40)
    integrator: Rosenbrock = Rosenbrock()
    rescore: Integrator = Rosenbrock(substeps=4)

    def __check_init__(self):
        if self.criterion not in ("bic", "aic"):
            raise ValueError(f"criterion must be 'bic' or 'aic', got {self.criterion!r}")
        if self.max_group < 1:
            raise ValueError(f"max_group must be >= 1, got {self.max_group}")

    def describe(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["integrator"] = self.integrator.describe()
        out["rescore"] = self.rescore.describe()
        return out

    def score(self, sse, n_values: int, n_params) -> np.ndarray:
        """The information criterion of fits with scaled squared residuals `sse` and `n_params` rate constants."""
        sse, n_params = np.asarray(sse, dtype=float), np.asarray(n_params, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            fit = n_values * np.log(sse / n_values + self.resolution**2)
        penalty = np.log(n_values) if self.criterion == "bic" else 2.0
        return np.where(np.isfinite(sse), fit + penalty * n_params, np.inf)


# ----------------------------------------------------------------------------------------- learning
class _Hyper(eqx.Module):
    """The numbers of a learning run as arrays: arguments of the jitted steps, not constants in them."""

    sparsity: jax.Array
    lr: jax.Array
    lr_decay: jax.Array
    grad_clip: jax.Array
    epochs: jax.Array
    delay: jax.Array
    ramp: jax.Array
    bounds: jax.Array


class _Problems(eqx.Module):
    """Every (library, start) problem: its weights (padded rows masked) and the data, all arguments."""

    w_in: jax.Array  # (P, R, n)
    w_out: jax.Array  # (P, R, n)
    mask: jax.Array  # (P, R)
    y0: jax.Array  # (E, n) training initial states, hidden species at zero
    ys: jax.Array  # (E, T, n_observed)
    scale: jax.Array


class _State(eqx.Module):
    ln_k: jax.Array  # (P, R)
    good: jax.Array  # (P, R) the last parameters whose solve and gradient were finite
    opt_state: optax.OptState
    count: jax.Array  # (P,) steps taken
    loss: jax.Array  # (P,) data loss before the last step
    failures: jax.Array  # (P,) steps skipped as non-finite


def _optimizer(hyper: _Hyper) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(hyper.grad_clip), optax.adam(_cosine(hyper.lr, hyper.epochs, hyper.lr_decay)))


@eqx.filter_jit
def _initial_state(hyper: _Hyper, ln_k0) -> _State:
    n = ln_k0.shape[0]
    opt_state = jax.vmap(_optimizer(hyper).init)(ln_k0)
    zero = jnp.zeros((n,), ln_k0.dtype)
    return _State(ln_k0, ln_k0, opt_state, zero, jnp.full((n,), jnp.inf, ln_k0.dtype), jnp.zeros((n,), jnp.int32))


@eqx.filter_jit
def _learn_chunk(integrator, field, ts, length: int, hyper: _Hyper, problems: _Problems, state: _State) -> _State:
    """`length` Adam steps of every problem (vmapped): data loss + ramped sparsity penalty, ln k projected
    onto its bounds. Module-level: integrator, field, times and length are static; data, weights,
    hyperparameters and state are arguments, so equal shapes reuse one compilation."""
    optimizer = _optimizer(hyper)
    lo, hi = hyper.bounds[0], hyper.bounds[1]
    n_obs = problems.ys.shape[-1]

    def objective(ln_k, w_in, w_out, mask, weight):
        pred, ok = integrator.solve(field, (w_in, ln_k, w_out), problems.y0, ts)
        loss = data_loss(pred[..., :n_obs], problems.ys, problems.scale)
        penalty = jnp.sum(jnp.where(mask, ln_k - lo, 0.0))
        return loss + weight * penalty, (loss, ok)

    def one(ln_k, good, opt_state, count, failures, w_in, w_out, mask):
        def step(carry, _):
            ln_k, good, opt_state, count, failures, _ = carry
            progress = (count / hyper.epochs - hyper.delay) / jnp.maximum(hyper.ramp, 1e-9)
            weight = hyper.sparsity * jnp.clip(progress, 0.0, 1.0)
            (value, (loss, ok)), grad = jax.value_and_grad(objective, has_aux=True)(ln_k, w_in, w_out, mask, weight)
            finite = ok & jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
            grad = jnp.where(finite & mask, grad, 0.0)
            updates, new_opt = optimizer.update(grad, opt_state, ln_k)
            moved = jnp.where(mask, jnp.clip(ln_k + updates, lo, hi), lo)
            # after a failure: back to the last good parameters, with fresh moments (another step from there)
            fresh = optimizer.init(good)
            ln_k_next = jnp.where(finite, moved, good)
            opt_next = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new_opt, fresh)
            good = jnp.where(finite, ln_k, good)
            return (ln_k_next, good, opt_next, count + 1, failures + (~finite).astype(jnp.int32), loss), None

        init = (ln_k, good, opt_state, count, failures, jnp.asarray(jnp.inf, ln_k.dtype))
        (ln_k, good, opt_state, count, failures, loss), _ = jax.lax.scan(step, init, None, length=length)
        return ln_k, good, opt_state, count, failures, loss

    out = jax.vmap(one)(
        state.ln_k, state.good, state.opt_state, state.count, state.failures, problems.w_in, problems.w_out, problems.mask
    )
    ln_k, good, opt_state, count, failures, loss = out
    return _State(ln_k, good, opt_state, count, loss, failures)


def _groups(libraries_of: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """The batch's positions of each library's problems, in order: (library, positions)."""
    return [(int(lib), np.flatnonzero(libraries_of == lib)) for lib in dict.fromkeys(libraries_of.tolist())]


def _learn_by_library(integrator, fields, ts, length: int, hyper: _Hyper, problems: _Problems, state: _State, libraries_of):
    """`_learn_chunk` on each library's problems with that library's `FixedMassAction` (its stoichiometry
    compiled in: a few terms per reaction instead of n^2, 2-3x faster per step than the dense field, and
    quicker to compile). A library's batch is padded to a power of two (its first problem repeated, the
    copies dropped), so one library compiles at most a few batch sizes. Every problem's arithmetic is its
    own: the grouping changes no number, the field only the rounding of its sums (fused multiply-adds)."""
    for lib, rows in _groups(libraries_of):
        size = 1 << (len(rows) - 1).bit_length()
        index = jnp.asarray(np.concatenate([rows, np.repeat(rows[:1], size - len(rows))]))
        take = lambda a: a[index]
        part = _Problems(take(problems.w_in), take(problems.w_out), take(problems.mask), problems.y0, problems.ys, problems.scale)
        new = _learn_chunk(integrator, fields[lib], ts, length, hyper, part, jax.tree.map(take, state))
        at = jnp.asarray(rows)
        state = jax.tree.map(lambda a, b: a.at[at].set(b[: len(rows)]), state, new)
    return state


@eqx.filter_jit
def _fluxes(integrator, field, ts, problems: _Problems, ln_k):
    """Data loss and the largest rate of every reaction along each problem's own trajectories."""
    n_obs = problems.ys.shape[-1]

    def one(w_in, lk, w_out, mask):
        ys, ok = integrator.solve(field, (w_in, lk, w_out), problems.y0, ts)
        rates = mass_action_rates(jnp.maximum(ys, 0.0), w_in, lk)  # (E, T, R), exact mass action
        flux = jnp.where(mask, jnp.max(rates, axis=(0, 1)), 0.0)
        loss = data_loss(ys[..., :n_obs], problems.ys, problems.scale)
        return jnp.where(ok, loss, jnp.inf), jnp.where(ok, flux, jnp.inf)

    return jax.vmap(one)(problems.w_in, ln_k, problems.w_out, problems.mask)


# ----------------------------------------------------------------------------------------- refits
def _levenberg_marquardt(residual, x0, mask, iterations: int, lo, hi, fd_step: float = 1e-7, patience: int = 6):
    """Minimise `sum residual(x)^2` over the entries of `x` where `mask` (one problem), x within [lo, hi].

    **Returns:** `(x, cost, H)`, H the Gauss-Newton matrix `J^T J` at x (for removal predictions).

    The damping of `crnn.landscape`'s Levenberg-Marquardt, with two changes for speed: the Jacobian is
    taken by forward differences at all p shifted points at once (`vmap`), so the compiled size does
    not grow with p (a fixed-grid solve is smooth in x; forward-mode differentiation through the
    solve was ~300x slower on CPU), and the iterations stop after `patience` rejected steps in a row
    (converged) or at `iterations`.
    """
    p = x0.shape[0]
    eye = jnp.eye(p)
    shifts = eye * fd_step

    def cost(x):
        r = residual(x)
        return jnp.where(jnp.all(jnp.isfinite(r)), jnp.sum(r**2), jnp.inf), r

    def jacobian(x, r):
        J = ((jax.vmap(residual)(x[None, :] + shifts) - r[None, :]) / fd_step).T
        return jnp.where(mask[None, :] & jnp.isfinite(J), J, 0.0)

    def body(carry):
        x, c, r, mu, i, rejected = carry
        J = jacobian(x, r)
        JTJ = J.T @ J
        g = J.T @ jnp.where(jnp.isfinite(r), r, 0.0)
        A = JTJ + mu * jnp.diag(jnp.diag(JTJ)) + (1e-12 + 1e-9 * mu) * eye
        delta = jnp.clip(-jnp.linalg.solve(A, g) * mask, -2.0, 2.0)  # at most a factor e^2 per iteration
        x_new = jnp.clip(x + delta, lo, hi)
        c_new, r_new = cost(x_new)
        better = c_new < c
        x = jnp.where(better, x_new, x)
        r = jnp.where(better, r_new, r)
        c = jnp.where(better, c_new, c)
        mu = jnp.where(better, mu * 0.3, mu * 4.0)
        return x, c, r, mu, i + 1, jnp.where(better, 0, rejected + 1)

    def going(carry):
        return (carry[4] < iterations) & (carry[5] < patience) & jnp.isfinite(carry[1])

    c0, r0 = cost(x0)
    init = (x0, c0, r0, jnp.asarray(1e-2, x0.dtype), jnp.asarray(0), jnp.asarray(0))
    x, c, r, *_ = jax.lax.while_loop(going, body, init)
    J = jacobian(x, r)
    return x, c, J.T @ J


@eqx.filter_jit
def _refit_chunk(integrator, field, ts, iterations: int, bounds, w_in, w_out, mask, ln_k0, y0, ys, scale):
    """Levenberg-Marquardt of a chunk of mechanisms (vmapped), each from its own start `ln_k0`:
    `(ln_k, sse, J^T J)` of each.

    Module-level and jitted once per shape: data, bounds and weights are arguments."""
    n_obs = ys.shape[-1]
    lo, hi = bounds[0], bounds[1]

    def one(a, c, m, x0):
        def residual(x):
            pred, _ = integrator.solve(field, (a, x, c), y0, ts)
            return ((pred[..., :n_obs] - ys) / scale).ravel()

        return _levenberg_marquardt(residual, x0, m, iterations, lo, hi)

    return jax.vmap(one)(w_in, w_out, mask, ln_k0)


@eqx.filter_jit
def _losses(integrator, field, n_obs: int, w_in, ln_k, w_out, y0, ys, scale, ts):
    """Data loss of every mechanism of a chunk (vmapped); inf where the solve fails."""

    def one(a, b, c):
        pred, ok = integrator.solve(field, (a, b, c), y0, ts)
        return jnp.where(ok, data_loss(pred[..., :n_obs], ys, scale), jnp.inf)

    return jax.vmap(one)(w_in, ln_k, w_out)


@eqx.filter_jit
def _addition_scores(integrator, field, ts, w_in, ln_k, w_out, slot, step, y0, ys, scale):
    """Score test of adding one reaction to each mechanism of a chunk (vmapped).

    Row `slot` of each mechanism is the candidate; it is solved once at rate `step` and once switched
    off. With `col` the change of the scaled residuals per unit of its rate constant and `r` the
    residuals without it, returns `(col . r, col . col)`: adding it at rate `k` changes the sum of
    squares by `2 k col . r + k^2 col . col` to first order, at best by `-(col . r)^2 / col . col`
    at `k = -col . r / col . col` (when that is positive)."""
    n_obs = ys.shape[-1]

    def one(a, lk, c, j):
        def residual(value):
            pred, ok = integrator.solve(field, (a, lk.at[j].set(value), c), y0, ts)
            return ((pred[..., :n_obs] - ys) / scale).ravel(), ok

        off, ok_off = residual(jnp.log(step) - 60.0)
        on, ok_on = residual(jnp.log(step))
        col = (on - off) / step
        ok = ok_off & ok_on
        return jnp.where(ok, col @ off, 0.0), jnp.where(ok, col @ col, 0.0)

    return jax.vmap(one)(w_in, ln_k, w_out, slot)


REFIT_CHUNK = 4  # mechanisms per compiled refit; the last chunk of a batch is padded


def _padded_size(n: int) -> int:
    """Rate constants per refit problem: the next of 4, 8, 16, ... (each size is one compilation, ~10 s)."""
    return max(4, 1 << (n - 1).bit_length())


@dataclasses.dataclass(frozen=True)
class _Fit:
    """Refitted rate constants of one mechanism: `ln_k` (library reaction -> ln k), the scaled sum of
    squared residuals `sse` on the training experiments, and the Gauss-Newton matrix `gn` (J^T J in
    ln k, reactions in sorted order) at the fit."""

    ln_k: dict
    sse: float
    gn: np.ndarray

    def removal_costs(self, groups: Sequence[Sequence[int]]) -> np.ndarray:
        """Predicted rise of `sse` when each group of reactions is removed and the rest refitted.

        The linearisation in k (not ln k) of "optimal brain surgeon": setting `k_G = 0` with the others
        re-optimised raises sse by `1^T [(H^-1)_GG]^-1 1`, H the Gauss-Newton matrix in ln k (the rates
        cancel). A screen for which removals to refit, not a decision."""
        order = sorted(self.ln_k)
        where = {j: i for i, j in enumerate(order)}
        H = self.gn + 1e-12 * np.eye(len(order)) * max(float(np.max(np.abs(np.diag(self.gn)))), 1e-300)
        inverse = np.linalg.pinv(H)
        out = []
        for g in groups:
            idx = [where[j] for j in g]
            block = inverse[np.ix_(idx, idx)]
            with np.errstate(all="ignore"):
                out.append(float(np.sum(np.linalg.pinv(block))))
        return np.asarray(out)


@dataclasses.dataclass
class _Context:
    """What the refits and re-scoring of one `discover` call share."""

    libraries: list[Library]
    dataset: Dataset
    simplification: Simplification
    bounds: tuple[float, float]
    floor: float
    ts: tuple[float, ...]
    y0: np.ndarray  # all experiments, hidden species at zero
    scale: np.ndarray
    fits: dict = dataclasses.field(default_factory=dict)  # (library, reactions) -> _Fit

    @property
    def n_values(self) -> int:
        return int(self.dataset.ys[self.dataset.train].size)

    def score(self, key) -> float:
        return float(self.simplification.score(self.fits[key].sse, self.n_values, len(key[1])))

    def _pack(self, items, size: int):
        """Padded `(w_in, ln_k, w_out, mask)` of `(library, reaction indices, ln k)` items, `size` rows each."""
        n_s = len(self.libraries[0].species)
        w_in, w_out = np.zeros((len(items), size, n_s)), np.zeros((len(items), size, n_s))
        ln_k = np.full((len(items), size), self.bounds[0] - 50.0)  # padded rows have no stoichiometry either
        mask = np.zeros((len(items), size), bool)
        for i, (lib, idx, values) in enumerate(items):
            a, c = self.libraries[lib].weights()
            w_in[i, : len(idx)], w_out[i, : len(idx)] = a[list(idx)], c[list(idx)]
            ln_k[i, : len(idx)] = values
            mask[i, : len(idx)] = True
        return w_in, ln_k, w_out, mask

    def additions(self, keys: Sequence, step: float = 1e-6) -> dict:
        """For each structure of `keys`: library reaction -> (predicted fall of sse, ln k) of adding it alone."""
        items, owners = [], []
        for key in keys:
            lib, reactions = key
            idx = sorted(reactions)
            fit = self.fits[key]
            for j in range(self.libraries[lib].n_reactions):
                if j not in reactions:
                    items.append((lib, [*idx, j], [*(fit.ln_k[i] for i in idx), np.log(step)]))
                    owners.append((key, j, len(idx)))
        out: dict = {key: {} for key in keys}
        if not items:
            return out
        by_size: dict = {}
        for item, owner in zip(items, owners):
            by_size.setdefault(_padded_size(len(item[1])), []).append((item, owner))
        tr = self.dataset.train
        data = (jnp.asarray(self.y0[tr]), jnp.asarray(self.dataset.ys[tr]), jnp.asarray(self.scale))
        for size, group in sorted(by_size.items()):
            group = group + [group[0]] * ((-len(group)) % REFIT_CHUNK)
            w_in, ln_k, w_out, _ = self._pack([g[0] for g in group], size)
            slot = np.array([g[1][2] for g in group])
            for i in range(0, len(group), REFIT_CHUNK):
                part = slice(i, i + REFIT_CHUNK)
                g, q = _addition_scores(
                    self.simplification.integrator, MassAction(self.floor), self.ts, jnp.asarray(w_in[part]),
                    jnp.asarray(ln_k[part]), jnp.asarray(w_out[part]), jnp.asarray(slot[part]), step, *data,
                )  # fmt: skip
                for (_, (key, j, _)), gi, qi in zip(group[part], np.asarray(g), np.asarray(q)):
                    k = -gi / qi if qi > 0 else 0.0
                    out[key][j] = (gi * gi / qi if k > 0 else 0.0, float(np.log(k)) if k > 0 else self.bounds[0])
        return out

    def refit(self, jobs: Mapping, iterations: int, progress=None) -> None:
        """Fit `jobs` (key -> warm-start ln k per reaction) not yet fitted; results into `fits`."""
        todo = [(k, v) for k, v in jobs.items() if k not in self.fits]
        by_size: dict[int, list] = {}
        for key, start in todo:
            by_size.setdefault(_padded_size(len(key[1])), []).append((key, start))
        tr = self.dataset.train
        y0, ys, scale = jnp.asarray(self.y0[tr]), jnp.asarray(self.dataset.ys[tr]), jnp.asarray(self.scale)
        bounds = jnp.asarray(self.bounds, dtype=float)
        lo, hi = self.bounds
        field = MassAction(self.floor)
        for size, items in sorted(by_size.items()):
            items = items + [items[0]] * ((-len(items)) % REFIT_CHUNK)
            packed = [
                (lib, sorted(reactions), np.clip([start[j] for j in sorted(reactions)], lo, hi))
                for (lib, reactions), start in items
            ]
            w_in, ln_k0, w_out, mask = self._pack(packed, size)
            ln_k0 = np.where(mask, ln_k0, lo)
            for i in range(0, len(items), REFIT_CHUNK):
                part = slice(i, i + REFIT_CHUNK)
                x, cost, gn = _refit_chunk(
                    self.simplification.integrator, field, self.ts, iterations, bounds, jnp.asarray(w_in[part]),
                    jnp.asarray(w_out[part]), jnp.asarray(mask[part]), jnp.asarray(ln_k0[part]), y0, ys, scale,
                )  # fmt: skip
                x, cost, gn = np.asarray(x), np.asarray(cost), np.asarray(gn)
                for j, ((lib, reactions), _) in enumerate(items[part]):
                    p = len(reactions)
                    rates = dict(zip(sorted(reactions), x[j, :p].tolist()))
                    self.fits[(lib, reactions)] = _Fit(rates, float(cost[j]), gn[j, :p, :p])
                if progress is not None:
                    progress.update(len({k for k, _ in items[part]}))

    def validation_losses(self, keys: Sequence) -> dict:
        """Data loss of each fitted mechanism on the validation experiments (solved with `Simplification.rescore`)."""
        keys = list(keys)
        if not keys:
            return {}
        n_r = max(lib.n_reactions for lib in self.libraries)
        padded = keys + [keys[0]] * ((-len(keys)) % REFIT_CHUNK)
        items = [(lib, sorted(r), [self.fits[(lib, r)].ln_k[j] for j in sorted(r)]) for lib, r in padded]
        w_in, ln_k, w_out, _ = self._pack(items, n_r)
        va = self.dataset.validation
        y0, ys, scale = jnp.asarray(self.y0[va]), jnp.asarray(self.dataset.ys[va]), jnp.asarray(self.scale)
        n_obs = len(self.dataset.species)
        out = []
        for i in range(0, len(padded), REFIT_CHUNK):
            part = slice(i, i + REFIT_CHUNK)
            weights = (jnp.asarray(w_in[part]), jnp.asarray(ln_k[part]), jnp.asarray(w_out[part]))
            loss = _losses(self.simplification.rescore, MassAction(self.floor), n_obs, *weights, y0, ys, scale, self.ts)
            out.extend(np.asarray(loss).tolist())
        return dict(zip(keys, out))


def _eliminate(context: _Context, starts: Sequence, progress=None) -> dict:
    """Stepwise simplification from every structure of `starts`; returns key -> list of steps.

    Each step is `(change, reactions, next key)`, `change` "-" (removed) or "+" (added); the last key
    of the chain is the final mechanism. Each structure moves through these stages:

    - `screen`: refit only the `screen` single removals predicted cheapest (`_Fit.removal_costs`) and
      one bulk removal (the prefix of reactions, cheapest first, with the lowest predicted criterion);
    - `singles`: when none of those lowers the criterion, every single removal;
    - `groups`: when none of those does, every pair (and larger groups among reactions with one
      reactant side, up to `max_group`);
    - `additions` (with `Simplification.additions`): when no removal helps, the `screen` library
      reactions whose addition a score test predicts to lower the sum of squares most.

    The first stage whose best refit lowers the criterion moves the structure there (and back to
    `screen`); when the last stage finds nothing, the structure is final. The criterion falls with
    every move, so this ends. Predictions only choose which moves to refit: a structure is final only
    when no single removal and no group lowers the refitted criterion. All structures advance
    together, one stage at a time, so that each round's refits form one batch; a structure reached
    twice is fitted once.
    """
    s = context.simplification
    stages = ["screen", "singles"] + (["groups"] if s.max_group >= 2 else []) + (["additions"] if s.additions else [])
    path: dict = {}
    pending = {(key, "screen") for key in starts}
    while pending:
        adds = context.additions([key for key, stage in pending if stage == "additions"])
        children: dict = {}
        options: dict = {}
        for key, stage in pending:
            lib, reactions = key
            fit = context.fits[key]
            if stage == "additions":
                ranked = sorted(((gain, j, lnk) for j, (gain, lnk) in adds[key].items() if gain > 0), reverse=True)
                for _, j, lnk in ranked[: max(s.screen, 1)]:
                    child = (lib, frozenset(reactions) | {j})
                    children.setdefault(child, {**fit.ln_k, j: lnk})
                    options.setdefault((key, stage), []).append(("+", (j,), child))
                continue
            for group in _candidates(context, key, stage):
                rest = frozenset(reactions) - set(group)
                if rest:
                    children.setdefault((lib, rest), fit.ln_k)
                    options.setdefault((key, stage), []).append(("-", group, (lib, rest)))
        context.refit(children, s.child_iterations, progress)
        advance = set()
        for key, stage in pending:
            best = min(options.get((key, stage), []), key=lambda m: (context.score(m[2]), len(m[2][1])), default=None)
            if best is not None and context.score(best[2]) < context.score(key):
                path[key] = best
                advance.add((best[2], "screen"))
            elif stage != stages[-1]:
                advance.add((key, stages[stages.index(stage) + 1]))
            else:
                path[key] = None
        pending = {(k, stage) for k, stage in advance if k not in path}
    chains = {}
    for key in starts:
        steps, k = [], key
        while path.get(k) is not None:
            change, group, k = path[k]
            steps.append((change, group, k))
        chains[key] = steps
    return chains


def _candidates(context: _Context, key, stage: str) -> list[tuple[int, ...]]:
    """The groups of reactions whose removal a stage of `_eliminate` refits."""
    s = context.simplification
    lib, reactions = key
    reactions = sorted(reactions)
    library = context.libraries[lib]
    if len(reactions) <= 1:
        return []
    if stage == "singles":
        return [(j,) for j in reactions]
    if stage == "groups":
        out = list(itertools.combinations(reactions, 2))
        one_side = lambda g: len({frozenset(library.reactions[j][0]) for j in g}) == 1
        for size in range(3, min(s.max_group, len(reactions) - 1) + 1):  # larger groups: one reactant side only
            out += [g for g in itertools.combinations(reactions, size) if one_side(g)]
        return out
    if s.screen == 0:
        return []
    fit = context.fits[key]
    single = fit.removal_costs([(j,) for j in reactions])
    order = [reactions[i] for i in np.argsort(single, kind="stable")]
    out = [(j,) for j in order[: s.screen]]
    prefixes = [tuple(order[:m]) for m in range(2, len(order))]
    if prefixes:
        rise = fit.removal_costs(prefixes)
        predicted = s.score(fit.sse + np.maximum(rise, 0.0), context.n_values, len(reactions) - np.arange(2, len(order)))
        out.append(prefixes[int(np.argmin(predicted))])
    return out


def simplify(
    mechanism: Mechanism,
    dataset: Dataset,
    *,
    simplification: Simplification | None = None,
    ln_k_bounds: tuple[float, float] = (-12.0, 8.0),
    floor: float = 1e-12,
) -> tuple[Mechanism, list[list[str]]]:
    """Refit the rates of a whole-number `mechanism` and simplify it by backward elimination (`discover`'s step 4).

    **Arguments:**

    - `mechanism`: over the data's species, then any hidden ones (which start at zero); its rates are
      the refit's start.
    - `dataset`: fitted on its training experiments.
    - `simplification`: the settings (`Simplification()`).

    **Returns:** `(simplified, removed)`: the simplified mechanism with refitted rates, and the groups of
    equations removed, in order.
    """
    simplification = simplification or Simplification()
    candidate = Candidate.from_mechanism(mechanism, mechanism.species)
    observed = list(dataset.species)
    if list(mechanism.species[: len(observed)]) != observed:
        raise ValueError(f"mechanism must list the data's species {observed} first, got {list(mechanism.species)}")
    library = Library(tuple(mechanism.species), len(observed), None, candidate.reactions)
    simplification = dataclasses.replace(simplification, additions=False)  # nothing outside the mechanism to add
    context = _make_context([library], dataset, simplification, ln_k_bounds, floor)
    key = (0, frozenset(range(library.n_reactions)))
    context.refit({key: dict(enumerate(np.log(mechanism.rates)))}, simplification.iterations)
    chain = _eliminate(context, [key])[key]
    final = chain[-1][2] if chain else key
    rates = context.fits[final].ln_k
    idx = sorted(final[1])
    removed = [library.equations(group) for change, group, _ in chain if change == "-"]
    return library.mechanism(idx, [float(np.exp(rates[j])) for j in idx]), removed


def _make_context(libraries, dataset, simplification, bounds, floor) -> _Context:
    n_hidden = len(libraries[0].species) - len(dataset.species)
    y0 = np.concatenate([dataset.y0, np.zeros((dataset.n_experiments, n_hidden))], axis=1)
    ts = tuple(np.asarray(dataset.ts, dtype=float).tolist())
    return _Context(libraries, dataset, simplification, tuple(bounds), floor, ts, y0, np.asarray(dataset.scale()))


# ----------------------------------------------------------------------------------------- result
@dataclasses.dataclass
class Discovery:
    """What `discover` returns.

    **Fields:**

    - `species`: observed species, then hidden ones.
    - `n_observed`: how many of them the data have.
    - `libraries`: the `Library` of each hidden composition trained on.
    - `starts`: one row per random start: `start`, `library` (index into `libraries` of the final
      mechanism), `hidden composition`, `mechanism` (final equations and rates, `Mechanism.parse`-able),
      `reactions`, `criterion` (the information criterion on the training experiments), `train sse`,
      `validation loss` (adaptive, exact mass action).
    - `runs`: one row per library and start: `learned loss` (data loss after learning, or where it was
      screened out), `screened out` (see `Training.keep_libraries`), `simplified`
      (whether this library was among the start's `Simplification.per_start` best), `kept`
      (reactions with flux), `pruned` (equations dropped for carrying no flux), `eliminated` (the groups
      of equations removed by backward elimination, in order), `final` (equations), `criterion`.
    - `ranked`: the distinct final mechanisms, best validation loss first: `mechanism`, `starts`
      (how many starts found it), `start list`, `validation loss`, `criterion`, `reactions`,
      `hidden composition`, `rates`.
    - `config`: every setting, as plain values; `timing`: seconds of each stage and in all.
    """

    species: tuple[str, ...]
    n_observed: int
    libraries: list[Library]
    starts: pd.DataFrame
    runs: pd.DataFrame
    ranked: pd.DataFrame
    config: dict
    timing: dict
    _finals: list = dataclasses.field(default_factory=list, repr=False)  # per start: (library, reaction indices, rates)

    @property
    def n_starts(self) -> int:
        return len(self.starts)

    def mechanism(self, start: int | None = None) -> Mechanism:
        """The final mechanism of random start `start` (over all of `species`), or the best on validation."""
        if start is None:
            if self.ranked.empty:
                raise ValueError("no start ended with a mechanism")
            start = int(self.ranked.iloc[0]["start list"][0])
        if not 0 <= start < self.n_starts:
            raise ValueError(f"start must be in [0, {self.n_starts}), got {start}")
        lib, idx, rates = self._finals[start]
        return self.libraries[lib].mechanism(idx, rates).with_species(self.species)

    def table(self, start: int | None = None) -> pd.DataFrame:
        """One row per reaction of `mechanism(start)`: equation, rate, orders, total order."""
        return self.mechanism(start).table()


# ----------------------------------------------------------------------------------------- discover
def _check(dataset, hidden_species, n_starts, epochs, sparsity, composition, mass_balance):
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a crnn.Dataset, got {type(dataset).__name__}")
    if not dataset.train.any() or not dataset.validation.any():
        raise ValueError("the dataset needs both training and validation experiments (its split)")
    if not isinstance(hidden_species, (int, np.integer)) or hidden_species < 0:
        raise ValueError(f"hidden_species must be a whole number >= 0, got {hidden_species!r}")
    if n_starts < 1:
        raise ValueError(f"n_starts must be >= 1, got {n_starts}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not sparsity >= 0:
        raise ValueError(f"sparsity must be >= 0, got {sparsity}")
    if composition is None and mass_balance:
        raise ValueError(
            "composition is required with mass_balance=True: give the element counts of every observed species, "
            'e.g. composition={"A": [1], "B": [3]} for 3A -> B (or pass mass_balance=False for a library without balance)'
        )


def discover(
    dataset: Dataset,
    hidden_species: int = 1,
    *,
    composition: Mapping[str, Sequence[int]] | None = None,
    hidden_compositions: Mapping[str, Sequence[int]] | None = None,
    mass_balance: bool = True,
    n_starts: int = 32,
    seed: int = 0,
    epochs: int = 600,
    sparsity: float = 3e-3,
    max_products: int = 2,
    max_hidden_size: int = 3,
    training: Training | None = None,
    simplification: Simplification | None = None,
    progress: bool | None = None,
) -> Discovery:
    """Learn an elementary mechanism from `dataset` with a CRNN over libraries of elementary reactions.

    See the module docstring for the algorithm (library, learning with a sparsity penalty, pruning,
    refit, backward elimination by an information criterion, validation).

    **Arguments:**

    - `dataset`: a `Dataset`; its training experiments are fitted, its validation ones re-score the result.
    - `hidden_species`: unobserved species (start at zero): `Z`, or `Z1, Z2, ...`.
    - `composition`: observed species -> element counts (`{"A": [1], "B": [3]}`); required with
      `mass_balance` (the default), unused without.
    - `hidden_compositions`: hidden species -> element counts, e.g. `{"Z": [2]}` (one library); default:
      every whole-number composition of at most `max_hidden_size` units (one library each).
    - `mass_balance`: every library reaction conserves every element; False: one library of every
      elementary reaction among the species (much larger).
    - `n_starts`: random starts per library; `seed`: of their draws.
    - `epochs`: Adam steps; `sparsity`: weight of the penalty `sum_j (ln k_j - ln_k_min)`.
    - `max_products`: product molecules per reaction; `max_hidden_size`: units of a hidden composition.
    - `training`: `Training()` settings (learning rate, schedule of the penalty, start range, bounds, integrator).
    - `simplification`: `Simplification()` settings (flux threshold, criterion, groups, refits).
    - `progress`: tqdm bars; None shows them unless the environment variable `CRNN_PROGRESS` is `0`.

    **Returns:** a `Discovery`.
    """
    _check(dataset, hidden_species, n_starts, epochs, sparsity, composition, mass_balance)
    training = training or Training()
    simplification = simplification or Simplification()
    t_start = time.perf_counter()
    observed = list(dataset.species)
    initial = [s for s, v in zip(observed, np.any(dataset.y0 > 0, axis=0)) if v]
    changing = [s for i, s in enumerate(observed) if np.ptp(dataset.ys[:, :, i]) > 0]
    libraries = enumerate_libraries(
        observed, initial, composition if mass_balance else None, hidden_species=hidden_species,
        hidden_compositions=hidden_compositions if mass_balance else None, max_products=max_products,
        max_hidden_size=max_hidden_size, required=changing,
    )  # fmt: skip
    if not libraries:
        raise ValueError(
            "the library is empty: no mass-balanced elementary reaction makes every changing observed species "
            f"{changing} from the initial species {initial} (check composition, hidden_species, max_products, max_hidden_size)"
        )
    species = libraries[0].species
    n_lib, n_r = len(libraries), max(lib.n_reactions for lib in libraries)
    lo, hi = training.ln_k_bounds
    plain = lambda mapping: None if mapping is None else {k: list(v) for k, v in mapping.items()}
    config = {
        "hidden_species": hidden_species, "composition": plain(composition), "hidden_compositions": plain(hidden_compositions),
        "mass_balance": mass_balance, "n_starts": n_starts, "seed": seed, "epochs": epochs, "sparsity": sparsity,
        "max_products": max_products, "max_hidden_size": max_hidden_size, "training": training.describe(),
        "simplification": simplification.describe(), "libraries": [lib.label for lib in libraries],
        "library sizes": [lib.n_reactions for lib in libraries], "dataset": dataset.metadata,
    }  # fmt: skip

    # -- learning: every (library, start) one problem of one vmapped batch
    weights = [lib.weights(n_r) for lib in libraries]
    w_in = np.repeat(np.stack([w for w, _ in weights]), n_starts, axis=0)
    w_out = np.repeat(np.stack([w for _, w in weights]), n_starts, axis=0)
    mask = np.repeat(np.stack([np.arange(n_r) < lib.n_reactions for lib in libraries]), n_starts, axis=0)
    rng = np.random.default_rng(seed)
    ln_k0 = np.where(mask, rng.uniform(*training.ln_k_range, size=mask.shape), lo)
    context = _make_context(libraries, dataset, simplification, (lo, hi), training.floor)
    tr = dataset.train
    problems = _Problems(
        jnp.asarray(w_in), jnp.asarray(w_out), jnp.asarray(mask), jnp.asarray(context.y0[tr]), jnp.asarray(dataset.ys[tr]),
        jnp.asarray(context.scale),
    )  # fmt: skip
    number = lambda v: jnp.asarray(v, dtype=float)
    hyper = _Hyper(
        number(sparsity), number(training.lr), number(training.lr_decay), number(training.grad_clip), number(epochs),
        number(training.delay), number(training.ramp), number([lo, hi]),
    )  # fmt: skip
    field = MassAction(training.floor)
    fields = [FixedMassAction.of(*lib.weights(n_r), training.floor) for lib in libraries]
    libraries_of = np.repeat(np.arange(n_lib), n_starts)  # the library of each problem of the batch
    state = _initial_state(hyper, jnp.asarray(ln_k0))
    bar = _progress(epochs, progress, f"learn {n_lib} librar{'y' if n_lib == 1 else 'ies'} x {n_starts} starts")
    t0 = time.perf_counter()
    done = 0
    active = np.arange(n_lib * n_starts)  # the problems still trained
    screened_loss = np.full(n_lib * n_starts, np.nan)  # data loss where a problem was screened out
    screen_at = int(round(training.screen_at * epochs / training.eval_every)) * training.eval_every
    while done < epochs:
        length = min(training.eval_every, epochs - done)
        state = _learn_by_library(training.integrator, fields, context.ts, length, hyper, problems, state, libraries_of)
        loss = np.asarray(state.loss)
        done += length
        bar.update(length)
        bar.set_postfix(loss=f"{np.nanmin(np.where(np.isfinite(loss), loss, np.nan)):.3e}" if np.isfinite(loss).any() else "n/a")
        if done == screen_at and n_lib > training.keep_libraries and done < epochs:
            # each start goes on with its `keep_libraries` libraries of lowest data loss
            ranks = np.argsort(
                np.argsort(np.where(np.isfinite(loss), loss, np.inf).reshape(n_lib, n_starts), axis=0, kind="stable"), axis=0
            )
            keep = np.flatnonzero(ranks.reshape(-1) < training.keep_libraries)
            screened_loss[active] = loss
            active = active[keep]
            libraries_of = libraries_of[keep]
            take = lambda tree: jax.tree.map(lambda a: a[jnp.asarray(keep)], tree)
            state = take(state)
            problems = _Problems(
                *(take(getattr(problems, f)) for f in ("w_in", "w_out", "mask")), problems.y0, problems.ys, problems.scale
            )
    bar.close()
    learn_s = time.perf_counter() - t0

    # -- pruning by flux
    t0 = time.perf_counter()
    trained = np.asarray(state.ln_k)
    learned_loss, flux = (np.asarray(a) for a in _fluxes(training.integrator, field, context.ts, problems, state.ln_k))
    position = {int(p): i for i, p in enumerate(active)}
    runs = []
    for p in range(n_lib * n_starts):
        lib, start = divmod(p, n_starts)
        n = libraries[lib].n_reactions
        if p not in position:
            runs.append({"library": lib, "start": start, "ln_k": None, "learned loss": float(screened_loss[p]), "kept": (),
                         "screened out": True})  # fmt: skip
            continue
        i = position[p]
        fl = flux[i, :n]
        keep = np.ones(n, bool) if not np.all(np.isfinite(fl)) else fl >= simplification.flux_rel * fl.max()
        runs.append({"library": lib, "start": start, "ln_k": trained[i, :n], "learned loss": float(learned_loss[i]),
                     "kept": tuple(np.flatnonzero(keep).tolist()), "screened out": False})  # fmt: skip
    # each start simplifies only its `per_start` libraries of lowest learned loss
    for start in range(n_starts):
        by_loss = lambda r: (r["screened out"] or not np.isfinite(r["learned loss"]), r["learned loss"])
        mine = sorted((r for r in runs if r["start"] == start), key=by_loss)
        for rank, r in enumerate(mine):
            r["simplified"] = rank < simplification.per_start and bool(r["kept"])

    # -- refit and backward elimination (all runs together, each structure fitted once)
    keys = {(r["library"], frozenset(r["kept"])): dict(enumerate(r["ln_k"].tolist())) for r in runs if r["simplified"]}
    bar = _progress(len(keys), progress, "refits")
    bar.unit = "mechanism"
    context.refit(keys, simplification.iterations, bar)
    bar.total = None
    chains = _eliminate(context, list(keys), bar)
    bar.close()
    simplify_s = time.perf_counter() - t0

    # -- each start: the lowest criterion over its libraries; validation of the distinct finals
    t0 = time.perf_counter()
    for r in runs:
        key = (r["library"], frozenset(r["kept"]))
        lib = libraries[r["library"]]
        r["pruned"] = [] if r["screened out"] else lib.equations([j for j in range(lib.n_reactions) if j not in r["kept"]])
        if not r["simplified"]:
            r.update(eliminated=[], added=[], steps=[], final=None, criterion=np.inf)
            continue
        chain = chains[key]
        final = chain[-1][2] if chain else key
        steps = [(change, lib.equations(g)) for change, g, _ in chain]
        r.update(eliminated=[e for c, e in steps if c == "-"], added=[e[0] for c, e in steps if c == "+"], steps=steps)
        r.update(final=final, criterion=context.score(final))
    finals = {r["final"] for r in runs if r["final"] is not None}
    validation = context.validation_losses(sorted(finals, key=lambda k: (k[0], sorted(k[1]))))
    rescore_s = time.perf_counter() - t0

    start_rows, final_list = [], []
    for s in range(n_starts):
        mine = [r for r in runs if r["start"] == s and r["final"] is not None]
        best = min(mine, key=lambda r: r["criterion"], default=None)
        if best is None:
            final_list.append((0, [], []))
            start_rows.append({"start": s, "library": None, "hidden composition": None, "mechanism": "", "reactions": 0,
                               "criterion": np.inf, "train sse": np.inf, "validation loss": np.inf})  # fmt: skip
            continue
        lib, reactions = best["final"]
        idx = sorted(reactions)
        rates_ln, sse = context.fits[best["final"]].ln_k, context.fits[best["final"]].sse
        rates = [float(np.exp(rates_ln[j])) for j in idx]
        library = libraries[lib]
        mech = library.mechanism(idx, rates)
        used = {sp for rx in mech.reactions for sp in (*rx.reactants, *rx.products)}
        final_list.append((lib, idx, rates))
        start_rows.append(
            {
                "start": s,
                "library": lib,
                "hidden composition": library.composition_of(used),
                "mechanism": mech.format(digits=12, rate_digits=12),
                "reactions": len(idx),
                "criterion": best["criterion"],
                "train sse": sse,
                "validation loss": validation[best["final"]],
            }
        )
    starts = pd.DataFrame(start_rows)
    run_table = pd.DataFrame(
        [
            {
                "library": r["library"], "start": r["start"], "learned loss": r["learned loss"],
                "screened out": r["screened out"], "simplified": r["simplified"],
                "kept": libraries[r["library"]].equations(r["kept"]), "pruned": r["pruned"], "eliminated": r["eliminated"],
                "added": r["added"], "steps": r["steps"],
                "final": [] if r["final"] is None else libraries[r["library"]].equations(sorted(r["final"][1])),
                "criterion": r["criterion"],
            }
            for r in runs
        ]
    )  # fmt: skip
    ranked = _rank(starts, libraries, final_list)
    timing = {"learn_s": learn_s, "simplify_s": simplify_s, "rescore_s": rescore_s, "total_s": time.perf_counter() - t_start,
              "refits": len(context.fits)}  # fmt: skip
    return Discovery(species, len(observed), libraries, starts, run_table, ranked, config, timing, final_list)


def _rank(starts: pd.DataFrame, libraries, finals) -> pd.DataFrame:
    groups: dict = {}
    for s, (lib, idx, _) in enumerate(finals):
        if not idx:
            continue
        key = (lib, tuple(idx))
        groups.setdefault(key, []).append(s)
    rows = []
    for (lib, idx), members in groups.items():
        first = starts.iloc[members[0]]
        rows.append(
            {
                "mechanism": "; ".join(libraries[lib].equations(idx)),
                "starts": len(members),
                "start list": members,
                "validation loss": first["validation loss"],
                "criterion": first["criterion"],
                "reactions": len(idx),
                "hidden composition": first["hidden composition"],
                "rates": finals[members[0]][2],
                "text": first["mechanism"],
            }
        )
    columns = [
        "mechanism",
        "starts",
        "start list",
        "validation loss",
        "criterion",
        "reactions",
        "hidden composition",
        "rates",
        "text",
    ]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["validation loss", "criterion"], kind="stable").reset_index(drop=True)
