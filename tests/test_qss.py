import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crnn import Mechanism, fit, make_dataset
from crnn._qss import normalize_hidden, qss_concentration, qss_orders, qss_rhs
from crnn.stiffness import preequilibrium


def weights(m):
    return [jnp.asarray(a) for a in m.to_weights()]


@pytest.mark.parametrize("A", [0.01, 0.3, 1.2])
def test_preequilibrium_qss_closed_form(A):
    k1, km1, k2 = 3.0, 50.0, 2.0
    w = weights(preequilibrium(k1, km1, k2, species=["A", "B"]))
    y = jnp.array([A, 0.4])
    z = float(qss_concentration(y, *w, floor=1e-12, leak=0.0))
    assert z == pytest.approx(k1 * A**2 / (km1 + k2 * A), rel=1e-12)
    dA, dB = np.asarray(qss_rhs(y, *w, floor=1e-12))
    assert dB == pytest.approx(k1 * k2 * A**3 / (km1 + k2 * A), rel=1e-7)
    assert dA == pytest.approx(-3 * dB, rel=1e-6)  # Z holds no mass (up to the 1e-8 leak)


def test_qss_tends_to_the_third_order_law():
    # k1 k2 / k-1 fixed at 0.1 while k-1 / k2 grows: dB/dt -> 0.1 A^3
    A = 0.8
    errors = []
    for km1 in (1e1, 1e3, 1e5):
        w = weights(preequilibrium(0.1 * km1, km1, 1.0, species=["A", "B"]))
        dB = float(qss_rhs(jnp.array([A, 0.0]), *w, floor=1e-12)[1])
        errors.append(abs(dB / (0.1 * A**3) - 1))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4


def test_qss_gradient_matches_finite_differences():
    w = weights(preequilibrium(3.0, 50.0, 2.0, species=["A", "B"]))
    f = lambda lk: qss_rhs(jnp.array([0.5, 0.1]), w[0], lk, w[2], 1e-12)[1]
    g = np.asarray(jax.grad(f)(w[1]))
    h = 1e-6
    fd = [(f(w[1].at[i].add(h)) - f(w[1].at[i].add(-h))) / (2 * h) for i in range(3)]
    np.testing.assert_allclose(g, np.asarray(fd), rtol=1e-6)


def test_normalizing_the_hidden_unit_changes_nothing_observable():
    m = Mechanism.parse("2A -> 1.79Z ; 3\n1.79Z -> 2A ; 50\nA + 1.79Z -> B ; 2", species=["A", "B", "Z"])  # hidden last
    n = normalize_hidden(m, "Z")
    assert str(n).splitlines() == ["2A -> Z  k=3", "Z -> 2A  k=89.5", "A + Z -> B  k=3.58"]
    y = jnp.array([0.7, 0.2])
    wm, wn = weights(m), weights(n)
    np.testing.assert_allclose(np.asarray(qss_rhs(y, *wm)), np.asarray(qss_rhs(y, *wn)), rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(qss_orders(wm[0], wm[2]))[:, 2], [0, 1, 1])


def test_fit_with_a_qss_species():
    data = make_dataset(Mechanism.parse("3A -> B ; 0.1"), n_experiments=4, n_train=2, n_points=20)
    result = fit(data, 3, extra_species=1, hidden="qss", epochs=100, n_starts=2, progress=False)
    assert result.species == ("A", "B", "Z") and np.all(np.isfinite(result.final_validation_loss))
    assert result.predict(data.y0[:1], data.ts).shape == (1, 20, 2)
    for r in result.mechanism().reactions:  # first order in Z wherever Z is consumed
        if r.reactants.get("Z"):
            assert r.reaction_orders["Z"] == 1.0
    with pytest.raises(ValueError, match="exactly one extra species"):
        fit(data, 3, extra_species=2, hidden="qss", epochs=1, progress=False)


def test_normalizing_keeps_a_catalytic_order():
    # A + Z -> B with the Z coefficient pruned away: still first order in Z (a catalyst)
    m = Mechanism.parse("2A -> 2Z ; 1\n2Z -> 2A ; 5\nA -> B ; 0.3 ; order A=1 Z=1", species=["A", "B", "Z"])
    n = normalize_hidden(m, "Z")
    assert [r.reaction_orders.get("Z", 0) for r in n.reactions] == [0, 1, 1]
    assert n.reactions[2].rate == pytest.approx(0.6)  # rate constant scaled with the unit of Z
