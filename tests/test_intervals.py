"""Rate-constant intervals (`crnn.intervals`): the profile against a closed form, open profiles where the data
do not bound a rate constant, and coverage on simulated datasets of the positive control."""

import re

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq, minimize_scalar
from scipy.stats import chi2

import crnn
from crnn.intervals import identified_combinations, rate_intervals, trained_rate_table
from crnn.landscape import Candidate, fit_rates


@pytest.fixture(scope="module")
def decay():
    truth = crnn.Mechanism.parse("A -> B ; 0.3")
    return truth, crnn.make_dataset(truth, noise=0.05, seed=0)


def _closed_form_profile(data, level=0.95):
    """The same estimator written independently: A -> B in closed form, least squares on the scaled residuals,
    then twice on residuals relative to the fitted prediction; the profile interval by root finding."""
    tr, ts = data.train, data.ts
    ys, y0, scale = data.ys[tr], data.y0[tr], np.asarray(data.scale())

    def predict(lnk):
        decay = np.exp(-np.exp(lnk) * ts)[None]
        return np.stack([y0[:, None, 0] * decay, y0[:, None, 1] + y0[:, None, 0] * (1 - decay)], -1)

    weight = np.broadcast_to(1 / scale, ys.shape)
    sse = lambda lnk, w: float((((predict(lnk) - ys) * w) ** 2).sum())
    best = minimize_scalar(lambda x: sse(x, weight), bounds=(-4, 2), method="bounded", options={"xatol": 1e-12}).x
    for _ in range(2):
        pred = predict(best)
        keep = (ys > 0) & (pred > 1e-6 * ys.max(axis=(0, 1)))
        weight = np.where(keep, 1 / np.where(keep, pred, 1), 0)
        best = minimize_scalar(lambda x: sse(x, weight), bounds=(-4, 2), method="bounded", options={"xatol": 1e-12}).x
    n = np.count_nonzero(weight)
    deviance = lambda x: n * np.log(sse(x, weight) / n) - n * np.log(sse(best, weight) / n) - chi2.ppf(level, 1)
    return np.exp(best), np.exp(brentq(deviance, best - 1, best)), np.exp(brentq(deviance, best, best + 1))


def test_profile_interval_of_first_order_decay_matches_the_closed_form(decay):
    truth, data = decay
    row = rate_intervals(truth, data).table.iloc[0]
    k, low, high = _closed_form_profile(data)
    half = (high - low) / 2
    assert row["estimate"] == pytest.approx(k, abs=0.02 * half)
    assert row["low"] == pytest.approx(low, abs=0.05 * half) and row["high"] == pytest.approx(high, abs=0.05 * half)
    assert row["bounded"] and row["low"] < 0.3 < row["high"]


def test_bootstrap_over_experiments_agrees_with_the_profile_where_the_model_is_right(decay):
    truth, data = decay
    profile = rate_intervals(truth, data).table.iloc[0]
    boot = rate_intervals(truth, data, method="bootstrap", n_boot=100, seed=1).table.iloc[0]
    assert boot["estimate"] == profile["estimate"]
    assert boot["low"] < boot["estimate"] < boot["high"]
    ratio = (boot["high"] - boot["low"]) / (profile["high"] - profile["low"])
    assert 0.6 < ratio < 1.6, ratio  # same width within what 100 resamples and 20 experiments allow


def test_every_result_type_gives_the_interval_of_its_structure(decay):
    """A map rate fit (`RateFit`) and a CRNN fit (`FitResult`, its learned A -> 0.996B rounded to A -> B) fix
    the same structure as the mechanism itself, so they give its interval."""
    truth, data = decay
    expected = rate_intervals(truth, data).table.iloc[0]
    rate_fit = fit_rates([Candidate.from_mechanism(truth, data.species)], data, progress=False)
    crnn_fit = crnn.fit(data, 1, n_starts=2, epochs=3000, progress=False)
    for result in (rate_fit, crnn_fit):
        row = rate_intervals(result, data).table.iloc[0]
        assert row["quantity"] == "k(A -> B)"
        for column in ("estimate", "low", "high"):
            assert row[column] == pytest.approx(expected[column], rel=1e-6), (type(result).__name__, column)
    with pytest.raises(ValueError, match="row"):
        rate_intervals(rate_fit, data, which=3)
    with pytest.raises(ValueError, match="one structure"):
        rate_intervals(truth, data, which=0)


