"""Training a CRNN on a dataset: optax Adam, jitted steps, many random starts with `vmap`."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .data import Dataset
from .integrate import rk4_solve
from .loss import data_loss, order_penalty
from .mechanism import Mechanism
from .model import CRNN, mass_action_rates, mass_action_rhs
from .qss import normalize_hidden, qss_orders, qss_rates, qss_rhs
from .simulate import SolverConfig, simulate, solve

__all__ = ["FitResult", "fit", "hidden_species_names", "make_predictor"]


def hidden_species_names(n: int, taken: Sequence[str] = ()) -> list[str]:
    """Names of `n` unobserved species: `Z` for one, `Z1, Z2, ...` for several."""
    names = ["Z"] if n == 1 else [f"Z{i + 1}" for i in range(n)]
    clash = set(names) & set(taken)
    if clash:
        names = [f"_{name}" for name in names]
    return names


def make_predictor(
    ts,
    n_observed: int,
    extra_species: int,
    integrator: str,
    substeps: int,
    floor: float,
    solver: SolverConfig,
    check_spacing: bool = True,
    hidden: str = "dynamic",
):
    """`predict(params, y0_obs) -> (ys_obs, ok)` for a batch of experiments.

    Hidden species start at 0 and are cut from the output (`hidden="dynamic"`),
    or, with `hidden="qss"`, the one hidden species is not integrated but held
    at its quasi-steady state (`crnn.qss`). `integrator` is `"rk4"` (fixed
    steps on the sampling grid, see `crnn.integrate`) or `"diffrax"` (adaptive,
    `solver` settings).
    """
    if hidden not in ("dynamic", "qss"):
        raise ValueError(f"hidden must be 'dynamic' or 'qss', got {hidden!r}")
    if hidden == "qss" and extra_species != 1:
        raise ValueError(f"hidden='qss' needs exactly one extra species, got {extra_species}")
    rhs = qss_rhs if hidden == "qss" else mass_action_rhs
    pad = 0 if hidden == "qss" else extra_species
    if integrator == "rk4" and check_spacing:
        spacing = np.diff(np.asarray(ts))
        if not np.allclose(spacing, spacing[0], rtol=1e-9, atol=0):
            raise ValueError("integrator='rk4' needs equally spaced times; use integrator='diffrax'")
    ts = jnp.asarray(ts)
    if integrator == "rk4":

        def one(weights, y0):
            return rk4_solve(weights, y0, ts, substeps, floor, rhs=rhs)

    elif integrator == "diffrax":
        config = dataclasses.replace(solver, floor=floor)

        def one(weights, y0):
            ys, ok, _, _ = solve(weights, y0, ts, config, rhs=rhs)
            return ys, ok

    else:
        raise ValueError(f"integrator must be 'rk4' or 'diffrax', got {integrator!r}")

    def predict(params: CRNN, y0_obs):
        y0 = jnp.concatenate([y0_obs, jnp.zeros((y0_obs.shape[0], pad), y0_obs.dtype)], axis=1)
        ys, ok = jax.vmap(one, in_axes=(None, 0))(params.weights(), y0)
        return ys[..., :n_observed], jnp.all(ok)

    return predict


@dataclasses.dataclass
class FitResult:
    """What `fit` returns.

    **Fields:**

    - `species`: all species of the model, observed first, then hidden.
    - `n_observed`: how many of them the data have.
    - `params`: the best start's `CRNN` (lowest validation loss after training).
    - `all_params`: every start's `CRNN`, stacked along a leading axis.
    - `train_history`: (n_starts, epochs) training data loss before each step.
    - `penalty_history`: (n_starts, epochs) order penalty (unweighted) before each step.
    - `validation_history`: (n_starts, n_evaluations) validation loss, at `validation_epochs`.
    - `final_train_loss`, `final_validation_loss`: (n_starts,) data losses of each
      start's kept parameters, re-solved with an adaptive diffrax solver.
    - `final_penalty`: (n_starts,) order penalty of the kept parameters.
    - `failures`: (n_starts,) training steps whose solve or gradient was not
      finite (the step was skipped and the start put back to its best parameters).
    - `best_start`: index of the start in `params`.
    - `scale`: the species scales of the loss.
    - `config`: every argument of the fit, for the record.
    - `timing`: wall time of compilation, training and the whole fit (seconds).
    - `parameter_history`: with `keep_parameter_history`, the stacked parameters
      of all starts at each of `validation_epochs` (before the best-so-far choice).
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
    scale: np.ndarray
    config: dict
    timing: dict
    parameter_history: list = dataclasses.field(default_factory=list)

    @property
    def n_starts(self) -> int:
        return len(self.final_train_loss)

    def predict(self, y0, ts, start: int | None = None):
        """Observed concentrations of the learned model from `y0` (observed species only).

        Hidden species start at 0; the solve is adaptive (Kvaerno5) with the
        training's concentration floor. `y0` is (n_observed,) or (n_experiments, n_observed).
        """
        params = self.params if start is None else self.start(start)
        y0 = np.atleast_2d(np.asarray(y0, dtype=float))
        if self.config.get("hidden") == "qss":
            predict = make_predictor(ts, self.n_observed, 1, "diffrax", 1, self.config["floor"], _ACCURATE, False, "qss")
            ys, ok = eqx.filter_jit(predict)(params, jnp.asarray(y0))
            if not bool(ok):
                raise RuntimeError("the QSS model's solve failed")
            return np.asarray(ys)
        full = np.concatenate([y0, np.zeros((y0.shape[0], len(self.species) - self.n_observed))], axis=1)
        ys = simulate(params, full, ts, config=dataclasses.replace(_ACCURATE, floor=self.config["floor"]))
        return np.asarray(ys)[..., : self.n_observed]

    def fluxes(self, dataset, start: int | None = None, train_only: bool = True) -> np.ndarray:
        """Largest rate of every reaction (in `weights()` order) along the model's own trajectories.

        Rates are evaluated on the predicted states of the dataset's training
        experiments (all experiments with `train_only=False`); with a QSS hidden
        species at its quasi-steady state. Useful to drop reactions that carry
        no flux before reading a mechanism.
        """
        params = self.params if start is None else self.start(start)
        rows = dataset.train if train_only else np.ones(dataset.n_experiments, bool)
        ys = self.predict(dataset.y0[rows], dataset.ts, start=start).reshape(-1, self.n_observed)
        w_in, ln_k, w_out = params.weights()
        floor = self.config["floor"]
        if self.config.get("hidden") == "qss":
            rates = jax.vmap(lambda y: qss_rates(y, w_in, ln_k, w_out, floor)[0])(jnp.asarray(ys))
        else:
            full = jnp.concatenate([jnp.asarray(ys), jnp.zeros((ys.shape[0], len(self.species) - self.n_observed))], axis=1)
            rates = jax.vmap(lambda y: mass_action_rates(y, w_in, ln_k, floor))(full)
        return np.asarray(rates).max(axis=0)

    def start(self, index: int) -> CRNN:
        """The kept parameters of start `index`."""
        return jax.tree.map(lambda a: a[index], self.all_params)

    def mechanism(self, threshold: float = 0.01, start: int | None = None, keep=None) -> Mechanism:
        """The learned mechanism, weights with |w| < `threshold` pruned (as the reference CRNN).

        `keep` (booleans in `weights()` order, e.g. from `fluxes`) drops reactions.
        For a QSS fit the hidden species is first order in the reactions that
        consume it and is reported in the unit where its largest coefficient is 1
        (`crnn.qss.normalize_hidden`).
        """
        params = self.params if start is None else self.start(start)
        if self.config.get("hidden") != "qss":
            return params.mechanism(self.species, threshold, keep=keep)
        # QSS: a reaction is first order in Z wherever its (unpruned) coefficient of Z is negative, even a
        # coefficient too small to survive pruning (Z then acts as a catalyst); keep that order explicitly.
        w_in, ln_k, w_out = (np.asarray(a, dtype=float) for a in params.weights())
        z_order = (w_out[:, -1] < 0).astype(float)
        if keep is not None:
            keep = np.asarray(keep, dtype=bool)
            w_in, ln_k, w_out, z_order = w_in[keep], ln_k[keep], w_out[keep], z_order[keep]
        w_out = np.where(np.abs(w_out) < threshold, 0.0, w_out)
        w_in = np.clip(-w_out, 0.0, params.max_order_per_species)
        w_in[:, -1] = z_order
        return normalize_hidden(Mechanism.from_weights(list(self.species), w_in, ln_k, w_out), self.species[-1])

    def table(self, threshold: float = 0.01, start: int | None = None):
        """A pandas DataFrame, one row per learned reaction: equation, rate, orders, total order."""
        from .report import mechanism_table

        return mechanism_table(self.mechanism(threshold, start))


