"""The CRNN loss of the seed: scaled mean absolute error plus an order penalty."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["data_loss", "order_penalty"]


def data_loss(pred, data, scale):
    """`sum_i mean_{experiments, times} |pred_i - data_i| / scale_i`.

    **Arguments:**

    - `pred`, `data`: (n_experiments, n_times, n_species) concentrations.
    - `scale`: (n_species,) the species scales sigma_i.

    **Returns:** a scalar. With one species and unit scale it is the plain MAE.
    """
    return jnp.sum(jnp.mean(jnp.abs(pred - data), axis=(0, 1)) / scale)


def order_penalty(w_in, max_order: float = 2.0):
    """`sum_j relu(sum_i w_in[j, i] - max_order)`: total reaction order above `max_order`.

    Zero for a mechanism of uni- and bimolecular reactions (with `max_order=2`).
    """
    return jnp.sum(jax.nn.relu(jnp.sum(w_in, axis=-1) - max_order))