@pytest.mark.slow
def test_a_discovery_gives_the_interval_of_its_final_mechanism(decay):
    truth, data = decay
    found = crnn.discover(data, 1, composition={"A": [1], "B": [1]}, n_starts=2, epochs=300, progress=False)
    assert found.mechanism().table()["equation"].tolist() == ["A -> B"]
    row, expected = rate_intervals(found, data).table.iloc[0], rate_intervals(truth, data).table.iloc[0]
    assert row["low"] == pytest.approx(expected["low"], rel=1e-6) and row["high"] == pytest.approx(expected["high"], rel=1e-6)


def test_bad_arguments_are_refused(decay):
    truth, data = decay
    with pytest.raises(ValueError, match="method"):
        rate_intervals(truth, data, method="mcmc")
    with pytest.raises(ValueError, match="exponents"):
        rate_intervals(truth, data, combinations={"K": [1, -1]})
    with pytest.raises(ValueError, match="level"):
        rate_intervals(truth, data, level=95)
    with pytest.raises(TypeError, match="Mechanism"):
        rate_intervals("A -> B", data)


@pytest.mark.slow
def test_a_fast_equilibrium_leaves_its_rate_constants_open_and_names_what_is_identified():
    """2A <=> Z far faster than Z + A -> B: the data fix K = k1/k-1 and k2, not k1 and k-1 themselves."""
    truth = crnn.Mechanism.parse("2A -> Z ; 200\nZ -> 2A ; 1000\nZ + A -> B ; 0.5", species=["A", "B", "Z"])
    data = crnn.make_dataset(truth, reactants=["A"], observed=["A", "B"], noise=0.05, seed=3)
    table = rate_intervals(truth, data, combinations={"K": [1, -1, 0]}).table.set_index("quantity")
    assert not table.loc["k(2A -> Z)", "bounded"] and not table.loc["k(Z -> 2A)", "bounded"]
    for name in ["k(2A -> Z)", "k(Z -> 2A)"]:  # an open end of a positive constant: 0 below, inf above, never negative
        low, high = table.loc[name, ["low", "high"]]
        assert (low == 0 or np.isinf(high)) and low >= 0, table
    for name, value in [("K", 0.2), ("k(A + Z -> B)", 0.5)]:
        assert table.loc[name, "bounded"] and table.loc[name, "low"] < value < table.loc[name, "high"], table
    combos = identified_combinations(truth, data)
    assert combos["identified"].sum() == 2 and not combos["identified"].iloc[-1]
    assert np.allclose(np.abs(combos["exponents"].iloc[-1]), [1, 1, 0], atol=0.1)  # the open direction: k1 and k-1 together
    # the best-determined combination's Wald interval is its profile interval (the likelihood is near Gaussian along it);
    # combinations="identified" profiles what the Fisher information at its own fit names, by the reactions' names
    best = combos.iloc[0]
    assert best["low"] < best["estimate"] < best["high"]
    iv = rate_intervals(truth, data, rates=False, combinations="identified")
    fisher = iv.combinations[iv.combinations["identified"]]
    assert list(iv.table["quantity"]) == list(fisher["quantity"]) and len(fisher) == combos["identified"].sum()
    assert best["quantity"].startswith(("k(2A -> Z)", "k(A + Z -> B)")), best
    # its own fit may differ from identified_combinations' in the last digits of the exponents
    expected = np.stack(combos.loc[combos["identified"], "exponents"])
    np.testing.assert_allclose(np.stack(fisher["exponents"]), expected, atol=0.01)
    profile = iv.table.iloc[0]
    wald, prof = [best["estimate"], best["low"], best["high"]], profile[["estimate", "low", "high"]].astype(float)
    np.testing.assert_allclose(wald, prof, rtol=0.02)
    with pytest.raises(ValueError, match="identified"):
        rate_intervals(truth, data, combinations="fixed")


