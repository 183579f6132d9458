import numpy as np
import pandas as pd
import pytest

import crnn
from crnn import Mechanism
from crnn.report import (
    comparison_table,
    effective_order,
    find_reaction,
    match_reactions,
    mechanism_table,
    reaction_similarity,
    recovered,
    weight_tables,
)


def test_match_and_recovered(classic):
    learned = Mechanism.parse("C -> 1.05D ; 0.135\n2.02A -> B ; 0.0999\nB + D -> E ; 0.3\nA -> 0.98C ; 0.2")
    matches = match_reactions(classic, learned)
    assert [m.learned_index for m in matches] == [1, 3, 0, 2]
    assert matches[2].coefficient_error == pytest.approx(0.05)
    assert matches[2].rate_error == pytest.approx(0.135 / 0.13 - 1)
    assert recovered(classic, learned)
    assert not recovered(classic, learned, rate_tol=0.03)
    assert not recovered(classic, Mechanism.parse("2A -> B ; 0.1\nA -> C ; 0.2\nC -> D ; 0.13"))


def test_tables(classic):
    t = mechanism_table(classic)
    assert list(t["equation"]) == ["2A -> B", "A -> C", "C -> D", "B + D -> E"]
    assert list(t["total order"]) == [2, 1, 1, 2]
    w = weight_tables(classic)
    assert w["w_out"].loc["R4", "E"] == 1 and w["w_in"].loc["R1", "A"] == 2
    np.testing.assert_allclose(w["w_b"]["k"], [0.1, 0.2, 0.13, 0.3])
    c = comparison_table(classic, {"x": Mechanism.parse("2A -> B ; 0.1\nE -> A ; 1")})
    assert isinstance(c, pd.DataFrame) and (c["ground truth"] == "(unmatched)").sum() == 0
    assert c.loc[0, "x: equation"] == "2A -> B"


def test_similarity_order_and_find():
    m = Mechanism.parse("2A -> B ; 0.3\n4A -> 2B ; 0.1\nA -> C ; 0.6")
    sim = reaction_similarity(m)
    assert sim[0, 1] == pytest.approx(1.0) and sim[0, 2] == pytest.approx(2 / (np.sqrt(5) * np.sqrt(2)))
    assert effective_order(m) == pytest.approx((0.3 * 2 + 0.1 * 4 + 0.6 * 1) / 1.0)
    pre = Mechanism.parse("2.05A -> 0.97Z ; 1\nZ -> 2A ; 2\nZ + A -> B ; 3")
    assert find_reaction(pre, "2A -> Z") == 0
    assert find_reaction(pre, "Z -> 2A") == 1
    assert find_reaction(pre, "Z + A -> B") == 2
    assert find_reaction(pre, "Z + B -> C") is None


@pytest.mark.parametrize("k, n", [(0, 10), (5, 10), (10, 10), (3, 32), (31, 32)])
def test_wilson_interval_matches_the_closed_form(k, n):
    from crnn.report import wilson_interval

    z, p = 1.959963984540054, k / n  # Wilson (1927): the score interval's closed form
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_interval(k, n) == pytest.approx((max(centre - half, 0.0), min(centre + half, 1.0)), abs=1e-12)


def test_true_loss_is_the_noise_floor():
    from crnn.report import true_loss
    from crnn.results import load_dataset

    clean = load_dataset("third_order_3A")
    assert true_loss(clean) == 0.0  # noise-free data of this truth: zero by construction
    truth = crnn.Mechanism.parse(clean.metadata["mechanism"])
    assert true_loss(clean, truth=truth) < 1e-7  # computed: the solver's error only
    noisy = load_dataset("two_step_hidden_Z_noise5")  # a hidden species, never observed, starts at zero
    expected = 0.05 * np.sqrt(2 / np.pi)  # E|y eps| / scale for 5 % Gaussian noise, per species, up to the scale
    assert 0.2 * expected < true_loss(noisy) < 2 * expected * len(noisy.species)
    assert true_loss(noisy, "train") > 0 and true_loss(noisy, "all") > 0
    with pytest.raises(ValueError, match="split"):
        true_loss(noisy, "test")


