"""SINDy's coefficient intervals (`crnn.sindy`): each bootstrap refit is pysindy's own fit of the resampled
experiments, the intervals are the refits' percentiles, and bad input is refused."""

import numpy as np
import pytest

import crnn

ps = pytest.importorskip("pysindy")
from crnn.sindy import bootstrap_coefficients, coefficient_intervals  # noqa: E402 (after the optional import)


@pytest.fixture(scope="module")
def decay():
    return crnn.make_dataset(crnn.Mechanism.parse("A -> B ; 0.3"), noise=0.05, seed=0)


def _fit(trajectories, data, smoothed=True, degree=2, threshold=0.05, optimizer=None):
    model = ps.SINDy(
        feature_library=ps.PolynomialLibrary(degree=degree),
        optimizer=optimizer or ps.STLSQ(threshold=threshold),
        differentiation_method=ps.SmoothedFiniteDifference() if smoothed else ps.FiniteDifference(),
    )
    model.fit(trajectories, t=data.ts, feature_names=list(data.species))
    return model


def _train(data):
    return [data.ys[i] for i in np.flatnonzero(data.train)]


@pytest.mark.parametrize("smoothed", [True, False])
def test_each_resample_is_pysindys_own_fit_of_those_experiments(decay, smoothed):
    """The fast path (each experiment's derivatives and library once, one regression per resample) against
    `SINDy.fit` on the resampled experiments themselves, with the same random draws."""
    model = _fit(_train(decay), decay, smoothed=smoothed)
    bag = bootstrap_coefficients(model, decay, n_boot=3, seed=5)
    train, rng = _train(decay), np.random.default_rng(5)
    for b in range(3):
        idx = rng.integers(0, len(train), len(train))
        reference = _fit([train[j] for j in idx], decay, smoothed=smoothed)
        np.testing.assert_allclose(bag[b], reference.coefficients(), rtol=1e-8, atol=1e-12)


def test_intervals_are_the_refits_percentiles_and_mark_the_truth(decay):
    """First-order decay, degree-1 library: dA/dt = -0.3 A and dB/dt = 0.3 A are in the library; each kept
    coefficient's interval is the 2.5 to 97.5 % percentile of its refits, and the truth is marked against it."""
    model = _fit(_train(decay), decay, degree=1)
    names = model.feature_library.get_feature_names(list(decay.species))
    truth = np.zeros_like(model.coefficients())
    truth[0, names.index("A")], truth[1, names.index("A")] = -0.3, 0.3
    table = coefficient_intervals(model, decay, n_boot=100, seed=1, truth=truth)
    bag = bootstrap_coefficients(model, decay, n_boot=100, seed=1)
    kept = model.coefficients() != 0
    assert len(table) == int((kept | (truth != 0)).sum())
    for _, row in table.iterrows():
        i, j = list(decay.species).index(row["equation"][1:-3]), names.index(row["term"])
        np.testing.assert_allclose([row["low"], row["high"]], np.percentile(bag[:, i, j], [2.5, 97.5]))
        assert row["contains the truth"] == (row["low"] <= truth[i, j] <= row["high"])
        assert 0 <= row["kept"] <= 1
    true_rows = table[table["true"] != 0]
    assert list(true_rows["term"]) == ["A", "A"] and np.allclose(true_rows["coefficient"], [-0.3, 0.3], rtol=0.1)


def test_bad_input_is_refused(decay):
    model = _fit(_train(decay), decay)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_coefficients(model, decay, n_boot=0)
    with pytest.raises(ValueError, match="level"):
        coefficient_intervals(model, decay, level=95)
    with pytest.raises(ValueError, match="shape"):
        coefficient_intervals(model, decay, n_boot=2, truth=np.zeros((1, 1)))
    other = crnn.make_dataset(crnn.Mechanism.parse("A -> B ; 0.3"), noise=0.05, seed=7)
    with pytest.raises(ValueError, match="does not give the model's coefficients"):
        bootstrap_coefficients(model, other, n_boot=2)  # fitted on other experiments
    sr3 = _fit(_train(decay), decay, optimizer=ps.SSR())
    with pytest.raises(ValueError, match="STLSQ"):
        bootstrap_coefficients(sr3, decay, n_boot=2)