@pytest.mark.slow
def test_profile_intervals_cover_the_identified_combinations_of_the_positive_control():
    """12 simulated datasets of the positive control at 5 % noise: the 95 % profile intervals on K = k1/k-1 and
    k2 contain the truth in at least 10 (at a true coverage of 0.95, fewer happen with probability 0.02)."""
    truth = crnn.Mechanism.parse("2A -> Z ; 2\nZ -> 2A ; 10\nZ + A -> B ; 0.5", species=["A", "B", "Z"])
    hits = np.zeros(2, int)
    for seed in range(12):
        data = crnn.make_dataset(truth, reactants=["A"], observed=["A", "B"], noise=0.05, seed=100 + seed)
        t = rate_intervals(truth, data, rates=False, combinations={"K": [1, -1, 0], "k2": [0, 0, 1]}).table
        hits += ((t["low"] < [0.2, 0.5]) & ([0.2, 0.5] < t["high"])).to_numpy()
    assert np.all(hits >= 10), hits


@pytest.mark.slow
def test_nuts_posterior_interval_agrees_with_the_profile_for_first_order_decay(decay):
    """With 4 000 values and one rate constant, the posterior is close to Gaussian (Bernstein-von Mises): its 95 %
    credible interval matches the profile interval within a tenth of the profile's width, and the chains agree."""
    truth, data = decay
    profile = rate_intervals(truth, data).table.iloc[0]
    nuts = rate_intervals(truth, data, method="nuts", n_samples=400, n_warmup=200, chains=2, seed=3).table.iloc[0]
    width = profile["high"] - profile["low"]
    assert nuts["low"] == pytest.approx(profile["low"], abs=0.1 * width)
    assert nuts["high"] == pytest.approx(profile["high"], abs=0.1 * width)
    assert nuts["r_hat"] < 1.05


@pytest.mark.slow
def test_nuts_on_the_ridge_of_the_positive_control_agrees_with_the_profile_and_compiles_once():
    """The positive control at 5 % noise: k1 and k-1 lie on a ridge (only K = k1/k-1 is fixed well), the case the
    whitened sampler is for. Its 95 % credible intervals match the profile intervals on every rate constant and
    on K within a fifth of the profile's width, the chains agree, and a second call (another seed) compiles
    nothing."""
    from test_train import _compilations  # JAX's own log of XLA compilations, counted

    truth = crnn.Mechanism.parse("2A -> Z ; 2\nZ -> 2A ; 10\nZ + A -> B ; 0.5", species=["A", "B", "Z"])
    data = crnn.make_dataset(truth, reactants=["A"], observed=["A", "B"], noise=0.05, seed=1000)
    combos = {"K": [1, -1, 0]}
    profile = rate_intervals(truth, data, combinations=combos).table.set_index("quantity")
    kw = {"method": "nuts", "combinations": combos, "n_samples": 300, "n_warmup": 200, "chains": 2}
    nuts = rate_intervals(truth, data, seed=0, **kw).table.set_index("quantity")
    for q in profile.index:
        width = profile.loc[q, "high"] - profile.loc[q, "low"]
        assert nuts.loc[q, "low"] == pytest.approx(profile.loc[q, "low"], abs=0.2 * width), q
        assert nuts.loc[q, "high"] == pytest.approx(profile.loc[q, "high"], abs=0.2 * width), q
        assert nuts.loc[q, "r_hat"] < 1.05, q
    assert _compilations(lambda: rate_intervals(truth, data, seed=1, **kw)) == 0


