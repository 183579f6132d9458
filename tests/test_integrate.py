"""The training integrators against scipy's Radau, along the stiff pre-equilibrium limit, and their gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from crnn import Dataset, Mechanism
from crnn._model import mass_action_rhs
from crnn._rosenbrock import step_grid
from crnn.integrate import RK4, Adaptive, AutodiffField, FixedMassAction, MassAction, Rosenbrock
from crnn.results import DATA
from crnn.stiffness import exact_limit, preequilibrium, spectrum, stiffness_ratio

TS = np.linspace(0.0, 40.0, 100)  # the reference protocol's sampling grid (dt = 0.40)


def radau(mechanism, y0, ts=TS):
    """Exact mass action by scipy's Radau (rtol 1e-10), one row of y0 at a time."""
    w_in, ln_k, w_out = mechanism.to_weights()
    k = np.exp(ln_k)

    def f(t, y):
        return (k * np.prod(np.maximum(y, 0.0)[None, :] ** w_in, axis=1)) @ w_out

    def jac(t, y):
        r = k * np.prod(np.maximum(y, 0.0)[None, :] ** w_in, axis=1)
        return (w_out.T * r) @ (w_in / np.maximum(y, 1e-300)[None, :])

    out = [solve_ivp(f, (ts[0], ts[-1]), y, "Radau", t_eval=ts, rtol=1e-10, atol=1e-13, jac=jac).y.T for y in y0]
    return np.stack(out)


def y0_hidden(n=8, seed=0):
    a = np.random.default_rng(seed).uniform(0.2, 1.2, n)
    return np.stack([a, np.zeros(n), np.zeros(n)], axis=1)  # A, B, Z


@pytest.mark.parametrize("eps", [1.0, 0.1, 1e-2, 1e-3])
def test_rosenbrock_follows_the_exact_limit_family(eps):
    # Chapter 4's family: K = eps, k-1 = 1/eps^2, k1 = 1/eps, k2 = 0.1/eps; at eps = 1e-3 the
    # stiffness ratio along the data is ~4e7 and h |lambda| ~ 4e5 for the 0.40 sampling interval.
    mech = preequilibrium(*(float(v) for v in exact_limit(0.1, eps)), species=["A", "B", "Z"])
    y0 = y0_hidden()
    reference = radau(mech, y0)
    ys, ok = Rosenbrock().solve(MassAction(1e-5), tuple(jnp.asarray(a) for a in mech.to_weights()), jnp.asarray(y0), TS)
    assert bool(ok)
    assert np.max(np.abs(np.asarray(ys)[..., :2] - reference[..., :2])) < 1e-3
    if eps == 1e-3:
        ratio = stiffness_ratio(spectrum(mech, reference[:, 1:]))
        assert ratio.max() > 1e7

    def loss(ln_k):
        w_in, _, w_out = (jnp.asarray(a) for a in mech.to_weights())
        return jnp.sum(Rosenbrock().solve(MassAction(1e-5), (w_in, ln_k, w_out), jnp.asarray(y0), TS)[0][..., 1])

    grad = jax.grad(loss)(jnp.asarray(mech.to_weights()[1]))
    assert np.all(np.isfinite(np.asarray(grad)))


def test_rosenbrock_gives_the_positive_control_its_data_back():
    data = Dataset.load(DATA / "two_step_hidden_Z.csv")
    truth = Mechanism.parse(data.metadata["mechanism"], species=["A", "B", "Z"])
    y0 = np.concatenate([data.y0, np.zeros((data.n_experiments, 1))], axis=1)
    ys, ok = Rosenbrock().solve(MassAction(1e-5), tuple(jnp.asarray(a) for a in truth.to_weights()), jnp.asarray(y0), data.ts)
    assert bool(ok) and np.max(np.abs(np.asarray(ys)[..., :2] - data.ys)) < 1e-3


