"""Training a CRNN on a dataset: many random starts at once, a stiff-safe integrator, full reach.

`fit` is a short orchestrator over small pieces:

- `RandomStarts`: how the random starts are drawn (or a given `CRNN` as the one start);
- `Adam`: the optimiser's settings, with its own learning rate for the log rate constants so that
  they can travel many decades within the epoch budget; frozen weights through `optax` masking;
- `TrainState` and `_run_chunk`: full-batch steps with a non-finite guard that keeps each start's
  best parameters. `_run_chunk` is one module-level jitted function whose data and hyperparameters
  are arguments, so a second fit of the same shapes compiles nothing;
- `_train`: the chunked loop with validation, progress and timing;
- re-scoring: every start's kept parameters re-solved with an adaptive implicit solver, and the best
  start chosen on the validation experiments.

Hidden-species treatments (`crnn.hidden`) and integrators (`crnn.integrate`) are small objects with
one interface each, chosen once.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._data import Dataset
from ._loss import data_loss, order_excess
from ._mechanism import Mechanism
from ._model import CRNN
from .hidden import HiddenSpecies, as_hidden
from .integrate import RK4, Adaptive, Integrator, Rosenbrock, as_integrator

__all__ = ["Adam", "FitResult", "RandomStarts", "TrainState", "fit", "hidden_species_names", "make_optimizer"]

# Learned CRNNs are re-scored and predicted adaptively with their own rate law, floor included: with fractional
# orders the floor is part of the model (y^0.3 has an unbounded derivative at zero, which an implicit solver's
# Newton steps cannot take). Mechanisms with whole-number orders (the map, rounded and refitted mechanisms) are
# scored with exact mass action (`crnn.landscape.EXACT`).
RESCORE = Adaptive(solver="kvaerno5", rtol=1e-7, atol=1e-9, max_steps=20_000)


def hidden_species_names(n: int, taken: Sequence[str] = ()) -> list[str]:
    """Names of `n` unobserved species: `Z` for one, `Z1, Z2, ...` for several."""
    names = ["Z"] if n == 1 else [f"Z{i + 1}" for i in range(n)]
    clash = set(names) & set(taken)
    if clash:
        names = [f"_{name}" for name in names]
    return names


# ----------------------------------------------------------------------------------------- model
@dataclasses.dataclass(frozen=True)
class _Model:
    """What a prediction needs, all static: hidden species, integrator, floor, sizes, output times."""

    hidden: HiddenSpecies
    integrator: Integrator
    floor: float
    n_observed: int
    n_hidden: int
    ts: tuple[float, ...]

    def solve(self, params: CRNN, y0_obs):
        """Integrated states (E, T, n_integrated) and whether the solve stayed finite."""
        y0 = self.hidden.initial_state(y0_obs, self.n_hidden)
        return self.integrator.solve(self.hidden.field(self.floor), params.weights(), y0, np.asarray(self.ts))

    def predict(self, params: CRNN, y0_obs):
        """Observed concentrations (E, T, n_observed) and whether the solve stayed finite."""
        ys, ok = self.solve(params, y0_obs)
        return ys[..., : self.n_observed], ok

    def replace(self, **changes) -> _Model:
        return dataclasses.replace(self, **changes)


@eqx.filter_jit
def _split_losses(model: _Model, params_batch, y0, ys, splits, scale, max_total_order):
    """Data losses on each subset of experiments in `splits` (boolean masks) and the order excess, per
    start, from one solve of all experiments (one compilation instead of one per subset)."""

    def one(p):
        pred, ok = model.predict(p, y0)
        losses = [jnp.where(ok, data_loss(pred, ys, scale, experiments=m), jnp.inf) for m in splits]
        return (*losses, order_excess(model.hidden.penalty_orders(p), max_total_order))

    return jax.vmap(one)(params_batch)


# ----------------------------------------------------------------------------------------- result
@dataclasses.dataclass
class FitResult:
    """What `fit` returns.

    **Fields:**

    - `species`: all species of the model, observed first, then hidden.
    - `n_observed`: how many of them the data have.
    - `params`: the best start's `CRNN` (lowest validation loss after re-scoring).
    - `all_params`: every start's kept `CRNN`, stacked along a leading axis.
    - `train_history`: (n_starts, epochs) training data loss before each step.
    - `penalty_history`: (n_starts, epochs) order excess (unweighted) before each step.
    - `validation_history`: (n_starts, n_evaluations) validation loss at `validation_epochs`.
    - `final_train_loss`, `final_validation_loss`: (n_starts,) data losses of each start's kept
      parameters, re-solved with an adaptive implicit solver (`RESCORE`); inf where that failed.
    - `final_penalty`: (n_starts,) order excess of the kept parameters.
    - `failures`: (n_starts,) training steps whose solve or gradient was not finite (skipped; the
      start was put back to its best parameters).
    - `best_start`: index of `params` among the starts.
    - `ok`: False when no start has a finite re-scored loss (then `params` means nothing).
    - `hidden`, `integrator`, `floor`: the hidden-species treatment and training integrator used.
    - `scale`: the species scales of the loss.
    - `config`: every argument of the fit, as plain values, for the record.
    - `timing`: wall time of compilation, training and the whole fit (seconds), epochs per second.
    - `parameter_history`: with `keep_parameter_history`, the stacked parameters of all starts at
      each of `validation_epochs`.
    """

    species: tuple[str, ...]
    n_observed: int
    params: CRNN
    all_params: CRNN
    train_history: np.ndarray
    penalty_history: np.ndarray
    validation_history: np.ndarray
    validation_epochs: np.ndarray
    final_train_loss: np.ndarray
    final_validation_loss: np.ndarray
    final_penalty: np.ndarray
    failures: np.ndarray
    best_start: int
    ok: bool
    hidden: HiddenSpecies
    integrator: Integrator
    floor: float
    scale: np.ndarray
    config: dict
    timing: dict
    parameter_history: list = dataclasses.field(default_factory=list)

    @property
    def n_starts(self) -> int:
        return len(self.final_train_loss)

    def _model(self, ts) -> _Model:
        n_hidden = len(self.species) - self.n_observed
        return _Model(self.hidden, RESCORE, self.floor, self.n_observed, n_hidden, tuple(np.asarray(ts, dtype=float).tolist()))

    def start(self, index: int) -> CRNN:
        """The kept parameters of start `index`."""
        return jax.tree.map(lambda a: a[index], self.all_params)

    def _params(self, start):
        return self.params if start is None else self.start(start)

    def predict(self, y0, ts, start: int | None = None) -> np.ndarray:
        """Observed concentrations of the learned model from `y0` (observed species only).

        Solved with an adaptive implicit solver (Kvaerno5) and the training's concentration floor;
        hidden species start at 0. `y0` is (n_observed,) or (n_experiments, n_observed).
        """
        return self.trajectories(y0, ts, start)[..., : self.n_observed]

    def trajectories(self, y0, ts, start: int | None = None, *, strict: bool = True) -> np.ndarray:
        """Concentrations of every species, hidden ones included, from observed initial states `y0`.

        Shape (n_experiments, n_times, n_species) (no leading axis for a single `y0`). A hidden
        species in quasi-steady state is reported at its quasi-steady value. When the solve fails it
        raises `RuntimeError` (`strict`), or returns states that are not all finite.
        """
        y0 = np.asarray(y0, dtype=float)
        single = y0.ndim == 1
        full, ok = _full_trajectories(self._model(ts), self._params(start), jnp.asarray(np.atleast_2d(y0)))
        if strict and not bool(ok):
            raise RuntimeError("the learned model's adaptive solve failed")
        full = np.asarray(full)
        if not bool(ok):
            full = np.where(np.isfinite(full), full, np.inf)
        return full[0] if single else full

    def solve_ok(self, dataset, start: int | None = None) -> bool:
        """Whether the adaptive re-solve of this start succeeds on every experiment of the dataset."""
        return bool(np.all(np.isfinite(self.trajectories(dataset.y0, dataset.ts, start, strict=False))))

    def fluxes(self, dataset, start: int | None = None, train_only: bool = True) -> np.ndarray:
        """Largest rate of every reaction (in `weights()` order) along the model's own trajectories.

        Rates are evaluated on the full predicted states (hidden species included) of the dataset's
        training experiments (all experiments with `train_only=False`). Useful to drop reactions
        that carry no flux before reading a mechanism. Where the model's adaptive solve fails, every
        flux is inf (nothing can be judged dead).
        """
        rows = dataset.train if train_only else np.ones(dataset.n_experiments, bool)
        states = self.trajectories(dataset.y0[rows], dataset.ts, start, strict=False)
        if not np.all(np.isfinite(states)):
            return np.full(len(self._params(start).ln_k_all), np.inf)
        rates = self.hidden.rates(self._params(start), jnp.asarray(states), self.n_observed, self.floor)
        return np.asarray(rates).reshape(-1, rates.shape[-1]).max(axis=0)

    def active(self, dataset, start: int | None = None, flux_rel: float = 1e-3) -> np.ndarray:
        """Which reactions carry flux: largest rate (`fluxes`) at least `flux_rel` times the largest.

        All True when a flux is not finite (nothing is dropped on a failed solve). Pass it as
        `mechanism(keep=...)` to read a mechanism without its dead reactions.
        """
        fl = self.fluxes(dataset, start)
        if not np.all(np.isfinite(fl)):
            return np.ones_like(fl, dtype=bool)
        return fl >= flux_rel * np.max(fl)

    def mechanism(self, threshold: float = 0.01, start: int | None = None, keep=None) -> Mechanism:
        """The learned mechanism, weights with |w| < `threshold` pruned (as the reference CRNN).

        `keep` (booleans in `weights()` order, e.g. from `fluxes`) drops reactions. For a QSS fit
        the hidden species is first order in the reactions that consume it and is reported in the
        unit where its largest coefficient is 1 (`crnn._qss.normalize_hidden`).
        """
        return self.hidden.mechanism(self._params(start), self.species, threshold, keep)

    def table(self, threshold: float = 0.01, start: int | None = None):
        """A pandas DataFrame, one row per learned reaction: equation, rate, orders, total order."""
        return self.mechanism(threshold, start).table()


@eqx.filter_jit
def _full_trajectories(model: _Model, params, y0_obs):
    ys, ok = model.solve(params, y0_obs)
    return model.hidden.full_states(params, ys, model.n_observed, model.floor), ok


# ----------------------------------------------------------------------------------------- settings
class RandomStarts(eqx.Module):
    """How `fit` draws its random starts (`CRNN.init` for each, from its own key).

    **Arguments:**

    - `tied`: `w_in = clip(-w_out, 0, species_order_clip)` as the reference CRNN; else free orders.
    - `reversible`: every reaction also runs backwards with a rate constant of its own.
    - `species_order_clip`: the clip of each order `w_in[j, i]` (the reference's 2.5).
    - `ln_k_range`: the initial log rate constants are uniform in it.
    - `weight_scale`: standard deviation of the initial stoichiometry.
    """

    tied: bool = eqx.field(static=True, default=True)
    reversible: bool = eqx.field(static=True, default=False)
    species_order_clip: float = eqx.field(static=True, default=2.5)
    ln_k_range: tuple[float, float] = eqx.field(static=True, default=(-4.0, 0.0))
    weight_scale: float = eqx.field(static=True, default=0.1)

    def draw(self, n_starts: int, seed: int, n_species: int, n_reactions: int) -> CRNN:
        """`n_starts` random CRNNs, stacked along a leading axis."""
        return _draw_starts(self, n_starts, jnp.asarray(seed), n_species, n_reactions)

    def describe(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@eqx.filter_jit
def _draw_starts(starts: RandomStarts, n_starts: int, seed, n_species: int, n_reactions: int) -> CRNN:
    keys = jax.random.split(jax.random.PRNGKey(seed), n_starts)
    options = starts.describe()
    return jax.vmap(lambda k: CRNN.init(k, n_species, n_reactions, **options))(keys)


class Adam(eqx.Module):
    """The optimiser of `fit`: Adam, cosine-decayed to `lr_decay` times its initial rate over the epochs.

    Log rate constants (`ln_k`, `ln_k_reverse`) get `lr_ln_k`; Adam moves a parameter by about its
    learning rate per step, so over `epochs` steps they can travel about
    `lr_ln_k * epochs * (1 + lr_decay) / 2` in total (505 at the defaults and 20 000 epochs; 50 in
    2000). Stoichiometry (`w_out`) and free orders get `lr`, or are frozen (`optax.set_to_zero`) when
    `train_stoichiometry` is False. Each group's gradient is clipped to global norm `grad_clip`.
    """

    lr: float = 0.01
    lr_ln_k: float = 0.05
    lr_decay: float = 0.01
    grad_clip: float = 10.0
    train_stoichiometry: bool = eqx.field(static=True, default=True)

    def describe(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class _Hyper(eqx.Module):
    """The numbers of a training run as arrays: arguments of the jitted step, not constants in it."""

    order_penalty: jax.Array
    max_total_order: jax.Array
    lr: jax.Array
    lr_ln_k: jax.Array
    lr_decay: jax.Array
    grad_clip: jax.Array
    epochs: jax.Array
    train_stoichiometry: bool = eqx.field(static=True)


class _Data(eqx.Module):
    y0: jax.Array  # training initial states (observed species)
    ys: jax.Array  # training data
    scale: jax.Array


def _cosine(rate, epochs, alpha):
    """optax's cosine decay, with every number possibly traced."""

    def schedule(count):
        cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(count, epochs) / epochs))
        return rate * ((1.0 - alpha) * cosine + alpha)

    return schedule