def test_plot_marks_the_truth_and_keeps_to_the_book_width(decay):
    import matplotlib

    matplotlib.use("Agg")
    truth, data = decay
    iv = rate_intervals(truth, data, combinations={"k squared": [2.0], "k cubed": [3.0], "k^4": [4.0]})
    axes = iv.plot(truth={"k(A -> B)": 0.3})
    fig = axes[0].figure
    assert len(axes) == 4 and fig.get_size_inches()[0] <= 7.0 + 1e-9
    rows = {round(ax.get_position().y0, 3) for ax in axes}
    assert len(rows) == 2  # three panels in the first row, one in the second
    assert any(abs(line.get_xdata()[0] - 0.3) < 1e-12 for line in axes[0].lines if len(line.get_xdata()) == 2)
    # relative_to: the same profile in % from the truth; the truth at 0, the shaded interval at the table's ends in %
    axes = iv.plot(truth={"k(A -> B)": 0.3}, relative_to={"k(A -> B)": 0.3})
    row = iv.table.iloc[0]
    assert any(abs(line.get_xdata()[0]) < 1e-12 for line in axes[0].lines if len(line.get_xdata()) == 2)
    profile = axes[0].lines[0].get_xdata()
    np.testing.assert_allclose(profile, 100 * (iv.profiles["k(A -> B)"]["value"].to_numpy() / 0.3 - 1))
    span = axes[0].patches[0]
    ends = [span.get_x(), span.get_x() + span.get_width()]
    np.testing.assert_allclose(ends, 100 * (np.array([row["low"], row["high"]]) / 0.3 - 1))
    assert "% from 0.3" in axes[0].get_xlabel() and axes[1].get_xlabel() == "k squared"


def test_plot_wraps_long_names_and_draws_wide_profiles_on_a_log_axis():
    """A combination's long name breaks between its factors (it ran into the next panel); a profile that spans
    decades is drawn on a logarithmic axis, one a fraction of a per cent wide near 1e-4 with few, short ticks."""
    import matplotlib

    matplotlib.use("Agg")
    from crnn.intervals import Intervals

    long = "k(1.254B -> A + 0.943Z) · k(Z -> 1.714A + 0.286B)^-1 · k(2A -> Z)"
    names = [long, "k(Z -> 2A)", "k(B -> A + Z)"]
    values = [np.linspace(0.09, 0.11, 9), np.geomspace(1e-2, 1e3, 9), np.linspace(1.0e-4, 1.3e-4, 9)]
    profiles = {n: pd.DataFrame({"value": v, "deviance": (np.arange(9) - 4.0) ** 2 / 4}) for n, v in zip(names, values)}
    table = pd.DataFrame({"quantity": names, "low": [v[2] for v in values], "high": [v[6] for v in values], "level": 0.95})
    iv = Intervals(table, crnn.Mechanism.parse("A -> B ; 1"), 0.0, profiles, {}, {})
    axes = iv.plot()
    fig = axes[0].figure
    fig.canvas.draw()
    label = axes[0].get_xlabel()
    assert "\n" in label and label.replace(" ·\n", " · ") == long and max(len(line) for line in label.splitlines()) <= 32
    assert [ax.get_xscale() for ax in axes[:3]] == ["linear", "log", "linear"]
    ticks = [re.sub(r"\$\\mathdefault\{(.*)\}\$", r"\1", t.get_text()) for t in axes[2].get_xticklabels() if t.get_text()]
    assert 2 <= len(ticks) <= 4 and max(len(t) for t in ticks) <= 5, ticks  # "1.05", the power of ten once:
    assert "10^{-4}" in axes[2].xaxis.get_offset_text().get_text().replace("\u2212", "-")
    matplotlib.pyplot.close(fig)


