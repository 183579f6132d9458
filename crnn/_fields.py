"""Vector fields of the training integrators: one interface, static `eqx.Module`s.

A field is the right-hand side `dy/dt = f(y)` of a CRNN with weights `p = (w_in, ln_k, w_out)`, in
two forms:

- `rhs(y, w_in, ln_k, w_out)`: one state, an (n,) array (explicit and adaptive integrators);
- species-major, for the Rosenbrock solver: a state is a list of n arrays over a batch
  (experiments), and the field gives `f(y, p)`, `f_jac(y, p)` (f and its Jacobian) and the
  vector-Jacobian products `vjp(y, p, f_bar, jac_bar)` of both, with parameter cotangents per batch
  element (summed by the solver once, at the end).

Fields are `eqx.Module`s with static fields only: two fields with the same settings compare equal
and hash alike, so a jitted function that takes one as an argument compiles once per field.

- `MassAction(floor)`: the CRNN's rate law (`crnn._model.mass_action_rates`), derivatives written out.
- `AutodiffField(rhs, floor)`: any smooth right-hand side, evaluated at `max(y, floor)`; derivatives
  from JAX.
- `QSSField(floor)`: the observed species with the one hidden species in quasi-steady state
  (`crnn._qss`): law and Jacobian written out species-major, vector-Jacobian products from JAX
  (an `AutodiffField`).

The Jacobian is always the derivative of the smooth law at `max(y, floor)` (not the derivative of
the floored law, which is zero below the floor): it keeps the linearisation of a Rosenbrock step
right for a species that starts at zero and is consumed at a stiff first-order rate. Below the floor
the law itself is constant in y, and the vector-Jacobian products say so (they are the exact
derivatives of what `f` and `f_jac` compute).
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from ._model import floored_logs, mass_action_rhs, rates_from_logs
from ._qss import qss_law, qss_rhs

__all__ = ["AutodiffField", "Field", "FixedMassAction", "MassAction", "QSSField"]


class Field(eqx.Module):
    """The interface of a vector field (see the module's docstring)."""

    def rhs(self, y, w_in, ln_k, w_out):
        raise NotImplementedError

    def f(self, y, p):
        raise NotImplementedError

    def f_jac(self, y, p):
        raise NotImplementedError

    def vjp(self, y, p, f_bar, jac_bar=None):
        """Cotangents of `y` (a list) and of `p` (nested lists over the batch, not yet summed)."""
        raise NotImplementedError


class MassAction(Field):
    """`dy_i/dt = sum_j w_out[j, i] r_j`, `r_j = exp(ln_k_j + sum_k w_in[j, k] ln max(y_k, floor))`.

    The Jacobian is `J[i, k] = sum_j w_out[j, i] w_in[j, k] r_j / max(y_k, floor)`: the derivative of
    the smooth mass-action law evaluated at `max(y, floor)`.
    """

    floor: float = eqx.field(static=True, default=1e-5)

    def rhs(self, y, w_in, ln_k, w_out):
        return mass_action_rhs(y, w_in, ln_k, w_out, self.floor)

    def _pieces(self, y, p):
        w_in, ln_k, _ = p
        log_y = floored_logs(y, self.floor)
        inv = [1.0 / jnp.maximum(v, self.floor) for v in y]
        return log_y, inv, rates_from_logs(log_y, w_in, ln_k)

    def f(self, y, p):
        _, _, w_out = p
        r = rates_from_logs(floored_logs(y, self.floor), p[0], p[1])
        return [sum(w_out[j, i] * r[j] for j in range(len(r))) for i in range(len(y))]

    def f_jac(self, y, p):
        w_in, _, w_out = p
        n = len(y)
        _, inv, r = self._pieces(y, p)
        f = [sum(w_out[j, i] * r[j] for j in range(len(r))) for i in range(n)]
        c = [[w_in[j, k] * r[j] * inv[k] for k in range(n)] for j in range(len(r))]
        jac = [[sum(w_out[j, i] * c[j][k] for j in range(len(r))) for k in range(n)] for i in range(n)]
        return f, jac

    def vjp(self, y, p, f_bar, jac_bar=None):
        w_in, _, w_out = p
        n = len(y)
        log_y, inv, r = self._pieces(y, p)
        n_r = len(r)
        r_bar = [sum(w_out[j, i] * f_bar[i] for i in range(n)) for j in range(n_r)]
        w_out_bar = [[f_bar[i] * r[j] for i in range(n)] for j in range(n_r)]
        w_in_bar = [[0.0] * n for _ in range(n_r)]
        inv_bar = [0.0] * n
        if jac_bar is not None:
            for j in range(n_r):
                t = [sum(w_out[j, i] * jac_bar[i][k] for i in range(n)) for k in range(n)]
                q = [w_in[j, k] * inv[k] for k in range(n)]
                for i in range(n):
                    w_out_bar[j][i] = w_out_bar[j][i] + r[j] * sum(jac_bar[i][k] * q[k] for k in range(n))
                r_bar[j] = r_bar[j] + sum(t[k] * q[k] for k in range(n))
                for k in range(n):
                    w_in_bar[j][k] = w_in_bar[j][k] + t[k] * r[j] * inv[k]
                    inv_bar[k] = inv_bar[k] + t[k] * w_in[j, k] * r[j]
        s = [r_bar[j] * r[j] for j in range(n_r)]
        for j in range(n_r):
            for k in range(n):
                w_in_bar[j][k] = w_in_bar[j][k] + s[j] * log_y[k]
        log_bar = [sum(s[j] * w_in[j, k] for j in range(n_r)) for k in range(n)]
        y_bar = [jnp.where(y[k] > self.floor, (log_bar[k] - inv_bar[k] * inv[k]) * inv[k], 0.0) for k in range(n)]
        return y_bar, (w_in_bar, s, w_out_bar)


class AutodiffField(Field):
    """A smooth right-hand side `rhs(y, w_in, ln_k, w_out)` of one state (an (n,) array), used at `max(y, floor)`.

    Jacobian and vector-Jacobian products come from JAX (`jacfwd`, `vjp`); slower than `MassAction`,
    right for any differentiable law (e.g. a hidden species in quasi-steady state, `QSSField`).
    The function is a static field: fields compare equal when they hold the same function object.
    """

    function: Callable | None = eqx.field(static=True, default=None)
    floor: float = eqx.field(static=True, default=0.0)

    def law(self, y, w_in, ln_k, w_out):
        """The smooth law at a state `y` already floored."""
        return self.function(y, w_in, ln_k, w_out)

    def rhs(self, y, w_in, ln_k, w_out):
        return self.law(jnp.maximum(y, self.floor), w_in, ln_k, w_out)

    def _batched(self, y):
        ys = jnp.stack(y, axis=-1)  # (..., n)
        return ys.shape[:-1], ys.reshape(-1, ys.shape[-1])

    def f(self, y, p):
        shape, flat = self._batched(y)
        out = jax.vmap(lambda v: self.rhs(v, *p))(flat).reshape(*shape, -1)
        return [out[..., i] for i in range(len(y))]

    def f_jac(self, y, p):
        shape, flat = self._batched(y)
        floored = jnp.maximum(flat, self.floor)
        fv = jax.vmap(lambda v: self.law(v, *p))(floored).reshape(*shape, -1)
        jv = jax.vmap(jax.jacfwd(lambda v: self.law(v, *p)))(floored).reshape(*shape, len(y), len(y))
        n = len(y)
        return [fv[..., i] for i in range(n)], [[jv[..., i, k] for k in range(n)] for i in range(n)]

    def vjp(self, y, p, f_bar, jac_bar=None):
        w_in = p[0]
        if jac_bar is None:
            _, pull = jax.vjp(lambda yy, pp: self.f(yy, pp), list(y), p)
            y_bar, p_bar = pull(list(f_bar))
        else:
            _, pull = jax.vjp(lambda yy, pp: self.f_jac(yy, pp), list(y), p)
            y_bar, p_bar = pull((list(f_bar), [list(row) for row in jac_bar]))
        # p_bar is already summed over the batch: report it on the first element only.
        first = (jnp.arange(y[0].size).reshape(y[0].shape) == 0).astype(y[0].dtype)
        n_r, n_c = w_in.shape
        w_in_bar = [[p_bar[0][j, k] * first for k in range(n_c)] for j in range(n_r)]
        lnk_bar = [p_bar[1][j] * first for j in range(n_r)]
        w_out_bar = [[p_bar[2][j, k] * first for k in range(n_c)] for j in range(n_r)]
        return list(y_bar), (w_in_bar, lnk_bar, w_out_bar)


class QSSField(AutodiffField):
    """The observed species of a CRNN whose one hidden species (the last column) sits at its
    quasi-steady state (the law of `crnn._qss.qss_law`, the package's one copy, which `qss_rhs` also uses), floored
    at `floor`.

    With `b_j = exp(ln_k_j + sum_i w_in[j, i] ln y_i)` (observed species only), the production
    `P = sum_j max(s_j, 0) b_j` and consumption `D = sum_j max(-s_j, 0) b_j + leak` of z (`s_j = w_out[j, z]`),
    `z* = P / D` and the rates `r_j = b_j g_j` (`g_j = z*` where z is consumed, `s_j < 0`; 1 elsewhere), the
    Jacobian is `J[i, k] = sum_j w_out[j, i] dr_jk` with

        db_jk = b_j w_in[j, k] / y_k,   dz_k = sum_j (max(s_j, 0) - z* max(-s_j, 0)) db_jk / D,
        dr_jk = db_jk g_j + c_j b_j dz_k   (c_j = 1 where z is consumed, 0 elsewhere).

    Written species-major (scalar weights times batch arrays) like `MassAction`, so XLA fuses it; the
    vector-Jacobian products are JAX's of these expressions (tests/test_integrate.py checks both against JAX's
    derivatives of the closed-form law)."""

    def __init__(self, floor: float = 1e-5):
        self.function = None
        self.floor = floor

    def law(self, y, w_in, ln_k, w_out):
        # y is floored by the caller; half the floor keeps the law's own floor inactive (derivative 1)
        return qss_rhs(y, w_in, ln_k, w_out, floor=0.5 * self.floor)

    def _parts(self, y, p):
        w_in, ln_k, w_out = p
        n, n_r = len(y), ln_k.shape[-1]
        floored = [jnp.maximum(v, self.floor) for v in y]
        base = rates_from_logs([jnp.log(v) for v in floored], w_in, ln_k)
        s = [w_out[j, n] for j in range(n_r)]
        return (floored, base, s, *qss_law(base, s))

    @staticmethod
    def _sum(w_out, base, g, n):
        return [sum(w_out[j, i] * base[j] * g[j] for j in range(len(base))) for i in range(n)]

    def f(self, y, p):
        _, base, _, _, _, _, _, g = self._parts(y, p)
        return self._sum(p[2], base, g, len(y))

    def f_jac(self, y, p):
        w_in, _, w_out = p
        n = len(y)
        floored, base, s, made, used, D, z, g = self._parts(y, p)
        n_r = len(base)
        inv = [1.0 / v for v in floored]
        db = [[base[j] * w_in[j, k] * inv[k] for k in range(n)] for j in range(n_r)]
        u = [(made[j] - z * used[j]) / D for j in range(n_r)]
        dz = [sum(u[j] * db[j][k] for j in range(n_r)) for k in range(n)]
        dr = [[db[j][k] * g[j] + jnp.where(s[j] < 0, base[j] * dz[k], 0.0) for k in range(n)] for j in range(n_r)]
        f = self._sum(w_out, base, g, n)
        jac = [[sum(w_out[j, i] * dr[j][k] for j in range(n_r)) for k in range(n)] for i in range(n)]
        return f, jac


class FixedMassAction(Field):
    """`MassAction` for one fixed stoichiometry, held as static numbers: only the ln k are parameters.

    `w_in` and `w_out` (tuples of rows, reactions x species; `w_out` the net change) are part of the
    field, so each stoichiometry compiles on its own, and the products with its zero entries are never
    written: a library of bimolecular reactions touches at most four species per reaction, so the
    Jacobian and its vector-Jacobian product cost a few terms per reaction instead of n^2. The terms
    that remain are the dense field's, in the same order (a weight of 1 multiplies nothing): where
    every rate is finite the two fields give the same numbers to the last bit. The weights in `p` are
    not read, and their cotangents are zero (`constant_weights`). For `crnn.discover`, whose
    libraries fix the stoichiometry.
    """

    floor: float = eqx.field(static=True, default=1e-5)
    w_in: tuple = eqx.field(static=True, default=())
    w_out: tuple = eqx.field(static=True, default=())
    constant_weights: bool = eqx.field(static=True, default=True)

    @classmethod
    def of(cls, w_in, w_out, floor: float = 1e-5) -> FixedMassAction:
        """The field of the stoichiometry `(w_in, w_out)` (arrays, reactions x species)."""
        rows = lambda w: tuple(tuple(float(v) for v in row) for row in w)
        return cls(floor, rows(w_in), rows(w_out))

    def _terms(self):
        n_r = len(self.w_in)
        n = len(self.w_in[0]) if n_r else 0
        reactants = [[(k, c) for k, c in enumerate(self.w_in[j]) if c != 0] for j in range(n_r)]
        changes = [[(i, c) for i, c in enumerate(self.w_out[j]) if c != 0] for j in range(n_r)]
        by_species = [[(j, self.w_out[j][i]) for j in range(n_r) if self.w_out[j][i] != 0] for i in range(n)]
        return reactants, changes, by_species

    @staticmethod
    def _times(c, x):
        return x if c == 1 else c * x

    def _rates(self, log_y, ln_k, reactants, changes):
        return [
            jnp.exp(ln_k[j] + sum(self._times(c, log_y[k]) for k, c in reactants[j])) if changes[j] else None
            for j in range(len(reactants))
        ]

    def _sum(self, terms, zero):
        out = sum(terms)
        return zero if isinstance(out, int) else out

    def rhs(self, y, w_in, ln_k, w_out):
        return mass_action_rhs(y, jnp.asarray(self.w_in), ln_k, jnp.asarray(self.w_out), self.floor)

    def f(self, y, p):
        reactants, changes, by_species = self._terms()
        r = self._rates(floored_logs(y, self.floor), p[1], reactants, changes)
        zero = jnp.zeros_like(y[0])
        return [self._sum((self._times(c, r[j]) for j, c in by_species[i]), zero) for i in range(len(y))]

    def f_jac(self, y, p):
        n = len(y)
        reactants, changes, by_species = self._terms()
        inv = [1.0 / jnp.maximum(v, self.floor) for v in y]
        r = self._rates(floored_logs(y, self.floor), p[1], reactants, changes)
        zero = jnp.zeros_like(y[0])
        f = [self._sum((self._times(c, r[j]) for j, c in by_species[i]), zero) for i in range(n)]
        c = [{k: self._times(w, r[j]) * inv[k] for k, w in reactants[j]} if changes[j] else {} for j in range(len(r))]
        jac = [
            [self._sum((self._times(w, c[j][k]) for j, w in by_species[i] if k in c[j]), zero) for k in range(n)]
            for i in range(n)
        ]
        return f, jac

    def vjp(self, y, p, f_bar, jac_bar=None):
        n = len(y)
        reactants, changes, _ = self._terms()
        n_r = len(reactants)
        log_y = floored_logs(y, self.floor)
        inv = [1.0 / jnp.maximum(v, self.floor) for v in y]
        r = self._rates(log_y, p[1], reactants, changes)
        r_bar = [sum(self._times(c, f_bar[i]) for i, c in changes[j]) for j in range(n_r)]
        inv_bar = [0.0] * n
        if jac_bar is not None:
            for j in range(n_r):
                if not changes[j]:
                    continue
                t = {k: sum(self._times(c, jac_bar[i][k]) for i, c in changes[j]) for k, _ in reactants[j]}
                r_bar[j] = r_bar[j] + sum(t[k] * self._times(w, inv[k]) for k, w in reactants[j])
                for k, w in reactants[j]:
                    inv_bar[k] = inv_bar[k] + self._times(w, t[k]) * r[j]
        s = [r_bar[j] * r[j] if changes[j] else 0.0 for j in range(n_r)]
        log_bar = [
            sum(self._times(c, s[j]) for j in range(n_r) for kk, c in reactants[j] if kk == k and changes[j]) for k in range(n)
        ]
        y_bar = [jnp.where(y[k] > self.floor, (log_bar[k] - inv_bar[k] * inv[k]) * inv[k], 0.0) for k in range(n)]
        none = [[0.0] * n for _ in range(n_r)]
        return y_bar, (none, s, none)
