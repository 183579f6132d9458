import numpy as np
import pytest

from crnn import Mechanism, make_dataset
from crnn.stiffness import diagnose, exact_limit, jacobian, preequilibrium, seed_cut, spectrum, stiffness_ratio


def test_jacobian_matches_hand_derivation(classic):
    a, b, c, d, e = 0.7, 0.3, 0.2, 0.4, 0.1
    k1, k2, k3, k4 = 0.1, 0.2, 0.13, 0.3
    expected = np.array(
        [
            [-4 * k1 * a - k2, 0, 0, 0, 0],
            [2 * k1 * a, -k4 * d, 0, -k4 * b, 0],
            [k2, 0, -k3, 0, 0],
            [0, -k4 * d, k3, -k4 * b, 0],
            [0, k4 * d, 0, k4 * b, 0],
        ]
    )
    got = np.asarray(jacobian(classic, np.array([a, b, c, d, e])))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_stiffness_ratio_of_two_linear_decays():
    m = Mechanism.parse("A -> B ; 1\nC -> D ; 1000")
    eig = spectrum(m, np.array([[1.0, 0.0, 1.0, 0.0]]))
    np.testing.assert_allclose(np.sort(eig.real[0]), [-1000, -1, 0, 0], atol=1e-9)
    assert stiffness_ratio(eig)[0] == pytest.approx(1000.0)
    assert stiffness_ratio(np.array([[0.0, -2.0]]))[0] == 1.0  # a single decaying mode


def test_preequilibrium_families():
    k1, km1, k2 = seed_cut(0.5, K=0.1, k_minus1=np.array([1.0, 10.0]))
    np.testing.assert_allclose(k1 / km1, 0.1)
    np.testing.assert_allclose(k2 * k1 / km1, 0.5)
    k1, km1, k2 = exact_limit(0.5, np.array([0.1, 0.01]))
    np.testing.assert_allclose(k2 * k1 / km1, 0.5)
    np.testing.assert_allclose(km1, [1e2, 1e4])
    m = preequilibrium(1.0, 2.0, 3.0, partner="B", product="C", species=["A", "B", "C"])
    assert m.species == ("A", "B", "C", "Z") and str(m).splitlines()[-1] == "Z + B -> C  k=3"


@pytest.fixture(scope="module")
def third_order_data():
    return make_dataset(Mechanism.parse("3A -> B ; 0.5"), n_experiments=4, n_train=3, n_points=40)


def test_exact_limit_approaches_third_order_law_while_stiffness_grows(third_order_data):
    eps = [1e-1, 1e-2, 1e-3]
    out = [diagnose(preequilibrium(*exact_limit(0.5, e), species=["A", "B"]), third_order_data) for e in eps]
    losses = np.array([o["loss"] for o in out])
    ratios = np.array([o["stiffness_ratio"] for o in out])
    assert np.all(np.diff(losses) < 0)
    slope = np.polyfit(np.log(eps), np.log(losses), 1)[0]
    assert 0.8 < slope < 1.2  # loss ~ eps
    assert np.all(np.diff(np.log10(ratios)) > 1.5)  # ~ eps^-2
    assert all(o["implicit_ok"] for o in out)


def test_seed_cut_levels_off_above_zero(third_order_data):
    km1 = [1e0, 1e2, 1e4]
    out = [
        diagnose(preequilibrium(*(float(x) for x in seed_cut(0.5, 0.5, k)), species=["A", "B"]), third_order_data) for k in km1
    ]
    losses = np.array([o["loss"] for o in out])
    assert losses[-1] > 0.01  # Z holds part of A: no fit at any k-1
    assert abs(losses[-1] - losses[-2]) / losses[-1] < 0.05  # levelled off
    assert out[-1]["explicit_steps"] > 20 * out[0]["explicit_steps"]  # an explicit solver pays for k-1


def test_failed_implicit_solve_is_reported_not_raised(third_order_data):
    from crnn import SolverConfig

    m = preequilibrium(*exact_limit(0.5, 1e-2), species=["A", "B"])
    out = diagnose(m, third_order_data, implicit=SolverConfig(solver="kvaerno5", rtol=1e-8, atol=1e-10, max_steps=4))
    assert out["implicit_ok"] is False and out["loss"] == float("inf")
    assert np.isfinite(out["stiffness_ratio"]) and out["stiffness_ratio"] >= 1.0  # from the finite part