@pytest.mark.slow
def test_profile_rises_monotonically_away_from_its_minimum_where_refits_start_far():
    """The textbook dimer mechanism of 2NO + O2 fitted to termolecular data (its back reaction at the ln k bound):
    grid points fitted from the overall fit alone left K's profile dipping from 4.4 back to 1.8 past its
    minimum, so its upper end came out at 0.0032 instead of 0.0043; the continuation removes the dip."""
    k = 3.3e-39 * np.exp(530 / 298.0) * 1e34 * 500
    data = crnn.make_dataset(crnn.Mechanism.parse(f"2NO + O2 -> 2NO2 ; {k}"), reactants=["NO", "O2"], noise=0.05, seed=21)
    dimer = crnn.Mechanism.parse("2NO -> Z ; 5.163\nZ -> 2NO ; 2980.96\nO2 + Z -> 2NO2 ; 57.0", species=["NO", "O2", "NO2", "Z"])
    iv = rate_intervals(dimer, data, combinations={"K": [1, -1, 0]}, rates=False)
    profile = iv.profiles["K"].sort_values("value")
    d = profile["deviance"].to_numpy()
    centre = int(np.argmin(d))
    assert np.all(np.diff(d[: centre + 1]) <= 1e-6) and np.all(np.diff(d[centre:]) >= -1e-6), d
    assert iv.table.iloc[0]["high"] > 0.004


# the fit's adaptive re-scoring fails for this start (order 0.92 in A; crnn.simulate solves the same mechanism):
# noticed, not what this test is about
@pytest.mark.filterwarnings("ignore:fit. no start ended with a finite loss")
def test_a_crnn_start_bounded_at_its_trained_coefficients(decay):
    """stoichiometry="trained": the CRNN's pruned weights kept as trained (fractional), its rate constant refitted at
    them. Checked against scipy: the same scaled least squares minimised over k with solve_ivp on the fractional law."""
    from scipy.integrate import solve_ivp
    from scipy.optimize import minimize_scalar

    truth, data = decay
    fit = crnn.fit(data, 1, epochs=600, n_starts=2, progress=False)
    learned = fit.mechanism()
    iv = rate_intervals(fit, data, stoichiometry="trained", noise="scaled")
    row = iv.table.iloc[0]
    (a,), (b,) = learned.reactions[0].reactants.values(), learned.reactions[0].products.values()
    assert a != round(a) and row["quantity"] == f"k({a:.3g}A -> {b:.3g}B)"  # named by the coefficients as trained
    for mine, theirs in zip(iv.mechanism.to_weights()[::2], learned.to_weights()[::2]):
        np.testing.assert_array_equal(mine, theirs)  # the structure is the trained one, not rounded

    train, scale = np.flatnonzero(data.train), data.scale()

    def sse(ln_k):
        k, total = np.exp(ln_k), 0.0
        for e in train:
            rhs = lambda t, y: [-a * k * max(y[0], 0) ** a, b * k * max(y[0], 0) ** a]
            sol = solve_ivp(rhs, (0, data.ts[-1]), data.y0[e], t_eval=data.ts, method="LSODA", rtol=1e-10, atol=1e-12)
            total += np.sum(((sol.y.T - data.ys[e]) / scale) ** 2)
        return total

    best = minimize_scalar(sse, bracket=(np.log(learned.rates[0]) - 0.1, np.log(learned.rates[0]) + 0.1), tol=1e-8)
    assert row["estimate"] == pytest.approx(np.exp(best.x), rel=2e-3)
    assert row["bounded"] and row["low"] < row["estimate"] < row["high"]
    # the book's table of it: the same interval beside the rate as trained
    table = trained_rate_table(fit, data).iloc[0]
    assert table["reaction (as trained)"] == row["quantity"][2:-1] and table["trained k"] == learned.rates[0]
    assert (table["refitted k"], table["95 % low"], table["95 % high"]) == (row["estimate"], row["low"], row["high"])
    assert table["trained k inside"] == (row["low"] <= learned.rates[0] <= row["high"])
    with pytest.raises(ValueError, match="FitResult"):
        rate_intervals(truth, data, stoichiometry="trained")
    with pytest.raises(ValueError, match="stoichiometry"):
        rate_intervals(fit, data, stoichiometry="whole")


