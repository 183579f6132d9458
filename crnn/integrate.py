"""A fixed-step Runge-Kutta integrator on the sampling grid, for training.

Training solves the same ODE thousands of times at low accuracy needs; an
adaptive diffrax solve carries a per-step overhead that dominates these
tiny systems on a CPU. `rk4_solve` takes `substeps` classical RK4 steps per
sampling interval inside one `lax.scan`, which XLA compiles into a tight loop.
It is only right while the step is small against the fastest time scale:
on stiff parameters it blows up (non-finite values), which the training loop
detects and treats as a failed solve. Learned mechanisms are re-evaluated
with an adaptive diffrax solve after training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .model import mass_action_rhs

__all__ = ["rk4_solve"]


def rk4_solve(weights, y0, ts, substeps: int = 1, floor: float = 1e-5, rhs=mass_action_rhs):
    """States at `ts` (assumed equally spaced) of `dy/dt = w_out^T r(y)` from `y0`.

    **Arguments:**

    - `weights`: `(w_in, ln_k, w_out)`.
    - `y0`: (n_species,) initial state at `ts[0]`.
    - `ts`: (n_times,) equally spaced times.
    - `substeps`: RK4 steps per sampling interval.
    - `floor`: concentration floor of the rate law.
    - `rhs`: `rhs(y, w_in, ln_k, w_out, floor)`; mass action by default
      (`crnn.qss.qss_rhs` for a hidden species in quasi-steady state).

    **Returns:** `(ys, ok)`, `ys` of shape (n_times, n_species), `ok` whether all are finite.
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
