"""Training integrators: one interface, three variants.

An integrator solves a batch of experiments of one vector field (`crnn.integrate.MassAction`,
`QSSField`, or `AutodiffField` around any smooth right-hand side) from their initial states, and reports whether every
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

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._fields import AutodiffField, Field, FixedMassAction, MassAction, QSSField
from ._model import mass_action_rhs
from ._rosenbrock import TABLEAUS, rosenbrock_solve, step_grid
from ._simulate import SolverConfig, solve

__all__ = [
    "RK4",
    "Adaptive",
    "AutodiffField",
    "Field",
    "FixedMassAction",
    "Integrator",
    "MassAction",
    "QSSField",
    "Rosenbrock",
    "as_integrator",
    "rk4_solve",
]


class Integrator(eqx.Module):
    """The interface every training integrator implements. Integrators are `eqx.Module`s with static
    fields: equal settings compare equal, so jitted functions taking one compile once per setting.

    `start_group`: how many random starts `crnn.fit` steps at once (vmapped); more are stepped in
    groups of this size, one after the other (`jax.lax.map`). None: all at once.
    """

    start_group = None

    def solve(self, field, weights, y0, ts):
        """`(ys, ok)` with ys (n_experiments, n_times, n_species); ok False if any value is not finite."""
        raise NotImplementedError

    def describe(self) -> dict:
        """The integrator and its settings, for `FitResult.config` and the book."""
        return {"name": type(self).__name__, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}


class Rosenbrock(Integrator):
    """Fixed-grid Rosenbrock steps (`crnn._rosenbrock`); L-stable with the default RODAS3 tableau.

    **Arguments:**

    - `tableau`: `"rodas3"` (order 3, stiffly accurate) or `"ros2"` (order 2).
    - `substeps`: steps per sampling interval.
    - `first_step`, `growth`: the graded start, first step as a fraction of the sampling interval.
    """

    tableau: str = eqx.field(static=True, default="rodas3")
    substeps: int = eqx.field(static=True, default=1)
    first_step: float = eqx.field(static=True, default=0.01)
    growth: float = eqx.field(static=True, default=1.3)

    def __check_init__(self):
        if self.tableau not in TABLEAUS:
            raise ValueError(f"unknown tableau {self.tableau!r}; choose one of {sorted(TABLEAUS)}")
        step_grid(np.array([0.0, 1.0]), self.first_step, self.growth, self.substeps)  # validates the settings

    def steps(self, ts) -> int:
        """How many steps one solve over `ts` takes."""
        return len(step_grid(ts, self.first_step, self.growth, self.substeps)[0]) - 1

    def solve(self, field, weights, y0, ts):
        grid, index = step_grid(np.asarray(ts), self.first_step, self.growth, self.substeps)
        return rosenbrock_solve(field, weights, y0, grid, index, self.tableau)


def rk4_solve(weights, y0, ts, substeps: int = 1, rhs=mass_action_rhs):
    """States at `ts` (equally spaced) of one experiment by classical RK4; `(ys, ok)`.

    `rhs(y, w_in, ln_k, w_out)`: exact mass action by default, or a field's `rhs`.
    """
    w_in, ln_k, w_out = weights
    dt = (ts[1] - ts[0]) / substeps

    def f(y):
        return rhs(y, w_in, ln_k, w_out)

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


class RK4(Integrator):
    """Classical RK4, `substeps` steps per sampling interval (equally spaced times only).

    Random starts are stepped four at a time (`start_group`): vmapped over more starts, XLA's code for
    this integrator and its gradient runs slower per start on the CPU (bench/train_speed.py).
    """

    substeps: int = eqx.field(static=True, default=1)
    start_group = 4

    def __check_init__(self):
        if self.substeps < 1:
            raise ValueError(f"substeps must be >= 1, got {self.substeps}")

    def solve(self, field, weights, y0, ts):
        spacing = np.diff(np.asarray(ts))
        if not np.allclose(spacing, spacing[0], rtol=1e-9, atol=0):
            raise ValueError("RK4 needs equally spaced times; use Rosenbrock() or Adaptive()")
        ts = jnp.asarray(ts)
        ys, ok = jax.vmap(lambda y: rk4_solve(weights, y, ts, self.substeps, field.rhs))(y0)
        return ys, jnp.all(ok)


class Adaptive(Integrator):
    """An adaptive diffrax solve (`crnn._simulate.solve`); failures (step budget) give `ok=False`."""

    solver: str = eqx.field(static=True, default="kvaerno5")
    rtol: float = eqx.field(static=True, default=1e-7)
    atol: float = eqx.field(static=True, default=1e-9)
    max_steps: int = eqx.field(static=True, default=20_000)

    def solve(self, field, weights, y0, ts):
        ys, ok = self.solve_each(field, weights, y0, ts)
        return ys, jnp.all(ok)

    def solve_each(self, field, weights, y0, ts):
        """As `solve`, with `ok` for each initial state (each experiment) rather than for all of them."""
        config = SolverConfig(solver=self.solver, rtol=self.rtol, atol=self.atol, max_steps=self.max_steps)
        rhs = lambda y, w_in, ln_k, w_out, floor: field.rhs(y, w_in, ln_k, w_out)
        ts = jnp.asarray(ts)
        ys, ok, _, _ = jax.vmap(lambda y: solve(weights, y, ts, config, rhs=rhs))(y0)
        return ys, ok


_NAMES = {"rosenbrock": Rosenbrock, "rk4": RK4, "adaptive": Adaptive, "diffrax": lambda: Adaptive(solver="tsit5", rtol=1e-6)}


def as_integrator(value) -> Integrator:
    """An `Integrator` from an instance or a name (`"rosenbrock"`, `"rk4"`, `"adaptive"`, `"diffrax"`)."""
    if isinstance(value, Integrator):
        return value
    if isinstance(value, str) and value in _NAMES:
        return _NAMES[value]()
    raise ValueError(f"integrator must be an Integrator or one of {sorted(_NAMES)}, got {value!r}")