@pytest.mark.slow
def test_a_quasi_steady_state_fit_keeps_its_model_and_names_the_effective_rate():
    """stoichiometry="trained" on a QSS fit (the pre-equilibrium structure given, rates trained, third-order data):
    the likelihood is that of the QSS model (its deviance at the fit equals scipy's solve of the QSS law written
    out here), k1, k-1, k2 alone are not fixed, and the one identified combination is the effective third-order
    rate k1 k2 / k-1, its profile interval containing the truth (0.1)."""
    import jax.numpy as jnp
    from scipy.integrate import solve_ivp

    data = crnn.load_dataset("third_order_3A_noise5")
    w_out0 = np.zeros((2, 3))
    for j, eq in enumerate(["2A -> Z", "Z + A -> B"]):
        w_out0[j] = crnn.Mechanism.parse(f"{eq} ; 1").with_species([*data.species, "Z"]).to_weights()[2][0]
    start = crnn.CRNN(jnp.asarray(w_out0), jnp.zeros(2), None, 2.5, jnp.log(jnp.array([1.0, 1e-6])))
    fit = crnn.fit(data, 2, extra_species=1, hidden="qss", init=start, optimizer=crnn.Adam(train_stoichiometry=False),
                   epochs=200, progress=False)  # fmt: skip
    iv = rate_intervals(fit, data, stoichiometry="trained", noise="scaled", combinations="identified")
    combos = iv.combinations  # the Fisher information at the fit the intervals surround
    assert combos["identified"].sum() == 1, combos
    exponents = np.asarray(combos["exponents"].iloc[0])
    equations = [str(r).split("  k=")[0] for r in fit.mechanism(0.01).reactions]
    effective = {"2A -> Z": 1, "A + Z -> B": 1, "Z -> 2A": -1, "B -> A + Z": 0}
    np.testing.assert_allclose(exponents, [effective[e] for e in equations], atol=0.05)
    keff = combos["quantity"].iloc[0]
    assert keff == "k(2A -> Z) · k(A + Z -> B) · k(Z -> 2A)^-1", keff
    table = iv.table.set_index("quantity")
    assert table.loc[keff, "bounded"] and table.loc[keff, "low"] < 0.1 < table.loc[keff, "high"], table
    assert not table.loc[["k(2A -> Z)", "k(Z -> 2A)", "k(A + Z -> B)"], "bounded"].any(), table

    # the QSS law written out: z* = production / (consumption + leak), the rates that consume z times z*
    w_in, ln_k, w_out = iv.mechanism.to_weights()
    k, s = np.exp(ln_k), w_out[:, 2]

    def rhs(t, y):
        base = k * np.prod(np.maximum(y, 0)[None, :] ** w_in[:, :2], axis=1)
        z = np.sum(np.maximum(s, 0) * base) / (np.sum(np.maximum(-s, 0) * base) + 1e-8)
        return (base * np.where(s < 0, z, 1.0)) @ w_out[:, :2]

    sse = 0.0
    for e in np.flatnonzero(data.train):
        sol = solve_ivp(rhs, (0, data.ts[-1]), data.y0[e], t_eval=data.ts, method="LSODA", rtol=1e-10, atol=1e-13)
        sse += np.sum(((sol.y.T - data.ys[e]) / np.asarray(data.scale())) ** 2)
    n = data.ys[data.train].size
    assert iv.deviance == pytest.approx(n * np.log(sse / n), abs=1e-2)


