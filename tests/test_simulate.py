import numpy as np
import pytest
from scipy.integrate import solve_ivp

import crnn
from crnn import Mechanism, SimulationError, simulate
from crnn.integrate import rk4_solve

ROBERTSON = "A -> B ; 0.04\n2B -> B + C ; 3e7\nB + C -> A + C ; 1e4"


def robertson_rhs(t, y):
    a, b, c = y
    return [-0.04 * a + 1e4 * b * c, 0.04 * a - 3e7 * b * b - 1e4 * b * c, 3e7 * b * b]


def classic_rhs(t, y):
    a, b, c, d, e = y
    r = [0.1 * a * a, 0.2 * a, 0.13 * c, 0.3 * b * d]
    return [-2 * r[0] - r[1], r[0] - r[3], r[1] - r[2], r[2] - r[3], r[3]]


def radau(rhs, y0, ts):
    sol = solve_ivp(rhs, (ts[0], ts[-1]), y0, method="Radau", rtol=1e-10, atol=1e-12, t_eval=ts)
    assert sol.success
    return sol.y.T


def assert_relative(ys, ref, rtol, floor):
    # Relative error where the reference value is well above the reference's
    # own absolute tolerance (1e-12); below `floor` it is not a reliable reference.
    mask = np.abs(ref) > floor
    rel = np.abs(ys - ref)[mask] / np.abs(ref)[mask]
    assert rel.max() < rtol, rel.max()


def test_robertson_matches_radau():
    ts = np.concatenate([[0.0], np.logspace(-5, 5, 41)])
    y0 = np.array([1.0, 0.0, 0.0])
    ys = np.asarray(simulate(Mechanism.parse(ROBERTSON), y0, ts, rtol=1e-10, atol=1e-14))
    # floor 1e-8: 1e4 times Radau's atol, so the reference itself is good to ~1e-6 there.
    assert_relative(ys, radau(robertson_rhs, y0, ts), 1e-5, 1e-8)
    np.testing.assert_allclose(ys.sum(axis=1), 1.0, atol=1e-9)  # mass is conserved


def test_classic_batch_matches_radau(classic, rng):
    ts = np.linspace(0, 40, 50)
    y0 = np.zeros((4, 5))
    y0[:, :2] = rng.uniform(0.2, 1.2, size=(4, 2))
    ys = np.asarray(simulate(classic, y0, ts))
    assert ys.shape == (4, 50, 5)
    for i in range(4):
        assert_relative(ys[i], radau(classic_rhs, y0[i], ts), 1e-5, 1e-8)
    single = np.asarray(simulate(classic, y0[2], ts))
    np.testing.assert_allclose(single, ys[2], rtol=1e-7, atol=1e-12)  # batched step control differs slightly


def test_explicit_solver_option(classic):
    ts = np.linspace(0, 40, 20)
    y0 = np.array([1.0, 0.5, 0, 0, 0])
    ys = simulate(classic, y0, ts, solver="tsit5", rtol=1e-10, atol=1e-12)
    assert_relative(np.asarray(ys), radau(classic_rhs, y0, ts), 1e-5, 1e-8)


def test_failure_names_experiment_and_time(classic):
    ts = np.linspace(0, 40, 20)
    y0 = np.array([[1.0, 0.5, 0, 0, 0], [0.5, 0.2, 0, 0, 0]])
    with pytest.raises(SimulationError, match=r"experiment 0 .*t=") as info:
        simulate(classic, y0, ts, max_steps=3)
    assert "max_steps=3" in str(info.value)


def test_bad_input_raises(classic):
    with pytest.raises(ValueError, match="y0 must have shape"):
        simulate(classic, np.ones(3), np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="strictly increasing"):
        simulate(classic, np.ones(5), np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="unknown solver"):
        simulate(classic, np.ones(5), np.linspace(0, 1, 5), solver="euler2")


def test_crnn_of_mechanism_simulates_the_same(classic):
    ts = np.linspace(0, 40, 30)
    y0 = np.array([1.0, 0.3, 0, 0, 0])
    a = simulate(classic, y0, ts)
    b = simulate(crnn.CRNN.from_mechanism(classic), y0, ts)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_rk4_training_integrator_is_accurate_on_the_data_grid(classic):
    # The training integrator takes one RK4 step per sampling interval (dt = 40/99);
    # its global error on the classic mechanism is O(dt^4) and well below 1e-4.
    ts = np.linspace(0, 40, 100)
    y0 = np.array([1.2, 0.8, 0, 0, 0])
    ys, ok = rk4_solve(Mechanism.to_weights(classic), y0, ts, substeps=1)
    assert bool(ok)
    np.testing.assert_allclose(np.asarray(ys), radau(classic_rhs, y0, ts), atol=1e-4)
    ys2, _ = rk4_solve(Mechanism.to_weights(classic), y0, ts, substeps=4)
    np.testing.assert_allclose(np.asarray(ys2), radau(classic_rhs, y0, ts), atol=1e-6)
