"""The CRNN loss of the seed: scaled mean absolute error plus an order penalty."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["data_loss", "order_excess"]


def data_loss(pred, data, scale, experiments=None):
    """`sum_i mean_{experiments, times} |pred_i - data_i| / scale_i`: the study's loss.

    **Arguments:**

    - `pred`, `data`: (n_experiments, n_times, n_species) concentrations.
    - `scale`: (n_species,) the species scales sigma_i.
    - `experiments`: optional (n_experiments,) boolean mask (or weights): the mean runs over these
      experiments only (one solve of every experiment gives the loss of each subset; jit-friendly).

    **Returns:** a scalar. With one species and unit scale it is the plain MAE.
    """
    per_experiment = jnp.mean(jnp.abs(pred - data), axis=1)  # (n_experiments, n_species)
    if experiments is None:
        return jnp.sum(jnp.mean(per_experiment, axis=0) / scale)
    w = jnp.asarray(experiments, dtype=per_experiment.dtype)
    return jnp.sum(jnp.sum(w[:, None] * per_experiment, axis=0) / jnp.sum(w) / scale)


def order_excess(w_in, max_total_order: float = 2.0):
    """`sum_j relu(sum_i w_in[j, i] - max_total_order)`: total reaction order above `max_total_order`.

    The unweighted term of the seed's order penalty ("Relu((n_A + n_B + n_C + n_D) - 2)");
    `crnn.fit` multiplies it by its `order_penalty` weight lambda. Zero for a mechanism of uni-
    and bimolecular reactions (with `max_total_order=2`).
    """
    return jnp.sum(jax.nn.relu(jnp.sum(w_in, axis=-1) - max_total_order))