def test_rk4_blows_up_where_rosenbrock_does_not():
    mech = preequilibrium(*(float(v) for v in exact_limit(0.1, 0.1)), species=["A", "B", "Z"])  # k-1 = 100
    weights = tuple(jnp.asarray(a) for a in mech.to_weights())
    _, ok = RK4().solve(MassAction(1e-5), weights, jnp.asarray(y0_hidden()), TS)
    assert not bool(ok)


@pytest.mark.parametrize(
    "integrator, tol",
    [
        (Rosenbrock(), 2e-4),
        (Rosenbrock(substeps=2), 1e-4),
        (Rosenbrock(tableau="ros2", substeps=4), 1e-3),
        (RK4(), 2e-4),
        (Adaptive(), 1e-6),
    ],
)
def test_integrators_agree_with_radau_on_the_classic_mechanism(integrator, tol, classic):
    y0 = np.zeros((4, 5))
    y0[:, :2] = np.random.default_rng(3).uniform(0.2, 1.2, (4, 2))
    weights = tuple(jnp.asarray(a) for a in classic.to_weights())
    ys, ok = integrator.solve(MassAction(1e-12), weights, jnp.asarray(y0), TS)
    assert bool(ok) and np.max(np.abs(np.asarray(ys) - radau(classic, y0))) < tol


def test_rodas3_converges_at_third_order():
    # Halving every step divides the error at the end by about 2^3 = 8 (order 3; with the graded start off).
    mech = preequilibrium(2.0, 1.0, 0.5, species=["A", "B", "Z"])
    y0 = y0_hidden(4)
    ts = np.linspace(0.0, 10.0, 11)
    reference = radau(mech, y0, ts)
    weights = tuple(jnp.asarray(a) for a in mech.to_weights())
    errors = []
    for substeps in (4, 8, 16):
        integrator = Rosenbrock(substeps=substeps, first_step=1.0, growth=2.0)
        ys, _ = integrator.solve(MassAction(1e-12), weights, jnp.asarray(y0), ts)
        errors.append(np.max(np.abs(np.asarray(ys) - reference)))
    rates = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(rates > 2.6), (errors, rates)


@pytest.mark.parametrize("field", ["mass action", "autodiff"])
def test_rosenbrock_adjoint_matches_finite_differences(field):
    mech = Mechanism.parse("2A -> Z ; 1.5\nZ -> 2A ; 20\nZ + A -> B ; 0.7", species=["A", "B", "Z"])
    w_in, ln_k, w_out = (jnp.asarray(a) for a in mech.to_weights())
    y0 = jnp.asarray(y0_hidden(3))
    ts = np.linspace(0.0, 8.0, 9)
    f = MassAction(1e-5) if field == "mass action" else AutodiffField(lambda y, a, b, c: mass_action_rhs(y, a, b, c), 1e-5)
    target = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (3, 9, 3)))

    def loss(ln_k, w_out, y0):
        ys = Rosenbrock().solve(f, (jnp.clip(-w_out, 0.0, 2.5), ln_k, w_out), y0, ts)[0]
        return jnp.sum((ys - target) ** 2)

    grads = jax.grad(loss, argnums=(0, 1, 2))(ln_k, w_out, y0)
    for i, x in enumerate((ln_k, w_out, y0)):
        direction = jnp.asarray(np.random.default_rng(i).normal(size=x.shape))
        h = 1e-6
        args = [ln_k, w_out, y0]
        plus, minus = list(args), list(args)
        plus[i], minus[i] = x + h * direction, x - h * direction
        numeric = (loss(*plus) - loss(*minus)) / (2 * h)
        assert float(jnp.sum(grads[i] * direction)) == pytest.approx(float(numeric), rel=1e-5, abs=1e-8)


def test_step_grid_contains_the_data_times_and_grades_the_start():
    grid, index = step_grid(TS, first_step=0.01, growth=1.3)
    np.testing.assert_allclose(grid[index], TS)
    steps = np.diff(grid)
    assert steps[0] == pytest.approx(0.01 * (TS[1] - TS[0]))
    assert steps.max() == pytest.approx(TS[1] - TS[0]) and len(grid) - 1 < 1.25 * (len(TS) - 1)
    with pytest.raises(ValueError, match="increasing"):
        step_grid(TS[::-1])


