import numpy as np
import pandas as pd
import pytest

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
def test_wilson_interval_matches_scipy(k, n):
    from scipy.stats import binomtest

    from crnn.report import wilson_interval

    expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((expected.low, expected.high), abs=1e-12)
