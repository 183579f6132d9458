"""The Chemical Reaction Neural Network: parameters and right-hand side.

Every hidden unit of a CRNN is one mass-action reaction (Ji & Deng 2021)::

    r_j   = exp( ln_k[j] + sum_i w_in[j, i] * ln y_i )
    dy/dt = sum_j w_out[j, :] * r_j

Reference: W. Ji and S. Deng, "Autonomous discovery of unknown reaction pathways
from data by chemical reaction neural network", J. Phys. Chem. A 125, 1082 (2021).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._mechanism import Mechanism

__all__ = ["CRNN", "floored_logs", "mass_action_rates", "mass_action_rhs", "rates_from_logs"]


def floored_logs(ys, floor: float):
    """`ln max(y_i, floor)` of every species of a species-major state (a sequence of arrays)."""
    return [jnp.log(jnp.maximum(v, floor)) for v in ys]


def rates_from_logs(log_y, w_in, ln_k):
    """`r_j = exp(ln_k[j] + sum_i w_in[j, i] ln y_i)` for species-major logs; a list over reactions.

    Written as scalar-times-array sums rather than matrix products: XLA fuses them into a few
    elementwise loops over the batch, much faster than batched tiny matmuls.
    """
    n_s = len(log_y)
    return [jnp.exp(ln_k[j] + sum(w_in[j, i] * log_y[i] for i in range(n_s))) for j in range(ln_k.shape[-1])]


def mass_action_rates(y, w_in, ln_k, floor: float = 0.0):
    """Reaction rates `r_j = k_j prod_i y_i^{w_in[j, i]}`: the one mass-action law of the package.

    `y` is a state (an array whose last axis is the species) or a species-major state (a list of
    arrays over a batch, as the Rosenbrock solver holds it); the rates come back in the same form
    (last axis reactions, or a list over reactions). Only the first `n` columns of `w_in` are read
    for `n` species in `y`, so the rates without the factors of further (e.g. hidden) species are the
    same call on fewer species. With `floor > 0` the rates are computed as the CRNN does,
    `exp(ln_k + w_in @ ln max(y, floor))`; with `floor = 0` as a product of powers of `max(y, 0)`,
    exact also where a concentration is zero. (The array form is written with broadcasts, the
    species-major one with scalar-times-array sums: each is what XLA compiles and runs fastest in its
    layout.)
    """
    if isinstance(y, (list, tuple)):
        if floor > 0:
            return rates_from_logs(floored_logs(y, floor), w_in, ln_k)
        return [jnp.exp(ln_k[j]) * jnp.prod(jnp.stack([_power(v, w_in[j, i]) for i, v in enumerate(y)]), axis=0)
                for j in range(ln_k.shape[-1])]  # fmt: skip
    w = w_in[..., : y.shape[-1]]
    if floor > 0:
        return jnp.exp(ln_k + jnp.sum(w * jnp.log(jnp.maximum(y, floor))[..., None, :], axis=-1))
    return jnp.exp(ln_k) * jnp.prod(_power(y[..., None, :], w), axis=-1)


def _power(y, w):
    """`max(y, 0) ** w` for orders `w >= 0`, with `0 ** 0 = 1`, differentiable in `w` also at `w = 0`
    (`y^w ln y` where y > 0; a power written with `where(w > 0, ...)` would have no derivative there)."""
    positive = y > 0
    return jnp.where(positive, jnp.exp(w * jnp.log(jnp.where(positive, y, 1.0))), jnp.where(w > 0, 0.0, 1.0))


def mass_action_rhs(y, w_in, ln_k, w_out, floor: float = 0.0):
    """`dy/dt = w_out^T r(y)` of a state `y` (last axis species) for weights with rows reactions and columns species."""
    r = mass_action_rates(y, w_in, ln_k, floor)
    return jnp.sum(r[..., :, None] * w_out, axis=-2)


class CRNN(eqx.Module):
    """CRNN parameters `(w_in, ln_k, w_out)` as a pytree.

    In the tied variant (the reference CRNN) the orders are not free parameters:
    `w_in = clip(-w_out, 0, species_order_clip)`. In the untied variant
    `w_in` is a parameter of its own (clipped to the same range), so reaction
    orders may differ from the reactant stoichiometry.

    **Fields:**

    - `w_out`: (n_reactions, n_species) net stoichiometry.
    - `ln_k`: (n_reactions,) log rate constants (the seed's `w_b`).
    - `w_in_free`: (n_reactions, n_species) orders, or `None` when tied.
    - `species_order_clip`: the clip of `w_in` (2.5 in the reference).
    - `ln_k_reverse`: (n_reactions,) log rate constants of the reverse
      directions, or `None`. A reversible CRNN runs every reaction both ways:
      reaction j forwards with `ln_k[j]` and backwards (stoichiometry
      `-w_out[j]`, orders tied to its own reactant side, i.e. the products of j)
      with `ln_k_reverse[j]`; `weights()` lists the forward reactions, then the
      reverse ones.
    """

    w_out: jax.Array
    ln_k: jax.Array
    w_in_free: jax.Array | None = None
    species_order_clip: float = eqx.field(static=True, default=2.5)
    ln_k_reverse: jax.Array | None = None

    @property
    def tied(self) -> bool:
        return self.w_in_free is None

    @property
    def reversible(self) -> bool:
        return self.ln_k_reverse is not None

    @property
    def w_out_all(self) -> jax.Array:
        """Net stoichiometry of all reactions: the forward ones, then (if reversible) the reverse ones."""
        if self.ln_k_reverse is None:
            return self.w_out
        return jnp.concatenate([self.w_out, -self.w_out], axis=-2)

    @property
    def ln_k_all(self) -> jax.Array:
        if self.ln_k_reverse is None:
            return self.ln_k
        return jnp.concatenate([self.ln_k, self.ln_k_reverse], axis=-1)

    @property
    def n_reactions(self) -> int:
        return self.w_out.shape[-2]

    @property
    def n_species(self) -> int:
        return self.w_out.shape[-1]

    @property
    def w_in(self) -> jax.Array:
        source = -self.w_out_all if self.w_in_free is None else self.w_in_free
        return jnp.clip(source, 0.0, self.species_order_clip)

    def weights(self):
        """`(w_in, ln_k, w_out)`, rows reactions (reverse directions after the forward ones), columns species."""
        return self.w_in, self.ln_k_all, self.w_out_all

    @classmethod
    def init(
        cls,
        key,
        n_species: int,
        n_reactions: int,
        *,
        tied: bool = True,
        weight_scale: float = 0.1,
        ln_k_range: tuple[float, float] = (-4.0, 0.0),
        species_order_clip: float = 2.5,
        reversible: bool = False,
    ) -> CRNN:
        """Random initial parameters.

        `w_out ~ N(0, weight_scale^2)`, `ln_k ~ U(ln_k_range)` (and so the reverse
        rates of a reversible CRNN); untied orders start at `clip(-w_out, 0)` plus
        `|N(0, weight_scale^2)|`.
        """
        if reversible and not tied:
            raise ValueError("a reversible CRNN needs tied orders")
        k1, k2, k3 = jax.random.split(key, 3)
        k4 = jax.random.fold_in(key, 4)  # reverse rates; leaves the draws of irreversible CRNNs unchanged
        w_out = weight_scale * jax.random.normal(k1, (n_reactions, n_species))
        lo, hi = ln_k_range
        ln_k = jax.random.uniform(k2, (n_reactions,), minval=lo, maxval=hi)
        w_in_free = None
        if not tied:
            w_in_free = jnp.clip(-w_out, 0.0) + jnp.abs(weight_scale * jax.random.normal(k3, (n_reactions, n_species)))
        ln_k_reverse = jax.random.uniform(k4, (n_reactions,), minval=lo, maxval=hi) if reversible else None
        return cls(w_out, ln_k, w_in_free, species_order_clip, ln_k_reverse)

    @classmethod
    def from_mechanism(cls, mechanism: Mechanism, *, tied: bool | None = None, species_order_clip: float = 2.5) -> CRNN:
        """The CRNN whose weights are those of `mechanism`.

        `tied=None` picks the tied variant when the mechanism's orders are its
        reactant coefficients (and within the clip), the untied one otherwise.
        """
        w_in, ln_k, w_out = (jnp.asarray(a) for a in mechanism.to_weights())
        tied_possible = bool(np.allclose(np.clip(-np.asarray(w_out), 0, species_order_clip), np.asarray(w_in)))
        if tied is None:
            tied = tied_possible
        if tied and not tied_possible:
            raise ValueError("mechanism orders differ from its reactant coefficients; use tied=False")
        return cls(w_out, ln_k, None if tied else w_in, species_order_clip)

    def mechanism(self, species, threshold: float = 0.0, keep=None) -> Mechanism:
        """The mechanism of these weights, entries with |w| < `threshold` set to zero.

        `keep`, booleans over the reactions of `weights()`, drops the others.
        """
        w_in, ln_k, w_out = (np.asarray(a, dtype=float) for a in self.weights())
        if keep is not None:
            keep = np.asarray(keep, dtype=bool)
            w_in, ln_k, w_out = w_in[keep], ln_k[keep], w_out[keep]
        w_out = np.where(np.abs(w_out) < threshold, 0.0, w_out)
        if self.tied:
            w_in = np.clip(-w_out, 0.0, self.species_order_clip)
        else:
            w_in = np.where(np.abs(w_in) < threshold, 0.0, w_in)
        return Mechanism.from_weights(list(species), w_in, ln_k, w_out)