def make_optimizer(hyper: _Hyper, params: CRNN) -> optax.GradientTransformation:
    """The `optax` transformation of `Adam` for one start's `params` (see `Adam`)."""

    def adam(rate):
        return optax.chain(optax.clip_by_global_norm(hyper.grad_clip), optax.adam(_cosine(rate, hyper.epochs, hyper.lr_decay)))

    labels = jax.tree.map(lambda _: "weights" if hyper.train_stoichiometry else "frozen", params)
    labels = eqx.tree_at(lambda p: p.ln_k, labels, "rates")
    if params.ln_k_reverse is not None:
        labels = eqx.tree_at(lambda p: p.ln_k_reverse, labels, "rates")
    transforms = {"rates": adam(hyper.lr_ln_k), "weights": adam(hyper.lr), "frozen": optax.set_to_zero()}
    return optax.multi_transform(transforms, labels)


class TrainState(eqx.Module):
    """The state of one random start during training."""

    params: CRNN
    opt_state: optax.OptState
    best_params: CRNN
    best_value: jax.Array
    failures: jax.Array


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


@eqx.filter_jit
def _initial_state(hyper: _Hyper, params0: CRNN) -> TrainState:
    optimizer = make_optimizer(hyper, jax.tree.map(lambda a: a[0], params0))
    n = params0.ln_k.shape[0]
    return TrainState(
        params=params0,
        opt_state=jax.vmap(optimizer.init)(params0),
        best_params=params0,
        best_value=jnp.full((n,), jnp.inf, dtype=params0.ln_k.dtype),
        failures=jnp.zeros((n,), jnp.int32),
    )