def _loss_terms(predict, params, y0, data, scale, max_order, hidden="dynamic"):
    pred, ok = predict(params, y0)
    w_in = qss_orders(params.w_in, params.w_out_all) if hidden == "qss" else params.w_in
    return data_loss(pred, data, scale), order_penalty(w_in, max_order), ok


def fit(
    dataset: Dataset,
    n_reactions: int,
    extra_species: int = 0,
    order_penalty: float = 1.0,
    *,
    hidden: str = "dynamic",
    reversible: bool = False,
    epochs: int = 30_000,
    lr: float = 1e-2,
    lr_final: float = 1e-4,
    schedule: str = "exponential",
    seed: int = 0,
    n_starts: int = 1,
    tied: bool = True,
    max_order: float = 2.0,
    max_order_per_species: float = 2.5,
    weight_scale: float = 0.1,
    ln_k_range: tuple[float, float] = (-8.0, -6.0),
    grad_clip: float = 10.0,
    integrator: str = "rk4",
    substeps: int = 1,
    floor: float = 1e-5,
    solver: SolverConfig | None = None,
    eval_every: int = 100,
    progress: bool | None = None,
    init: CRNN | None = None,
    train_stoichiometry: bool = True,
    keep_parameter_history: bool = False,
) -> FitResult:
    """Train a CRNN with `n_reactions` reactions on `dataset`.

    Minimises `data_loss + order_penalty * sum_j relu(sum_i w_in[j, i] - max_order)`
    on the training experiments with Adam, the learning rate decaying from
    `lr` to `lr_final` over `epochs` full-batch steps (`schedule`:
    `"exponential"` or `"cosine"`).
    `n_starts` random initialisations (from `seed`) are trained at once with
    `vmap`; each keeps the parameters of its lowest training objective, and
    the start with the lowest validation loss is returned as `params`.

    **Arguments:**

    - `dataset`: a `Dataset`; its training experiments are fitted.
    - `n_reactions`: number of reactions (hidden units).
    - `extra_species`: unobserved species appended to the model; they start at 0
      and are not in the loss.
    - `order_penalty`: weight lambda of the order penalty (0: the original loss).
    - `hidden`: `"dynamic"` (hidden species are integrated like the others) or
      `"qss"` (the one hidden species sits at its quasi-steady state and holds
      no mass: the fast-intermediate limit taken analytically, see `crnn.qss`).
    - `reversible`: every reaction also runs backwards, with a rate constant of
      its own (`CRNN.ln_k_reverse`); `n_reactions` counts reaction pairs.
    - `tied`: `w_in = clip(-w_out, 0, max_order_per_species)` as the reference; else free orders.
    - `weight_scale`, `ln_k_range`: the random initialisation (see `CRNN.init`).
    - `integrator`: `"rk4"` (fixed steps on the data grid, `substeps` per interval)
      or `"diffrax"` (adaptive, `solver`).
    - `floor`: concentration floor of the rate law (the reference uses 1e-5).
    - `eval_every`: epochs between validation evaluations (and progress updates).
    - `progress`: show a tqdm progress bar; `None` (default) shows it unless the
      environment variable `CRNN_PROGRESS` is `0` (the study runner sets it, so
      executed notebooks in the book stay free of progress output).
    - `init`: start from these parameters (a single `CRNN`) instead of random ones.
    - `train_stoichiometry`: if False, only the rate constants `ln_k` are trained
      (`w_out` and free orders stay as initialised), e.g. to follow the rates of
      a fixed mechanism.
    - `keep_parameter_history`: also keep every start's parameters at each
      validation evaluation (`FitResult.parameter_history`).

    **Returns:** a `FitResult`.
    """
    if n_reactions < 1 or extra_species < 0 or n_starts < 1 or epochs < 1 or eval_every < 1:
        raise ValueError("need n_reactions >= 1, extra_species >= 0, n_starts >= 1, epochs >= 1, eval_every >= 1")
    if order_penalty < 0:
        raise ValueError(f"order_penalty must be >= 0, got {order_penalty}")
    if not dataset.train.any() or not dataset.validation.any():
        raise ValueError("the dataset needs both training and validation experiments")
    config = {k: v for k, v in locals().items() if k not in ("dataset", "init", "solver")}
    solver = solver or SolverConfig(solver="tsit5", rtol=1e-6, atol=1e-9, max_steps=20_000)
    config["solver"] = dataclasses.asdict(solver) if isinstance(solver.solver, str) else repr(solver)
    config["dataset"] = dataset.metadata
    t_start = time.perf_counter()

    n_obs = len(dataset.species)
    species = (*dataset.species, *hidden_species_names(extra_species, dataset.species))
    n_species = len(species)
    scale = jnp.asarray(dataset.scale())
    y0_tr, ys_tr = jnp.asarray(dataset.y0[dataset.train]), jnp.asarray(dataset.ys[dataset.train])
    y0_va, ys_va = jnp.asarray(dataset.y0[dataset.validation]), jnp.asarray(dataset.ys[dataset.validation])
    predict = make_predictor(dataset.ts, n_obs, extra_species, integrator, substeps, floor, solver, hidden=hidden)

    key = jax.random.PRNGKey(seed)
    if init is not None:
        if init.n_species != n_species or init.n_reactions != n_reactions:
            raise ValueError(
                f"init has {init.n_reactions} reactions over {init.n_species} species, expected {n_reactions} over {n_species}"
            )
        params0 = jax.tree.map(lambda a: jnp.broadcast_to(a, (n_starts, *a.shape)), init)
    else:
        keys = jax.random.split(key, n_starts)
        params0 = jax.vmap(
            lambda k: CRNN.init(
                k,
                n_species,
                n_reactions,
                tied=tied,
                weight_scale=weight_scale,
                ln_k_range=ln_k_range,
                max_order_per_species=max_order_per_species,
                reversible=reversible,
            )
        )(keys)

    if schedule == "exponential":
        lr_schedule = optax.exponential_decay(lr, transition_steps=epochs, decay_rate=lr_final / lr)
    elif schedule == "cosine":
        lr_schedule = optax.cosine_decay_schedule(lr, decay_steps=epochs, alpha=lr_final / lr)
    else:
        raise ValueError(f"schedule must be 'exponential' or 'cosine', got {schedule!r}")
    optimizer = optax.chain(optax.clip_by_global_norm(grad_clip), optax.adam(lr_schedule))

    def objective(params):
        loss, penalty, ok = _loss_terms(predict, params, y0_tr, ys_tr, scale, max_order, hidden)
        return loss + order_penalty * penalty, (loss, penalty, ok)

    def step(state, _):
        params, opt_state, best, best_value, failures = state
        (value, (loss, penalty, ok)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        finite = ok & jnp.isfinite(value) & jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        grads = jax.tree.map(lambda g: jnp.where(finite, g, 0.0), grads)
        if not train_stoichiometry:
            grads = eqx.tree_at(lambda g: g.w_out, grads, jnp.zeros_like(grads.w_out))
            if grads.w_in_free is not None:
                grads = eqx.tree_at(lambda g: g.w_in_free, grads, jnp.zeros_like(grads.w_in_free))
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        improved = finite & (value < best_value)
        best = jax.tree.map(lambda b, p: jnp.where(improved, p, b), best, params)
        best_value = jnp.where(improved, value, best_value)
        # On a failed solve: skip the update and go back to the best parameters seen.
        new_params = jax.tree.map(lambda n, b: jnp.where(finite, n, b), new_params, best)
        new_opt_state = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new_opt_state, opt_state)
        failures = failures + (~finite).astype(jnp.int32)
        return (new_params, new_opt_state, best, best_value, failures), (loss, penalty)

    @eqx.filter_jit
    def run_chunk(state, length):
        return jax.vmap(lambda s: jax.lax.scan(step, s, None, length=length))(state)

    @eqx.filter_jit
    def evaluate(params_batch):
        return jax.vmap(lambda p: _loss_terms(predict, p, y0_va, ys_va, scale, max_order, hidden)[0])(params_batch)

    opt_state0 = jax.vmap(optimizer.init)(params0)
    state = (params0, opt_state0, params0, jnp.full((n_starts,), jnp.inf), jnp.zeros((n_starts,), jnp.int32))

    chunks = [eval_every] * (epochs // eval_every) + ([epochs % eval_every] if epochs % eval_every else [])
    train_hist, pen_hist, val_hist, val_epochs, param_hist = [], [], [], [], []
    t_train = time.perf_counter()
    chunk_times = []
    bar = _progress(total=epochs, enabled=progress, desc=f"fit {n_reactions} reactions x {n_starts} starts")
    done = 0
    for length in chunks:
        t0 = time.perf_counter()
        state, (loss_hist, penalty_hist) = run_chunk(state, length)
        jax.block_until_ready(loss_hist)
        chunk_times.append((time.perf_counter() - t0, length))
        done += length
        val = np.asarray(evaluate(state[0]))
        train_hist.append(np.asarray(loss_hist))
        pen_hist.append(np.asarray(penalty_hist))
        val_hist.append(val)
        val_epochs.append(done)
        if keep_parameter_history:
            param_hist.append(jax.tree.map(np.asarray, state[0]))
        bar.update(length)
        bar.set_postfix(train=_best(loss_hist[:, -1]), val=_best(val), failed_steps=int(np.sum(state[4])))
    bar.close()
    train_time = time.perf_counter() - t_train
    # The first chunk's time includes compilation; estimate the rest from the others.
    per_epoch = np.median([t / n for t, n in chunk_times[1:]]) if len(chunk_times) > 1 else 0.0
    compile_time = max(chunk_times[0][0] - per_epoch * chunk_times[0][1], 0.0)

    # Keep each start's best parameters; the last state's may be better still.
    params_last, _, best, best_value, failures = state
    last_value = jax.vmap(lambda p: objective(p)[0])(params_last)
    take_last = jnp.isfinite(last_value) & (last_value < best_value)
    kept = jax.tree.map(lambda b, p: jnp.where(_expand(take_last, b), p, b), best, params_last)

    final_train, final_val, final_penalty = _final_losses(kept, dataset, n_obs, extra_species, scale, floor, max_order, hidden)
    ranking = np.where(np.isfinite(final_val), final_val, np.inf)
    best_start = int(np.argmin(ranking))
    return FitResult(
        species=species,
        n_observed=n_obs,
        params=jax.tree.map(lambda a: a[best_start], kept),
        all_params=kept,
        train_history=np.concatenate(train_hist, axis=1),
        penalty_history=np.concatenate(pen_hist, axis=1),
        validation_history=np.stack(val_hist, axis=1),
        validation_epochs=np.array(val_epochs),
        final_train_loss=final_train,
        final_validation_loss=final_val,
        final_penalty=final_penalty,
        failures=np.asarray(failures),
        best_start=best_start,
        scale=np.asarray(scale),
        config=config,
        parameter_history=param_hist,
        timing={
            "compile_s": compile_time,
            "train_s": train_time - compile_time,
            "epochs_per_s": 1.0 / per_epoch if per_epoch > 0 else float("nan"),
            "total_s": time.perf_counter() - t_start,
        },
    )


def _best(values) -> str:
    finite = np.asarray(values)[np.isfinite(values)]
    return f"{finite.min():.3e}" if finite.size else "n/a"


def _expand(mask, like):
    return mask.reshape(mask.shape + (1,) * (like.ndim - mask.ndim))


_ACCURATE = SolverConfig(solver="kvaerno5", rtol=1e-7, atol=1e-9, max_steps=20_000)


@eqx.filter_jit
def _adaptive_losses(params_batch, y0, ys, ts, scale, n_obs, extra_species, floor, max_order, hidden):
    predict = make_predictor(ts, n_obs, extra_species, "diffrax", 1, floor, _ACCURATE, check_spacing=False, hidden=hidden)

    def one(p):
        loss, penalty, ok = _loss_terms(predict, p, y0, ys, scale, max_order, hidden)
        return jnp.where(ok, loss, jnp.inf), penalty

    return jax.vmap(one)(params_batch)


def _final_losses(params_batch, dataset, n_obs, extra_species, scale, floor, max_order, hidden="dynamic"):
    """Data losses of every start, re-solved with an adaptive implicit diffrax solve (Kvaerno5)."""
    ts = jnp.asarray(dataset.ts)
    args = (ts, scale, n_obs, extra_species, float(floor), float(max_order), hidden)
    train, penalty = _adaptive_losses(
        params_batch, jnp.asarray(dataset.y0[dataset.train]), jnp.asarray(dataset.ys[dataset.train]), *args
    )
    val, _ = _adaptive_losses(
        params_batch, jnp.asarray(dataset.y0[dataset.validation]), jnp.asarray(dataset.ys[dataset.validation]), *args
    )
    return np.asarray(train), np.asarray(val), np.asarray(penalty)


def _progress(total: int, enabled: bool | None, desc: str):
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = os.environ.get("CRNN_PROGRESS", "1") != "0"

    return tqdm(total=total, disable=not enabled, desc=desc, unit="epoch", leave=False)
