"""diffrax solves of a mechanism or a CRNN, in float64."""

from __future__ import annotations

import dataclasses
import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._mechanism import Mechanism
from ._model import CRNN, mass_action_rhs

__all__ = ["SimulationError", "SolverConfig", "simulate", "solve", "weights_of"]


class SimulationError(RuntimeError):
    """An ODE solve failed; the message says which experiment and where."""


@dataclasses.dataclass(frozen=True)
class SolverConfig:
    """How to integrate: the diffrax solver, tolerances and step budget.

    **Arguments:**

    - `solver`: `"kvaerno5"` (implicit, L-stable; the default, right on stiff
      systems), `"tsit5"` or `"dopri5"` (explicit), or a diffrax solver instance.
    - `rtol`, `atol`: tolerances of the PID step-size controller.
    - `max_steps`: step budget of one solve; exceeding it is a failure.
    - `floor`: concentrations below it enter the rate law as `floor` (0: exact
      mass action with `max(y, 0)`; a CRNN uses a small positive floor).
    """

    solver: str | diffrax.AbstractSolver = "kvaerno5"
    rtol: float = 1e-8
    atol: float = 1e-10
    max_steps: int = 100_000
    floor: float = 0.0
    dt0: float | None = None

    def make_solver(self) -> diffrax.AbstractSolver:
        if not isinstance(self.solver, str):
            return self.solver
        name = self.solver.lower()
        solvers = {"kvaerno5": diffrax.Kvaerno5, "kvaerno3": diffrax.Kvaerno3, "tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5}
        if name not in solvers:
            raise ValueError(f"unknown solver {self.solver!r}; choose one of {sorted(solvers)}")
        return solvers[name]()


def weights_of(system) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`(w_in, ln_k, w_out)` of a `Mechanism`, a `CRNN` or a weight triple."""
    if isinstance(system, Mechanism):
        return tuple(jnp.asarray(a, dtype=jnp.float64) for a in system.to_weights())
    if isinstance(system, CRNN):
        return system.weights()
    if isinstance(system, tuple) and len(system) == 3:
        return tuple(jnp.asarray(a) for a in system)
    raise TypeError(f"expected a Mechanism, a CRNN or (w_in, ln_k, w_out), got {type(system).__name__}")


def _vector_field(t, y, args):
    w_in, ln_k, w_out, floor = args
    return mass_action_rhs(y, w_in, ln_k, w_out, floor)


def solve(weights, y0, ts, config: SolverConfig = SolverConfig(), adjoint=None, rhs=None):
    """Integrate one experiment; jit- and vmap-friendly, never raises.

    `rhs(y, w_in, ln_k, w_out, floor)` replaces mass action if given (e.g.
    `crnn._qss.qss_rhs`).

    **Returns:** `(ys, ok, n_steps, n_rejected)` with `ys` of shape
    (len(ts), n_species); after a failure `ys` holds `inf` and `ok` is False.
    """
    w_in, ln_k, w_out = weights
    term = diffrax.ODETerm(_vector_field if rhs is None else (lambda t, y, args: rhs(y, *args)))
    controller = diffrax.PIDController(rtol=config.rtol, atol=config.atol)
    kwargs = {} if adjoint is None else {"adjoint": adjoint}
    sol = diffrax.diffeqsolve(
        term,
        config.make_solver(),
        t0=ts[0],
        t1=ts[-1],
        dt0=config.dt0,
        y0=y0,
        args=(w_in, ln_k, w_out, config.floor),
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=controller,
        max_steps=config.max_steps,
        throw=False,
        **kwargs,
    )
    ok = sol.result == diffrax.RESULTS.successful
    return sol.ys, ok, sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"]


@functools.partial(eqx.filter_jit)
def _solve_batch(weights, y0, ts, config):
    return jax.vmap(solve, in_axes=(None, 0, None, None))(weights, y0, ts, config)


def simulate(system, y0, ts, *, config: SolverConfig | None = None, return_stats: bool = False, **solver_options):
    """Concentrations of `system` at times `ts` from initial state(s) `y0`.

    **Arguments:**

    - `system`: a `Mechanism`, a `CRNN` or a weight triple `(w_in, ln_k, w_out)`.
    - `y0`: (n_species,) for one experiment or (n_experiments, n_species);
      a batch is solved with `vmap`.
    - `ts`: increasing 1-D times; the solve starts at `ts[0]`.
    - `config` or keyword options of `SolverConfig` (`solver`, `rtol`, `atol`, ...).

    **Returns:** an array (n_experiments, n_times, n_species), or
    (n_times, n_species) for a single `y0`; with `return_stats`, also a dict
    of accepted and rejected step counts per experiment.

    Raises `SimulationError` naming the experiment and the time where the
    solver stopped.
    """
    if config is None:
        config = SolverConfig(**solver_options)
    elif solver_options:
        config = dataclasses.replace(config, **solver_options)
    weights = weights_of(system)
    y0 = jnp.asarray(y0, dtype=jnp.float64)
    ts = jnp.asarray(ts, dtype=jnp.float64)
    single = y0.ndim == 1
    y0b = y0[None] if single else y0
    n_species = weights[2].shape[-1]
    if y0b.ndim != 2 or y0b.shape[1] != n_species:
        raise ValueError(
            f"y0 must have shape (n_species,) or (n_experiments, n_species) with n_species={n_species}, got {y0.shape}"
        )
    if ts.ndim != 1 or ts.shape[0] < 2 or not bool(jnp.all(jnp.diff(ts) > 0)):
        raise ValueError("ts must be a 1-D strictly increasing array of at least two times")
    ys, ok, n_steps, n_rejected = _solve_batch(weights, y0b, ts, config)
    ok = np.asarray(ok)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        finite = np.all(np.isfinite(np.asarray(ys[i])), axis=-1)
        last = int(np.flatnonzero(finite)[-1]) if finite.any() else None
        where = "before the first time" if last is None else f"after t={float(ts[last]):.6g} (last saved time)"
        raise SimulationError(
            f"ODE solve failed for experiment {i} {where}, before t={float(ts[last + 1 if last is not None else 0]):.6g}; "
            f"{int((~ok).sum())} of {len(ok)} experiments failed; solver {config.solver}, "
            f"{int(n_steps[i])} accepted and {int(n_rejected[i])} rejected steps (max_steps={config.max_steps})"
        )
    out = ys[0] if single else ys
    if return_stats:
        return out, {"accepted_steps": np.asarray(n_steps), "rejected_steps": np.asarray(n_rejected)}
    return out