@pytest.mark.parametrize("eps", [1e-2, 1e-3])
def test_autodiff_field_follows_the_exact_limit_family(eps):
    # The same family as above through AutodiffField (the law's derivatives from JAX): its Jacobian must be the smooth
    # law's at max(y, floor), not the floored law's (zero for Z, which starts at zero and is consumed fast).
    mech = preequilibrium(*(float(v) for v in exact_limit(0.1, eps)), species=["A", "B", "Z"])
    y0 = y0_hidden()
    field = AutodiffField(lambda y, a, b, c: mass_action_rhs(y, a, b, c), 1e-5)
    ys, ok = Rosenbrock().solve(field, tuple(jnp.asarray(a) for a in mech.to_weights()), jnp.asarray(y0), TS)
    assert bool(ok)
    assert np.max(np.abs(np.asarray(ys)[..., :2] - radau(mech, y0)[..., :2])) < 1e-3


@pytest.mark.parametrize("field", ["mass action", "autodiff", "fixed"])
def test_rosenbrock_adjoint_is_jax_grad_of_the_same_forward_solve_on_a_stiff_case(field):
    # The hand-written discrete adjoint against reverse-mode autodiff through the very same forward steps
    # (crnn._rosenbrock._forward), at k-1 = 1e4: equal to rounding.
    from crnn._rosenbrock import TABLEAUS, _forward

    mech = preequilibrium(*(float(v) for v in exact_limit(0.1, 1e-2)), species=["A", "B", "Z"])
    w_in, ln_k, w_out = (jnp.asarray(a) for a in mech.to_weights())
    f = {
        "mass action": MassAction(1e-5),
        "autodiff": AutodiffField(lambda y, a, b, c: mass_action_rhs(y, a, b, c), 1e-5),
        "fixed": FixedMassAction.of(w_in, w_out, 1e-5),
    }[field]
    y0 = jnp.asarray(y0_hidden(3))
    ts = np.linspace(0.0, 8.0, 9)
    grid, index = step_grid(ts)
    hs = jnp.asarray(np.diff(grid))
    target = jnp.asarray(np.random.default_rng(1).uniform(0, 1, (3, 9, 3)))

    def loss(ln_k, y0):
        return jnp.sum((Rosenbrock().solve(f, (w_in, ln_k, w_out), y0, ts)[0] - target) ** 2)

    def loss_autodiff(ln_k, y0):
        states = _forward(f, TABLEAUS["rodas3"], (w_in, ln_k, w_out), y0.T, hs)[np.asarray(index)]
        return jnp.sum((jnp.transpose(states, (2, 0, 1)) - target) ** 2)

    assert float(loss(ln_k, y0)) == pytest.approx(float(loss_autodiff(ln_k, y0)), rel=1e-12)
    for a, b in zip(jax.grad(loss, argnums=(0, 1))(ln_k, y0), jax.grad(loss_autodiff, argnums=(0, 1))(ln_k, y0)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-7, atol=1e-9 * float(jnp.max(jnp.abs(b))))


