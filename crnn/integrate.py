"""Training integrators: one interface, three variants.

An integrator solves a batch of experiments of one vector field (`crnn.integrate.MassAction`, or
`AutodiffField` around any right-hand side) from their initial states, and reports whether every
value is finite:

    ys, ok = integrator.solve(field, (w_in, ln_k, w_out), y0, ts)   # y0 (E, n) -> ys (E, T, n)

- `Rosenbrock` (default wherever a fit may become stiff): L-stable, linearly implicit, on a fixed
  grid with a graded start; exact discrete gradients by a hand-written adjoint. Right at any
  stiffness: tested against scipy's Radau down to stiffness ratios of ~4e7.
- `RK4`: classical Runge-Kutta, `substeps` steps per sampling interval. Cheap, but only stable while
  `h |lambda| < 2.8` (k below ~7 at the reference's 0.4 sampling interval); a blow-up is returned as
  `ok=False`, which the training loop counts as a failed step.
- `Adaptive`: diffrax with a step-size controller (Kvaerno5 by default), used to re-score learned
  models after training and for predictions. Accurate and slow.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ._model import mass_action_rhs
from ._rosenbrock import TABLEAUS, AutodiffField, MassAction, rosenbrock_solve, step_grid
from ._simulate import SolverConfig, solve

__all__ = ["RK4", "Adaptive", "AutodiffField", "Integrator", "MassAction", "Rosenbrock", "as_integrator", "rk4_solve"]


class Integrator:
    """The interface every training integrator implements."""

    stiff_safe: bool = False

    def solve(self, field, weights, y0, ts):
        """`(ys, ok)` with ys (n_experiments, n_times, n_species); ok False if any value is not finite."""
        raise NotImplementedError

    def describe(self) -> dict:
        """The integrator and its settings, for `FitResult.config` and the book."""
        return {"name": type(self).__name__, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class Rosenbrock(Integrator):
    """Fixed-grid Rosenbrock steps (`crnn._rosenbrock`); L-stable with the default RODAS3 tableau.

    **Arguments:**

    - `tableau`: `"rodas3"` (order 3, stiffly accurate) or `"ros2"` (order 2).
    - `substeps`: steps per sampling interval.
    - `first_step`, `growth`: the graded start, first step as a fraction of the sampling interval.
    """

    tableau: str = "rodas3"
    substeps: int = 1
    first_step: float = 0.01
    growth: float = 1.3
    stiff_safe = True

    def __post_init__(self):
        if self.tableau not in TABLEAUS:
            raise ValueError(f"unknown tableau {self.tableau!r}; choose one of {sorted(TABLEAUS)}")
        step_grid(np.array([0.0, 1.0]), self.first_step, self.growth, self.substeps)  # validates the settings

    def steps(self, ts) -> int:
        """How many steps one solve over `ts` takes."""
        return len(step_grid(ts, self.first_step, self.growth, self.substeps)[0]) - 1

    def solve(self, field, weights, y0, ts):
        grid, index = step_grid(np.asarray(ts), self.first_step, self.growth, self.substeps)
        return rosenbrock_solve(field, weights, y0, grid, index, self.tableau)


def rk4_solve(weights, y0, ts, substeps: int = 1, floor: float = 1e-5, rhs=mass_action_rhs):
    """States at `ts` (equally spaced) of one experiment by classical RK4; `(ys, ok)`.

    `rhs(y, w_in, ln_k, w_out, floor)`; mass action by default.
    """
    w_in, ln_k, w_out = weights
    dt = (ts[1] - ts[0]) / substeps

    def f(y):
        return rhs(y, w_in, ln_k, w_out, floor)

    def interval(y, _):
        for _ in range(substeps):
            k1 = f(y)
            k2 = f(y + 0.5 * dt * k1)
            k3 = f(y + 0.5 * dt * k2)
            k4 = f(y + dt * k3)
            y = y + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        return y, y

    _, ys = jax.lax.scan(interval, y0, None, length=ts.shape[0] - 1)
    ys = jnp.concatenate([y0[None], ys], axis=0)
    return ys, jnp.all(jnp.isfinite(ys))


def _array_rhs(field):
    """`rhs(y, w_in, ln_k, w_out, floor)` of one state (an (n,) array) for a field."""
    if isinstance(field, MassAction):
        return lambda y, w_in, ln_k, w_out, floor: mass_action_rhs(y, w_in, ln_k, w_out, field.floor)
    return lambda y, w_in, ln_k, w_out, floor: field.rhs(y, w_in, ln_k, w_out)


@dataclasses.dataclass(frozen=True)
class RK4(Integrator):
    """Classical RK4, `substeps` steps per sampling interval (equally spaced times only)."""

    substeps: int = 1

    def __post_init__(self):
        if self.substeps < 1:
            raise ValueError(f"substeps must be >= 1, got {self.substeps}")

    def solve(self, field, weights, y0, ts):
        spacing = np.diff(np.asarray(ts))
        if not np.allclose(spacing, spacing[0], rtol=1e-9, atol=0):
            raise ValueError("RK4 needs equally spaced times; use Rosenbrock() or Adaptive()")
        rhs = _array_rhs(field)
        ts = jnp.asarray(ts)
        ys, ok = jax.vmap(lambda y: rk4_solve(weights, y, ts, self.substeps, 0.0, rhs))(y0)
        return ys, jnp.all(ok)


@dataclasses.dataclass(frozen=True)
class Adaptive(Integrator):
    """An adaptive diffrax solve (`crnn._simulate.solve`); failures (step budget) give `ok=False`."""

    solver: str = "kvaerno5"
    rtol: float = 1e-7
    atol: float = 1e-9
    max_steps: int = 20_000
    stiff_safe = True

    def solve(self, field, weights, y0, ts):
        config = SolverConfig(solver=self.solver, rtol=self.rtol, atol=self.atol, max_steps=self.max_steps)
        rhs = _array_rhs(field)
        ts = jnp.asarray(ts)
        ys, ok, _, _ = jax.vmap(lambda y: solve(weights, y, ts, config, rhs=rhs))(y0)
        return ys, jnp.all(ok)


_NAMES = {"rosenbrock": Rosenbrock, "rk4": RK4, "adaptive": Adaptive, "diffrax": lambda: Adaptive(solver="tsit5", rtol=1e-6)}


def as_integrator(value) -> Integrator:
    """An `Integrator` from an instance or a name (`"rosenbrock"`, `"rk4"`, `"adaptive"`, `"diffrax"`)."""
    if isinstance(value, Integrator):
        return value
    if isinstance(value, str) and value in _NAMES:
        return _NAMES[value]()
    raise ValueError(f"integrator must be an Integrator or one of {sorted(_NAMES)}, got {value!r}")
