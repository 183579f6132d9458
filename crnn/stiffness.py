"""Stiffness diagnostics: Jacobian spectra, stiffness ratio, solver work, loss and gradient along a cut.

The pre-equilibrium mechanism ``2A <=> Z (k1, k-1)``, ``Z + A -> B (k2)``
reproduces ``3A -> B`` with rate k only in a limit: with ``K = k1/k-1``,
``Z ~ K [A]^2`` must carry negligible mass (K -> 0), its effective rate
``k2 K`` must equal k (so k2 = k/K -> infinity), and the equilibrium must stay
fast against its drain (k-1 >> k2 [A]). One family with all three is
``K = eps, k-1 = 1/eps^2, k1 = 1/eps, k2 = k/eps`` (`exact_limit`); the
seed's cut keeps K fixed and lets k-1 grow alone (`seed_cut`).

Reference for the pre-equilibrium approximation: e.g. P. Atkins and J. de Paula,
Physical Chemistry, ch. "The rates of chemical reactions" (pre-equilibria).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._loss import data_loss
from ._mechanism import Mechanism
from ._model import mass_action_rhs
from ._simulate import SolverConfig, solve, weights_of

__all__ = [
    "diagnose",
    "exact_limit",
    "jacobian",
    "preequilibrium",
    "seed_cut",
    "spectrum",
    "stiffness_ratio",
]


def jacobian(system, y, floor: float = 0.0):
    """The Jacobian d(dy/dt)/dy at state(s) `y` (shape (..., n) -> (..., n, n))."""
    w_in, ln_k, w_out = weights_of(system)
    y = jnp.asarray(y, dtype=jnp.float64)
    jac = jax.jacfwd(lambda x: mass_action_rhs(x, w_in, ln_k, w_out, floor))
    flat = y.reshape(-1, y.shape[-1])
    return jax.vmap(jac)(flat).reshape(*y.shape, y.shape[-1])


def spectrum(system, ys, floor: float = 0.0) -> np.ndarray:
    """Eigenvalues of the Jacobian at every state of `ys` (..., n) -> complex (..., n)."""
    return np.linalg.eigvals(np.asarray(jacobian(system, ys, floor)))


def stiffness_ratio(eigenvalues, zero_tol: float = 1e-9) -> np.ndarray:
    """`max |Re l| / min |Re l|` over the eigenvalues with Re l < 0 at each state.

    Eigenvalues with `|l| <= zero_tol * max |l|` (conservation laws, species at
    rest) are left out; a state with fewer than one decaying mode gives 1.
    """
    eig = np.asarray(eigenvalues)
    re = -eig.real
    big = np.max(np.abs(eig), axis=-1, keepdims=True)
    decaying = (re > 0) & (np.abs(eig) > zero_tol * np.maximum(big, 1e-300))
    hi = np.where(decaying, re, -np.inf).max(axis=-1)
    lo = np.where(decaying, re, np.inf).min(axis=-1)
    return np.where(np.isfinite(hi) & np.isfinite(lo), hi / np.where(np.isfinite(lo), lo, 1.0), 1.0)


def preequilibrium(
    k1: float, k_minus1: float, k2: float, partner: str = "A", product: str = "B", reactant: str = "A", species=None
) -> Mechanism:
    """``2X <=> Z (k1, k-1)``, ``Z + P -> Q (k2)`` with X = `reactant`, P = `partner`, Q = `product`.

    With partner A it approximates ``3A -> B``, with partner B (product C) ``2A + B -> C``.
    """
    k1, k_minus1, k2 = (repr(float(k)) for k in (k1, k_minus1, k2))
    text = f"2{reactant} <=> Z ; {k1}, {k_minus1}\nZ + {partner} -> {product} ; {k2}"
    return Mechanism.parse(text, species=species)


def seed_cut(k_true: float, K: float, k_minus1):
    """Rate constants of the seed's cut: `K = k1/k-1` and `k2 K = k_true` fixed, k-1 free.

    Returns arrays `(k1, k-1, k2)` for the given `k_minus1` values.
    """
    k_minus1 = np.asarray(k_minus1, dtype=float)
    return K * k_minus1, k_minus1, np.full_like(k_minus1, k_true / K)


def exact_limit(k_true: float, eps, K0: float = 1.0, k_minus1_0: float = 1.0):
    """The family that tends to the third-order law as eps -> 0.

    `K = K0 eps`, `k-1 = k_minus1_0 / eps^2`, `k1 = K k-1 = K0 k_minus1_0 / eps`,
    `k2 = k_true / K`; returns arrays `(k1, k-1, k2)`.
    """
    eps = np.asarray(eps, dtype=float)
    K = K0 * eps
    k_minus1 = k_minus1_0 / eps**2
    return K * k_minus1, k_minus1, k_true / K


@eqx.filter_jit
def _loss_grad_steps(ln_k, w_in, w_out, y0, ys_obs, observed_idx, ts, scale, config):
    def loss_fn(ln_k):
        ys, ok, steps, rejected = jax.vmap(solve, in_axes=(None, 0, None, None))((w_in, ln_k, w_out), y0, ts, config)
        pred = ys[..., observed_idx]
        return data_loss(pred, ys_obs, scale), (ys, ok, steps, rejected)

    (loss, aux), grad = jax.value_and_grad(loss_fn, has_aux=True)(ln_k)
    return loss, grad, aux


@eqx.filter_jit
def _steps(weights, y0, ts, config):
    _, ok, steps, rejected = jax.vmap(solve, in_axes=(None, 0, None, None))(weights, y0, ts, config)
    return ok, steps, rejected


def diagnose(
    mechanism: Mechanism,
    dataset,
    *,
    implicit: SolverConfig | None = None,
    explicit: SolverConfig | None = None,
    experiments=None,
    explicit_experiments: int | None = None,
) -> dict:
    """Loss, gradient, stiffness and solver work of `mechanism` against `dataset`.

    The dataset's species must be among the mechanism's; the others (hidden
    intermediates) start at 0 and are not in the loss. The loss is the scaled
    MAE of `crnn.data_loss` over the chosen experiments (default: the
    training ones).

    **Returns:** a dict with `loss`, `grad_ln_k` (d loss / d ln k_j, through an
    implicit diffrax solve), `stiffness_ratio` (the largest along the
    trajectories), `max_abs_eigenvalue`, `implicit_steps`, `explicit_steps`
    (accepted steps summed over experiments; `explicit_ok` False when the
    explicit solver hit its step budget; with `explicit_experiments` the explicit solver runs on the
    first that many of the experiments only: its step count measures stiffness, and a stiff explicit
    solve is what costs here) and the rejected-step counts. When the
    implicit solve fails (`implicit_ok` False, `loss` inf), the spectrum is taken
    over the finite part of the trajectories.
    """
    implicit = implicit or SolverConfig(solver="kvaerno5", rtol=1e-8, atol=1e-10, max_steps=100_000)
    explicit = explicit or SolverConfig(solver="tsit5", rtol=1e-6, atol=1e-9, max_steps=200_000)
    experiments = np.flatnonzero(dataset.train) if experiments is None else np.asarray(experiments)
    idx = [mechanism.species.index(s) for s in dataset.species]
    w_in, ln_k, w_out = (jnp.asarray(a) for a in mechanism.to_weights())
    y0 = np.zeros((len(experiments), mechanism.n_species))
    y0[:, idx] = dataset.y0[experiments]
    y0 = jnp.asarray(y0)
    ts = jnp.asarray(dataset.ts)
    loss, grad, (ys, ok, steps, rejected) = _loss_grad_steps(
        ln_k, w_in, w_out, y0, jnp.asarray(dataset.ys[experiments]), jnp.asarray(idx), ts, jnp.asarray(dataset.scale()), implicit
    )
    ys = np.asarray(ys)
    finite = np.all(np.isfinite(ys), axis=-1)  # a failed solve pads its trajectory with inf
    eig = spectrum((w_in, ln_k, w_out), ys[finite]) if finite.any() else np.zeros((1, mechanism.n_species), complex)
    ratio = stiffness_ratio(eig)
    n_explicit = len(experiments) if explicit_experiments is None else min(int(explicit_experiments), len(experiments))
    e_ok, e_steps, e_rej = _steps((w_in, ln_k, w_out), y0[:n_explicit], ts, explicit)
    return {
        "loss": float(loss) if bool(np.all(ok)) else float("inf"),
        "grad_ln_k": np.asarray(grad),
        "stiffness_ratio": float(np.max(ratio)),
        "max_abs_eigenvalue": float(np.max(np.abs(eig.real))),
        "implicit_ok": bool(np.all(ok)),
        "implicit_steps": int(np.sum(steps)),
        "implicit_rejected": int(np.sum(rejected)),
        "explicit_ok": bool(np.all(e_ok)),
        "explicit_steps": int(np.sum(e_steps)),
        "explicit_rejected": int(np.sum(e_rej)),
        "explicit_experiments": n_explicit,
    }
