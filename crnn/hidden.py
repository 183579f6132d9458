"""How a CRNN treats its unobserved (hidden) species: two variants with one interface.

- `Integrated` (the default): hidden species are species like the others. They start at zero, are
  integrated with the observed ones and left out of the loss.
- `QuasiSteadyState`: the one hidden species is massless and sits at its quasi-steady state (the
  fast-intermediate limit taken analytically, see `crnn._qss`); only the observed species are
  integrated.

Each variant says which vector field is integrated, how initial states are padded, which orders the
order penalty sees, and how to read rates and a mechanism from the weights.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ._fields import MassAction, QSSField
from ._mechanism import Mechanism
from ._model import CRNN, mass_action_rates
from ._qss import normalize_hidden, qss_orders, qss_rates

__all__ = ["HiddenSpecies", "Integrated", "QuasiSteadyState", "as_hidden"]


class HiddenSpecies:
    """The interface of a hidden-species treatment."""

    name: str = ""

    def check(self, n_hidden: int) -> None:
        """Raise `ValueError` if this treatment cannot take `n_hidden` hidden species."""

    def field(self, floor: float):
        """The vector field that training integrates."""
        raise NotImplementedError

    def initial_state(self, y0_obs, n_hidden: int):
        """The integrated initial state from the observed one (hidden species at zero)."""
        raise NotImplementedError

    def penalty_orders(self, params: CRNN):
        """The `w_in` the order penalty sees."""
        return params.w_in

    def full_states(self, params: CRNN, ys, n_observed: int, floor: float):
        """Every species (observed, then hidden) at the integrated states `ys` (..., n_integrated)."""
        raise NotImplementedError

    def rates(self, params: CRNN, states, n_observed: int, floor: float):
        """Rates of every reaction (in `weights()` order) at full states (..., n_species)."""
        raise NotImplementedError

    def mechanism(self, params: CRNN, species, threshold: float, keep=None) -> Mechanism:
        return params.mechanism(species, threshold, keep=keep)

    def describe(self) -> str:
        return self.name


@dataclasses.dataclass(frozen=True)
class Integrated(HiddenSpecies):
    name = "integrated"

    def field(self, floor: float):
        return MassAction(floor)

    def initial_state(self, y0_obs, n_hidden: int):
        return jnp.concatenate([y0_obs, jnp.zeros((*y0_obs.shape[:-1], n_hidden), y0_obs.dtype)], axis=-1)

    def full_states(self, params, ys, n_observed, floor):
        return ys

    def rates(self, params, states, n_observed, floor):
        w_in, ln_k, _ = params.weights()
        return mass_action_rates(jnp.asarray(states), w_in, ln_k, floor)


@dataclasses.dataclass(frozen=True)
class QuasiSteadyState(HiddenSpecies):
    name = "qss"

    def check(self, n_hidden: int) -> None:
        if n_hidden != 1:
            raise ValueError(f"a quasi-steady-state hidden species needs exactly one extra species, got {n_hidden}")

    def field(self, floor: float):
        return QSSField(floor)

    def initial_state(self, y0_obs, n_hidden: int):
        return y0_obs

    def penalty_orders(self, params):
        return qss_orders(params.w_in, params.w_out_all)

    def full_states(self, params, ys, n_observed, floor):
        w_in, ln_k, w_out = params.weights()
        flat = jnp.asarray(ys).reshape(-1, ys.shape[-1])
        z = jax.vmap(lambda y: qss_rates(y, w_in, ln_k, w_out, floor)[1])(flat)
        return jnp.concatenate([ys, z.reshape(*ys.shape[:-1], 1)], axis=-1)

    def rates(self, params, states, n_observed, floor):
        w_in, ln_k, w_out = params.weights()
        flat = jnp.asarray(states)[..., :n_observed].reshape(-1, n_observed)
        rates = jax.vmap(lambda y: qss_rates(y, w_in, ln_k, w_out, floor)[0])(flat)
        return rates.reshape(*states.shape[:-1], -1)

    def mechanism(self, params, species, threshold, keep=None):
        # A reaction is first order in Z wherever its (unpruned) coefficient of Z is negative, even a
        # coefficient too small to survive pruning (Z then acts as a catalyst); keep that order explicitly.
        w_in, ln_k, w_out = (np.asarray(a, dtype=float) for a in params.weights())
        z_order = (w_out[:, -1] < 0).astype(float)
        if keep is not None:
            keep = np.asarray(keep, dtype=bool)
            w_in, ln_k, w_out, z_order = w_in[keep], ln_k[keep], w_out[keep], z_order[keep]
        w_out = np.where(np.abs(w_out) < threshold, 0.0, w_out)
        w_in = np.clip(-w_out, 0.0, params.species_order_clip)
        w_in[:, -1] = z_order
        return normalize_hidden(Mechanism.from_weights(list(species), w_in, ln_k, w_out), species[-1])


def as_hidden(value) -> HiddenSpecies:
    """A `HiddenSpecies` from an instance or a name (`"integrated"`, alias `"dynamic"`, or `"qss"`)."""
    if isinstance(value, HiddenSpecies):
        return value
    names = {"integrated": Integrated, "dynamic": Integrated, "qss": QuasiSteadyState}
    if isinstance(value, str) and value in names:
        return names[value]()
    raise ValueError(f"hidden must be 'integrated' or 'qss' (or a HiddenSpecies), got {value!r}")