def test_extrapolation_sets_follow_the_protocol_and_the_truth_has_no_error():
    from crnn.report import extrapolation_sets, mechanism_predictor, prediction_error

    truth = crnn.Mechanism.parse("3A -> B ; 0.1")
    data = crnn.make_dataset(truth, n_experiments=6, n_train=4, n_points=21, t_end=20.0, noise=0.05, seed=3)
    sets = extrapolation_sets(data, n_experiments=3)
    assert list(sets) == ["training range", "high: 1.5-3", "low: 0.02-0.2"]
    for (label, test), (lo, hi) in zip(sets.items(), [(0.2, 1.2), (1.5, 3.0), (0.02, 0.2)]):
        a0 = test.y0[:, 0]
        assert np.all((a0 >= lo) & (a0 <= hi)), label
        assert np.all(test.y0[:, 1] == 0) and test.metadata["parameters"]["noise"] == 0
        np.testing.assert_allclose(test.ts, data.ts)
        # closed form of 3A -> B with rate k A^3: A(t) = A0 / sqrt(1 + 6 k A0^2 t)
        exact = a0[:, None] / np.sqrt(1 + 6 * 0.1 * a0[:, None] ** 2 * test.ts[None])
        np.testing.assert_allclose(test.ys[:, :, 0], exact, rtol=1e-5)
        assert prediction_error(mechanism_predictor(truth, data.species), test) < 1e-5
    # a second-order law with the same rate constant is wrong, and more so at high concentrations
    wrong = mechanism_predictor(crnn.Mechanism.parse("2A -> B ; 0.1"), data.species)
    errors = {label: prediction_error(wrong, test) for label, test in sets.items()}
    assert errors["high: 1.5-3"] > 0.01 and errors["training range"] > 1e-3
    assert prediction_error(lambda y0, ts: np.full((len(y0), len(ts), 2), np.nan), sets["low: 0.02-0.2"]) == np.inf


def test_mechanism_predictor_puts_hidden_species_last_and_at_zero():
    from crnn.report import mechanism_predictor

    m = crnn.Mechanism.parse("A -> Z ; 1.0\nZ -> B ; 1.0")
    pred = mechanism_predictor(m, ["A", "B"])(np.array([[1.0, 0.0]]), np.linspace(0, 5, 11))
    t = np.linspace(0, 5, 11)
    np.testing.assert_allclose(pred[0, :, 0], np.exp(-t), rtol=1e-5)
    np.testing.assert_allclose(pred[0, :, 1], 1 - np.exp(-t) - t * np.exp(-t), atol=1e-6)


def test_dataset_labels_and_table_numbers():
    from crnn.report import DATASET_LABELS, dataset_label, significant, styled

    assert dataset_label("two_step_hidden_Z_noise5") == "positive control, 5 % noise"
    assert (
        dataset_label("third_order_2AB") == "2A + B -> C" and dataset_label("classic_noise10") == "classic mechanism, 10 % noise"
    )
    assert dataset_label("something else") == "something else"  # unknown names fall back to themselves
    for name in crnn.results.DATA.glob("*.json"):  # every canonical dataset has a reader's label
        assert name.stem in DATASET_LABELS, name.stem
    assert len(set(DATASET_LABELS.values())) == len(DATASET_LABELS)
    assert [significant(x) for x in (0.000123456, 0.45678, 12.345, 12345.6, 3, True, float("nan"), 1.5e-7)] == [
        "0.000123", "0.457", "12.3", "12346", "3", "yes", "", "1.50e-7"
    ]  # fmt: skip
    html = styled(pd.DataFrame({"loss": [0.123456], "p": [0.0412]}), formats={"p": "{:.1g}"}).to_html()
    assert "0.123" in html and "0.04" in html and "0.1234" not in html and '<th class="blank' not in html


def test_panel_grid_wraps_and_shares_one_legend():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from crnn.report import FIGURE_WIDTH, panel_grid, shared_legend

    fig, axes = panel_grid(6)
    assert len(axes) == 6 and len(fig.axes) == 6 and fig.get_figwidth() <= FIGURE_WIDTH
    assert {ax.get_subplotspec().colspan.start for ax in axes} == {0, 1, 2}  # three per row, two rows
    for ax in axes:
        ax.plot([0, 1], [0, 1], label="a")
        ax.legend()
    legend = shared_legend(fig)
    assert [t.get_text() for t in legend.get_texts()] == ["a"] and all(ax.get_legend() is None for ax in axes)
    fig, axes = panel_grid(4)
    assert len(axes) == 4 and len(fig.axes) == 4  # the spare cell of the 2 x 3 grid is removed
    plt.close("all")