def test_qss_field_jacobian_and_its_derivatives_are_those_of_the_closed_form_law():
    # QSSField writes the law and its Jacobian out species-major; the reference is JAX's derivatives of the
    # closed-form law (crnn._qss.qss_rhs) at max(y, floor), through the generic AutodiffField. One state below the floor.
    from crnn._qss import qss_rhs
    from crnn.integrate import QSSField

    floor = 1e-5
    reference = AutodiffField(lambda y, a, b, c: qss_rhs(y, a, b, c, floor=0.5 * floor), floor)
    rng = np.random.default_rng(4)
    w_out = jnp.asarray(rng.normal(0, 1, (4, 4)))  # 4 reactions over A, B, C and the hidden Z (some make Z, some use it)
    p = (jnp.clip(-w_out, 0, 2.5), jnp.asarray(rng.uniform(-2, 1, 4)), w_out)
    y = [jnp.asarray(rng.uniform(0, 2, 7)) for _ in range(3)]
    y[1] = y[1].at[0].set(1e-7)
    fast, slow = QSSField(floor).f_jac(y, p), reference.f_jac(y, p)
    np.testing.assert_allclose(np.asarray(fast[0]), np.asarray(slow[0]), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(fast[1]), np.asarray(slow[1]), rtol=1e-10, atol=1e-12)
    f_bar = [jnp.cos(v) for v in y]
    jac_bar = [[jnp.sin(3 * v + k) for k in range(3)] for v in y]
    for with_jac in (None, jac_bar):
        (y_fast, p_fast), (y_slow, p_slow) = QSSField(floor).vjp(y, p, f_bar, with_jac), reference.vjp(y, p, f_bar, with_jac)
        np.testing.assert_allclose(np.asarray(y_fast), np.asarray(y_slow), rtol=1e-9, atol=1e-12)
        for a, b in zip(jax.tree.leaves(p_fast), jax.tree.leaves(p_slow)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-9 * float(np.max(np.abs(b)) + 1))


def test_fixed_stoichiometry_field_is_the_dense_field_without_its_zero_terms():
    # FixedMassAction (the stoichiometry compiled in, zero terms never written; discover's learning) against
    # MassAction (the stoichiometry an argument): f, Jacobian, both vector-Jacobian products, a stiff solve and its
    # gradients, equal to rounding; a padded (all-zero) reaction row and a species below the floor included.
    mech = Mechanism.parse("2A -> Z ; 1.5\nZ -> 2A ; 2e3\nZ + A -> B ; 0.7\nA + B -> 2Z ; 0.1", species=["A", "B", "Z"])
    w_in, ln_k, w_out = (np.vstack([a, np.zeros((1, a.shape[1]))]) if a.ndim == 2 else np.append(a, -5.0)
                         for a in mech.to_weights())  # fmt: skip
    p = tuple(jnp.asarray(a) for a in (w_in, ln_k, w_out))
    dense, fixed = MassAction(1e-5), FixedMassAction.of(w_in, w_out, 1e-5)
    rng = np.random.default_rng(3)
    y = [jnp.asarray(rng.uniform(0.0, 1.0, 6)) for _ in range(3)]
    y[2] = y[2].at[0].set(1e-9)  # Z below the floor in one batch element
    close = lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-13, atol=1e-13)
    for a, b in zip(dense.f(y, p), fixed.f(y, p)):
        close(a, b)
    (fa, ja), (fb, jb) = dense.f_jac(y, p), fixed.f_jac(y, p)
    for i in range(3):
        close(fa[i], fb[i])
        for k in range(3):
            close(ja[i][k], jb[i][k])
    f_bar = [jnp.asarray(rng.normal(size=6)) for _ in range(3)]
    jac_bar = [[jnp.asarray(rng.normal(size=6)) for _ in range(3)] for _ in range(3)]
    for bar in (None, jac_bar):
        (ya, pa), (yb, pb) = dense.vjp(y, p, f_bar, bar), fixed.vjp(y, p, f_bar, bar)
        for a, b in zip(ya, yb):
            close(a, b)
        for a, b in zip(pa[1], pb[1]):
            close(jnp.zeros(6) + a, jnp.zeros(6) + b)
    y0 = jnp.asarray(y0_hidden(4))

    def loss(field, ln_k, y0):
        ys, ok = Rosenbrock().solve(field, (p[0], ln_k, p[2]), y0, TS)
        return jnp.sum(ys[..., :2] ** 2)

    values = [jax.value_and_grad(loss, argnums=(1, 2))(f, p[1], y0) for f in (dense, fixed)]
    assert float(values[1][0]) == pytest.approx(float(values[0][0]), rel=1e-12)
    for a, b in zip(values[0][1], values[1][1]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-9, atol=1e-12)
    w_in_bar = jax.grad(lambda w: jnp.sum(Rosenbrock().solve(fixed, (w, p[1], p[2]), y0, TS)[0]))(p[0])
    assert not np.any(np.asarray(w_in_bar))  # the stoichiometry is not a parameter of this field
