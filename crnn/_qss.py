"""Quasi-steady-state (QSS) hidden species: the fast, massless-intermediate limit taken analytically.

A CRNN with one hidden species z is read as an elementary mechanism for z:
the reactions that make z (`w_out[j, z] > 0`) do not depend on it, and the
reactions that consume it (`w_out[c, z] < 0`) are first order in it. Its balance

    dz/dt = P(y) - z * sum_c a_c(y),   P = sum_{j makes z} w_out[j, z] r_j(y),
                                       a_c = -w_out[c, z] k_c prod_i y_i^{w_in[c, i]}

is linear in z. In the QSS limit z sits at its root z* = P / sum_c a_c at all
times and holds no mass; the observed species follow
`dy/dt = sum_j w_out[j, obs] r_j(y, z*)`. The flux that enters z leaves it
split among the consuming reactions in proportion to a_c: for the
pre-equilibrium mechanism 2A <=> Z (k1, k-1), Z + A -> B (k2) this gives

    dB/dt = k1 A^2 * k2 A / (k-1 + k2 A),   dA/dt = -3 dB/dt,

the third-order law with rate k1 k2 / k-1 once k2 A << k-1, at finite rate
constants and with no stiff time scale left to integrate: the limit of the
stiffness chapter, taken analytically. This is the quasi-steady-state
approximation that the CRNN authors and Stiff-PINN (Ji et al. 2021) use for
stiff species.

Because z is never observed and holds no mass, its unit is arbitrary: scaling
z by c scales its stoichiometric coefficients by 1/c and the rate constants of
the reactions that consume it by c, and changes nothing observable.
`normalize_hidden` picks the unit in which the largest coefficient of z is 1.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ._mechanism import Mechanism
from ._model import mass_action_rates

__all__ = ["LEAK", "normalize_hidden", "qss_concentration", "qss_law", "qss_orders", "qss_rates", "qss_rhs"]


LEAK = 1e-8  # the small first-order loss of z that keeps z* finite when no reaction consumes it


def qss_orders(w_in, w_out):
    """The orders of a QSS model: as `w_in`, but first order in z (the last column) where z is consumed, zero elsewhere."""
    w_in = jnp.asarray(w_in)
    return w_in.at[..., -1].set((jnp.asarray(w_out)[..., -1] < 0).astype(w_in.dtype))


def _np_set(w_in, hidden, values):
    out = np.array(w_in, dtype=float, copy=True)
    out[..., hidden] = values
    return out


def qss_law(base, s, leak: float = LEAK):
    """The QSS law of the one hidden species z from the rates without their factor z: the package's only copy.

    `base` is a list over reactions of `k_j prod_{i obs} y_i^{w_in[j, i]}` (arrays over a batch, as the
    species-major field holds them, or scalars), `s` the list of z's net coefficients `w_out[j, z]`. Returns
    `(made, used, D, z, g)`: the production and consumption weights `max(s_j, 0)`, `max(-s_j, 0)`,
    `D = sum_j used_j base_j + leak`, `z* = sum_j made_j base_j / D` and each reaction's factor `g_j`
    (z* where the reaction consumes z, 1 elsewhere), so that the rates are `base_j g_j`.
    """
    n_r = len(base)
    made = [jnp.maximum(v, 0.0) for v in s]
    used = [jnp.maximum(-v, 0.0) for v in s]
    D = sum(used[j] * base[j] for j in range(n_r)) + leak
    z = sum(made[j] * base[j] for j in range(n_r)) / D
    g = [jnp.where(s[j] < 0, z, 1.0) for j in range(n_r)]
    return made, used, D, z, g


def _law_of_state(y_obs, w_in, ln_k, w_out, floor, leak):
    base = mass_action_rates(y_obs, w_in, ln_k, floor)  # computed once: the rates without z
    n_r = base.shape[-1]
    *_, z, g = qss_law([base[j] for j in range(n_r)], [w_out[j, y_obs.shape[0]] for j in range(n_r)], leak)
    return base, z, g


def qss_concentration(y_obs, w_in, ln_k, w_out, floor: float = 1e-5, leak: float = LEAK):
    """z* = P / (sum_c a_c + leak) for the single hidden species (the last column).

    **Arguments:**

    - `y_obs`: (n_observed,) observed concentrations.
    - `w_in`, `ln_k`, `w_out`: CRNN weights over the observed species plus one hidden species.
    - `floor`: concentration floor of the rate law for the observed species.
    - `leak`: a small first-order loss of z that keeps z* finite when no reaction consumes it.
    """
    return _law_of_state(y_obs, w_in, ln_k, w_out, floor, leak)[1]


def qss_rates(y_obs, w_in, ln_k, w_out, floor: float = 1e-5, leak: float = LEAK):
    """Reaction rates with the hidden species at its QSS value; returns `(rates, z*)`."""
    base, z, g = _law_of_state(y_obs, w_in, ln_k, w_out, floor, leak)
    return base * jnp.stack(g), z


def qss_rhs(y_obs, w_in, ln_k, w_out, floor: float = 1e-5):
    """`dy_obs/dt` with the single hidden species (last column) eliminated by QSS."""
    rates, _ = qss_rates(y_obs, w_in, ln_k, w_out, floor)
    n_obs = y_obs.shape[0]
    return jnp.sum(rates[:, None] * w_out[:, :n_obs], axis=0)


def normalize_hidden(mechanism: Mechanism, hidden: str) -> Mechanism:
    """The same QSS model in the unit of `hidden` where its largest |coefficient| is 1.

    Coefficients of `hidden` are divided by c = max |w_out[:, hidden]|, the rate
    constants of the reactions that are first order in it (those that consume it,
    and those with a positive order in it already) multiplied by c, and its
    orders set to 1 there, 0 elsewhere. Observable behaviour is unchanged.
    """
    w_in, ln_k, w_out = mechanism.to_weights()
    h = mechanism.species.index(hidden)
    c = np.max(np.abs(w_out[:, h]))
    if c == 0:
        return mechanism
    # first order in the hidden species where it is consumed, or where the mechanism already says so
    # (a coefficient pruned to zero: the species then acts as a catalyst)
    first_order = (w_out[:, h] < 0) | (w_in[:, h] > 0)
    w_out = w_out.copy()
    w_out[:, h] /= c
    ln_k = ln_k + np.where(first_order, np.log(c), 0.0)
    w_in = _np_set(w_in, h, first_order.astype(float))
    return Mechanism.from_weights(list(mechanism.species), w_in, ln_k, w_out)