@eqx.filter_jit
def _run_chunk(model: _Model, hyper: _Hyper, data: _Data, state: TrainState, length: int, group: int | None):
    """`length` full-batch steps of every start (vmapped; in groups of `group` starts if given).

    A module-level jitted function: model, chunk length and grouping are static; data,
    hyperparameters and state are arguments, so equal shapes reuse one compilation.
    """

    def objective(params):
        pred, ok = model.predict(params, data.y0)
        loss = data_loss(pred, data.ys, data.scale)
        penalty = order_excess(model.hidden.penalty_orders(params), hyper.max_total_order)
        return loss + hyper.order_penalty * penalty, (loss, penalty, ok)

    def step(state: TrainState, _):
        optimizer = make_optimizer(hyper, state.params)
        (value, (loss, penalty, ok)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        finite = ok & jnp.isfinite(value) & _all_finite(grads)
        grads = jax.tree.map(lambda g: jnp.where(finite, g, 0.0), grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        improved = finite & (value < state.best_value)
        best = jax.tree.map(lambda b, p: jnp.where(improved, p, b), state.best_params, state.params)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        state = TrainState(
            params=keep(params, best),  # after a failure: back to the best parameters seen
            opt_state=keep(opt_state, state.opt_state),
            best_params=best,
            best_value=jnp.where(improved, value, state.best_value),
            failures=state.failures + (~finite).astype(jnp.int32),
        )
        return state, (loss, penalty)

    run = lambda s: jax.lax.scan(step, s, None, length=length)
    if group is None or group >= state.best_value.shape[0]:
        return jax.vmap(run)(state)
    return jax.lax.map(run, state, batch_size=group)


def _progress(total: int, enabled: bool | None, desc: str):
    with warnings.catch_warnings():  # tqdm.auto warns (with a machine path) when ipywidgets is missing
        warnings.simplefilter("ignore")
        from tqdm.auto import tqdm

    if enabled is None:
        enabled = os.environ.get("CRNN_PROGRESS", "1") != "0"
    return tqdm(total=total, disable=not enabled, desc=desc, unit="epoch", leave=False)


def _best(values) -> str:
    finite = np.asarray(values)[np.isfinite(values)]
    return f"{finite.min():.3e}" if finite.size else "n/a"


def _train(run_chunk, state, epochs, eval_every, validate, progress, desc, keep_parameter_history):
    """Run `epochs` steps in jitted chunks of `eval_every`; validation, progress and timing after each.

    `run_chunk(state, length)` runs the steps; `validate(params)` returns (train loss, validation
    loss, order excess) per start.
    """
    chunks = [eval_every] * (epochs // eval_every) + ([epochs % eval_every] if epochs % eval_every else [])
    train_hist, pen_hist, val_hist, val_epochs, param_hist, chunk_times = [], [], [], [], [], []
    bar = _progress(epochs, progress, desc)
    done = 0
    t_train = time.perf_counter()
    for length in chunks:
        t0 = time.perf_counter()
        state, (loss_hist, penalty_hist) = run_chunk(state, length)
        jax.block_until_ready(loss_hist)
        chunk_times.append((time.perf_counter() - t0, length))
        done += length
        evaluation = validate(state.params)
        val = np.asarray(evaluation[1])
        train_hist.append(np.asarray(loss_hist))
        pen_hist.append(np.asarray(penalty_hist))
        val_hist.append(val)
        val_epochs.append(done)
        if keep_parameter_history:
            param_hist.append(jax.tree.map(np.asarray, state.params))
        bar.update(length)
        bar.set_postfix(train=_best(loss_hist[:, -1]), val=_best(val), failed_steps=int(np.sum(state.failures)))
    bar.close()
    train_time = time.perf_counter() - t_train
    # The first chunk's time includes any compilation; estimate it from the others.
    per_epoch = np.median([t / n for t, n in chunk_times[1:]]) if len(chunk_times) > 1 else chunk_times[0][0] / chunk_times[0][1]
    compile_time = max(chunk_times[0][0] - per_epoch * chunk_times[0][1], 0.0)
    history = {
        "train": np.concatenate(train_hist, axis=1),
        "penalty": np.concatenate(pen_hist, axis=1),
        "validation": np.stack(val_hist, axis=1),
        "validation_epochs": np.array(val_epochs),
        "parameters": param_hist,
        "last_evaluation": evaluation,  # (train loss, validation loss, order excess) of the last parameters
    }
    timing = {"compile_s": compile_time, "train_s": train_time - compile_time, "epochs_per_s": 1.0 / per_epoch}
    return state, history, timing


def _shard_starts(state, n_starts: int, shard: bool | None):
    """Spread the starts axis of `state` over the local devices (a 1-D mesh); returns (state, devices used).

    With `shard` None it is on where more than one device exists. The starts are split evenly over
    the largest number of devices that divides `n_starts`; every start stays on one device, so the
    result equals a single-device fit up to floating-point reassociation.
    """
    import math

    devices = jax.local_devices()
    n = math.gcd(n_starts, len(devices)) if (shard or shard is None) else 1
    if n <= 1:
        return state, 1
    mesh = jax.sharding.Mesh(np.array(devices[:n]), ("starts",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("starts"))
    put = lambda a: jax.device_put(a, sharding) if getattr(a, "ndim", 0) >= 1 and a.shape[0] == n_starts else a
    return jax.tree.map(put, state), n


def _default_integrator(n_hidden: int) -> Integrator:
    # Hidden species are where fast, unobserved dynamics live: integrate them stiff-safely. A fully
    # observed model with rates faster than the sampling is not identifiable from the data anyway,
    # and RK4 on the data grid is measured right there (tests/test_integrate.py) and ~8x cheaper.
    return Rosenbrock() if n_hidden > 0 else RK4()


@eqx.filter_jit
def _keep_best(state: TrainState, last_evaluation, order_penalty):
    """Each start's best parameters; the last state (evaluated by the last validation) may be better still."""
    last_train, _, last_penalty = last_evaluation
    last_value = last_train + order_penalty * last_penalty
    take_last = jnp.isfinite(last_value) & (last_value < state.best_value)
    expand = lambda mask, like: mask.reshape(-1, *([1] * (like.ndim - 1)))
    return jax.tree.map(lambda b, p: jnp.where(expand(take_last, b), p, b), state.best_params, state.params)


# ----------------------------------------------------------------------------------------- fit
def fit(
    dataset: Dataset,
    n_reactions: int,
    extra_species: int = 0,
    order_penalty: float = 1.0,
    *,
    epochs: int = 20_000,
    n_starts: int | None = None,
    seed: int | None = None,
    hidden: str | HiddenSpecies = "integrated",
    init: RandomStarts | CRNN | None = None,
    optimizer: Adam | None = None,
    integrator: str | Integrator = "auto",
    floor: float = 1e-5,
    max_total_order: float = 2.0,
    eval_every: int = 100,
    progress: bool | None = None,
    keep_parameter_history: bool = False,
    shard_starts: bool | None = None,
) -> FitResult:
    """Train a CRNN with `n_reactions` reactions on `dataset`, from `n_starts` random starts at once.

    Minimises `data_loss + order_penalty * sum_j relu(sum_i w_in[j, i] - max_total_order)` (the
    seed's loss; `order_penalty=0` is its "original loss") over the training experiments with
    full-batch Adam. Every start keeps the parameters of its lowest training objective; after
    training each is re-solved with an adaptive implicit solver, and the start with the lowest
    validation loss becomes `params`.

    **Reach.** Log rate constants start uniform in `RandomStarts.ln_k_range` ((-4, 0)) and have their
    own learning rate (`Adam.lr_ln_k`): with the cosine decay, `epochs` steps let each travel up to
    about `lr_ln_k * epochs * (1 + lr_decay) / 2` (about 500 at the defaults; 2000 epochs: 50),
    enough to cross [-12, 8].

    **Arguments:**

    - `dataset`: a `Dataset`; its training experiments are fitted, its validation ones choose the start.
    - `n_reactions`: number of reactions (hidden units; with `RandomStarts(reversible=True)`, reaction pairs).
    - `extra_species`: unobserved species appended to the model; they start at 0, not in the loss.
    - `order_penalty`: the weight lambda of the order penalty (the seed's "modified loss" has 1).
    - `epochs`: full-batch steps.
    - `n_starts`: random starts trained together (default 8; 1 with a given `CRNN` as `init`).
    - `seed`: of the random starts (default 0).
    - `hidden`: `"integrated"` (hidden species integrated like the others) or `"qss"` (the one hidden
      species held at its quasi-steady state, `crnn.hidden.QuasiSteadyState`).
    - `init`: how the starts are drawn (`RandomStarts()`: tied orders, `ln k ~ U(-4, 0)`,
      stoichiometry `~ N(0, 0.1^2)`, the reference's order clip 2.5), or one `CRNN` to start from.
    - `optimizer`: `Adam()` (learning rates, decay, clipping, frozen stoichiometry).
    - `integrator`: `"auto"` (default: `Rosenbrock()` when the model has hidden species, else
      `RK4()`), a name (`"rosenbrock"`, `"rk4"`, `"adaptive"`) or a `crnn.integrate.Integrator`.
    - `floor`: concentration floor of the rate law (the reference's 1e-5).
    - `max_total_order`: total order of a reaction above which the penalty applies (the seed's 2).
    - `eval_every`: epochs between validation evaluations and progress updates.
    - `progress`: a tqdm bar; `None` shows it unless the environment variable `CRNN_PROGRESS` is `0`.
    - `keep_parameter_history`: keep every start's parameters at each validation evaluation.
    - `shard_starts`: spread the random starts over all local JAX devices (`jax.sharding`, a mesh
      over the starts axis); default on where more than one device exists. `FitResult.config["devices"]`
      records how many were used.

    **Returns:** a `FitResult`. Warns (and sets `FitResult.ok` False) when no start ends finite.
    """
    hidden, n_obs = as_hidden(hidden), len(dataset.species)
    optimizer = Adam() if optimizer is None else optimizer
    if n_reactions < 1 or extra_species < 0 or epochs < 1 or eval_every < 1 or (n_starts is not None and n_starts < 1):
        raise ValueError("need n_reactions >= 1, extra_species >= 0, n_starts >= 1, epochs >= 1, eval_every >= 1")
    if order_penalty < 0:
        raise ValueError(f"order_penalty must be >= 0, got {order_penalty}")
    if not isinstance(optimizer, Adam):
        raise TypeError(f"optimizer must be a crnn.Adam, got {type(optimizer).__name__}")
    if not dataset.train.any() or not dataset.validation.any():
        raise ValueError("the dataset needs both training and validation experiments")
    hidden.check(extra_species)
    species = (*dataset.species, *hidden_species_names(extra_species, dataset.species))
    integrator = _default_integrator(extra_species) if integrator == "auto" else as_integrator(integrator)
    if isinstance(init, CRNN):
        if init.n_species != len(species) or init.n_reactions != n_reactions:
            raise ValueError(
                f"init has {init.n_reactions} reactions over {init.n_species} species, expected {n_reactions} over {len(species)}"
            )
        if n_starts not in (None, 1) or seed is not None:
            raise ValueError("init= a CRNN fixes the one start, so n_starts and seed would be ignored; drop them or init")
        n_starts, starts = 1, None
        params0 = jax.tree.map(lambda a: jnp.asarray(a)[None], init)
    elif init is None or isinstance(init, RandomStarts):
        starts = RandomStarts() if init is None else init
        n_starts = 8 if n_starts is None else n_starts
        seed = 0 if seed is None else seed
        params0 = starts.draw(n_starts, seed, len(species), n_reactions)
    else:
        raise TypeError(f"init must be a crnn.RandomStarts or a crnn.CRNN, got {type(init).__name__}")
    config = {
        "n_reactions": n_reactions, "extra_species": extra_species, "order_penalty": order_penalty, "epochs": epochs,
        "n_starts": n_starts, "seed": seed, "hidden": hidden.describe(), "integrator": integrator.describe(), "floor": floor,
        "max_total_order": max_total_order, "eval_every": eval_every, "optimizer": optimizer.describe(),
        "init": "given" if starts is None else starts.describe(), "dataset": dataset.metadata,
    }  # fmt: skip
    t_start = time.perf_counter()

    model = _Model(hidden, integrator, floor, n_obs, extra_species, tuple(dataset.ts.tolist()))
    scale = jnp.asarray(dataset.scale())
    data = _Data(jnp.asarray(dataset.y0[dataset.train]), jnp.asarray(dataset.ys[dataset.train]), scale)
    number = lambda v: jnp.asarray(v, dtype=scale.dtype)
    hyper = _Hyper(
        order_penalty=number(order_penalty),
        max_total_order=number(max_total_order),
        lr=number(optimizer.lr),
        lr_ln_k=number(optimizer.lr_ln_k),
        lr_decay=number(optimizer.lr_decay),
        grad_clip=number(optimizer.grad_clip),
        epochs=number(epochs),
        train_stoichiometry=optimizer.train_stoichiometry,
    )
    state = _initial_state(hyper, params0)
    state, config["devices"] = _shard_starts(state, n_starts, shard_starts)
    everything = (jnp.asarray(dataset.y0), jnp.asarray(dataset.ys), (jnp.asarray(dataset.train), jnp.asarray(dataset.validation)))
    validate = lambda p: _split_losses(model, p, *everything, scale, hyper.max_total_order)
    group = integrator.start_group if config["devices"] == 1 else None
    run_chunk = lambda s, length: _run_chunk(model, hyper, data, s, length, group)
    desc = f"fit {n_reactions} reactions x {n_starts} starts"
    state, history, timing = _train(run_chunk, state, epochs, eval_every, validate, progress, desc, keep_parameter_history)

    kept = _keep_best(state, history["last_evaluation"], hyper.order_penalty)
    rescored = _split_losses(model.replace(integrator=RESCORE), kept, *everything, scale, hyper.max_total_order)
    final_train, final_val, final_penalty = (np.asarray(a) for a in rescored)
    ok = bool(np.isfinite(final_val).any())
    if not ok:
        warnings.warn("fit: no start ended with a finite loss (all re-scored solves failed); FitResult.ok is False", stacklevel=2)
    best_start = int(np.argmin(np.where(np.isfinite(final_val), final_val, np.inf)))
    timing["total_s"] = time.perf_counter() - t_start
    return FitResult(
        species=species,
        n_observed=n_obs,
        params=jax.tree.map(lambda a: a[best_start], kept),
        all_params=kept,
        train_history=history["train"],
        penalty_history=history["penalty"],
        validation_history=history["validation"],
        validation_epochs=history["validation_epochs"],
        final_train_loss=final_train,
        final_validation_loss=final_val,
        final_penalty=final_penalty,
        failures=np.asarray(state.failures),
        best_start=best_start,
        ok=ok,
        hidden=hidden,
        integrator=integrator,
        floor=floor,
        scale=np.asarray(scale),
        config=config,
        timing=timing,
        parameter_history=history["parameters"],
    )