def test_profile_points_to_refit_are_those_above_their_outer_neighbour_wherever_the_minimum_lies():
    """`_not_monotone` (the profile continuation's choice of points to refit): a point above its neighbour farther
    from the minimum, or not finite. The minimum at either end of the grid (a refit lower than the fit there) once
    crashed it."""
    from crnn.intervals import _not_monotone

    np.testing.assert_array_equal(_not_monotone(np.array([3.0, 1.0, 0.0, 2.0, 1.5, 4.0])), [0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(_not_monotone(np.array([0.0, 2.0, 1.0, np.inf])), [0, 1, 0, 1])
    np.testing.assert_array_equal(_not_monotone(np.array([2.0, 3.0, 1.0, 0.0])), [0, 1, 0, 0])
    np.testing.assert_array_equal(_not_monotone(np.array([1.0, 0.0, 2.0])), [0, 0, 0])


def test_a_trained_structure_keeps_the_fits_floor_where_a_fractional_order_meets_a_species_at_zero():
    """A fractional order on a species that starts at zero (A -> B at a rate with C^0.07, C made by A -> C): the
    floor is part of that model. The structure as trained is solved at the fit's floor (1e-5), and agrees with scipy's
    solve of the same floored law; at 1e-12 the implicit solver met Jacobian entries near 1e10."""
    from scipy.integrate import solve_ivp

    import crnn.intervals as I
    from crnn.integrate import Rosenbrock

    species = ["A", "B", "C"]
    w_in = np.array([[1.0, 0.0, 0.07], [1.0, 0.0, 0.0]])
    w_out = np.array([[-1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]])
    k = np.array([0.5, 0.2])
    learned = crnn.Mechanism.from_weights(species, w_in, np.log(k), w_out)
    data = crnn.make_dataset(learned, reactants=["A"], noise=0.0, seed=0)
    problem = I._Problem.of(I._AsTrained(learned, floor=1e-5), data, (-12.0, 8.0))
    assert problem.field.floor == 1e-5
    pred = np.asarray(
        I._predict(Rosenbrock(substeps=2), problem.field, problem.ts, problem.w_in, np.log(k), problem.w_out, problem.y0)
    )

    def rhs(t, y):
        floored = np.maximum(y, 1e-5)
        rates = k * np.prod(floored[None, :] ** w_in, axis=1)
        return rates @ w_out

    for e, y0 in enumerate(np.asarray(problem.y0)):
        sol = solve_ivp(rhs, (0, data.ts[-1]), y0, t_eval=data.ts, method="Radau", rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(pred[e], sol.y.T, atol=2e-3)


def _unconverged_fits(monkeypatch):
    """Every fit of `rate_intervals` moved off its minimum by 0.15 in ln k, its sum of squares recomputed."""
    import jax.numpy as jnp

    from crnn import intervals

    original = intervals._fit_one

    def unconverged(*args, **kwargs):
        out = original(*args, **kwargs)
        p, x = out["problem"], out["x"] + 0.15
        r = intervals._residuals(out["integrator"], p.field, p.n_obs, p.ts, p.bounds, *p.arrays(), jnp.asarray(x))
        return out | {"x": x, "sse": float(jnp.sum(r**2))}

    monkeypatch.setattr(intervals, "_fit_one", unconverged)


def test_an_unconverged_fit_is_refitted_from_the_profiles_lower_point_so_its_estimate_lies_in_its_interval(decay, monkeypatch):
    """Where the fit stops short of the minimum (case 5's given structure on all weights: estimate 142.8, interval
    471.8 to 1084), a profile point fits better; the estimate must be the minimum the interval surrounds, not the
    unconverged fit's. The fit is moved off its minimum by 0.15 in ln k here, its sum of squares recomputed."""

    truth, data = decay
    proper = rate_intervals(truth, data)
    assert proper.restarts == 0
    _unconverged_fits(monkeypatch)
    iv = rate_intervals(truth, data)
    row, ref = iv.table.iloc[0], proper.table.iloc[0]
    assert iv.restarts >= 1
    assert row["low"] < row["estimate"] < row["high"]
    assert row["estimate"] == pytest.approx(ref["estimate"], rel=1e-4)  # before: 0.15 in ln k away (16 %)
    half = (ref["high"] - ref["low"]) / 2
    assert row["low"] == pytest.approx(ref["low"], abs=0.02 * half) and row["high"] == pytest.approx(ref["high"], abs=0.02 * half)
    assert iv.deviance == pytest.approx(proper.deviance, abs=1e-6)


def test_a_fit_that_stays_unconverged_after_the_last_refit_is_reported(decay, monkeypatch):
    """Without refits left (MAX_RESTARTS = 0), a fit that a profile point beats is not silently kept: a warning
    says that the fit has not converged and an estimate may lie outside its interval."""
    from crnn import intervals

    truth, data = decay
    _unconverged_fits(monkeypatch)
    monkeypatch.setattr(intervals, "MAX_RESTARTS", 0)
    with pytest.warns(UserWarning, match="has not converged"):
        iv = rate_intervals(truth, data)
    assert iv.restarts == 0
