import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crnn import Mechanism


def test_parse_classic(classic):
    assert classic.species == ("A", "B", "C", "D", "E")
    assert classic.n_reactions == 4
    r = classic.reactions[3]
    assert dict(r.reactants) == {"B": 1.0, "D": 1.0} and dict(r.products) == {"E": 1.0} and r.rate == 0.3


def test_species_with_digits():
    m = Mechanism.parse("2NO2 -> N2O4 ; 0.5\nN2O2 + O2 -> 2NO2 ; 1e-3")
    assert m.species == ("NO2", "N2O4", "N2O2", "O2")
    assert dict(m.reactions[0].reactants) == {"NO2": 2.0}
    assert dict(m.reactions[1].reactants) == {"N2O2": 1.0, "O2": 1.0}
    assert dict(m.reactions[1].products) == {"NO2": 2.0}


def test_fractional_and_seed_style():
    m = Mechanism.parse("2.093A -> 1.107B  k=0.101")
    r = m.reactions[0]
    assert r.reactants == {"A": 2.093} and r.products == {"B": 1.107} and r.rate == pytest.approx(0.101)
    assert str(m) == "2.093A -> 1.107B  k=0.101"


def test_list_of_lines_comments_and_reversible():
    m = Mechanism.parse(["# pre-equilibrium", "2A <=> Z ; 2.0, 0.5", "", "Z + A -> B ; 3  # slow step"])
    assert m.n_reactions == 3
    assert [r.rate for r in m.reactions] == [2.0, 0.5, 3.0]
    assert dict(m.reactions[1].reactants) == {"Z": 1.0} and dict(m.reactions[1].products) == {"A": 2.0}


def test_to_weights_and_back(classic):
    w_in, ln_k, w_out = classic.to_weights()
    expected_out = np.array([[-2, 1, 0, 0, 0], [-1, 0, 1, 0, 0], [0, 0, -1, 1, 0], [0, -1, 0, -1, 1]], float)
    np.testing.assert_array_equal(w_out, expected_out)
    np.testing.assert_array_equal(w_in, np.clip(-expected_out, 0, None))
    np.testing.assert_allclose(np.exp(ln_k), [0.1, 0.2, 0.13, 0.3])
    back = Mechanism.from_weights(classic.species, w_in, ln_k, w_out)
    for a, b in zip(back.to_weights(), (w_in, ln_k, w_out)):
        np.testing.assert_allclose(a, b)


def test_catalyst_keeps_its_order():
    # 2B -> B + C nets to B -> C but stays second order in B.
    m = Mechanism.parse("2B -> B + C ; 3e7")
    w_in, ln_k, w_out = m.to_weights()
    np.testing.assert_array_equal(w_in, [[2.0, 0.0]])
    np.testing.assert_array_equal(w_out, [[-1.0, 1.0]])
    back = Mechanism.from_weights(m.species, w_in, ln_k, w_out)
    assert str(back) == "B -> C  k=3e+07 [order B=2]"
    again = Mechanism.parse(str(back))
    for a, b in zip(again.to_weights(), (w_in, ln_k, w_out)):
        np.testing.assert_allclose(a, b)


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("A + B ; 0.1", "arrow"),
        ("A -> B -> C ; 0.1", "arrow"),
        (" -> B ; 0.1", "empty side"),
        ("A -> ; 0.1", "empty side"),
        ("-2A -> B ; 0.1", "positive"),
        ("0A -> B ; 0.1", "positive"),
        ("A$ -> B ; 0.1", "cannot read term"),
        ("2 3A -> B ; 0.1", "cannot read term"),
        ("A -> B ; fast", "not a number"),
        ("A -> B ; -1", "positive number"),
        ("A -> B ; 0", "positive number"),
        ("A -> B ; nan", "positive number"),
        ("A -> B", "missing rate"),
        ("A <=> B ; 1", "two rates"),
    ],
)
def test_malformed_lines_raise_and_quote_the_line(line, fragment):
    with pytest.raises(ValueError) as info:
        Mechanism.parse("C -> D ; 1\n" + line)
    assert fragment in str(info.value)
    assert repr(line) in str(info.value)


def test_empty_text_raises():
    with pytest.raises(ValueError, match="no reactions"):
        Mechanism.parse("# nothing\n\n")


names = st.sampled_from(["A", "B", "C", "NO2", "N2O4", "Z", "X1"])
coefs = st.one_of(st.integers(1, 4).map(float), st.integers(1, 3999).map(lambda i: i / 1000))
side = st.dictionaries(names, coefs, min_size=1, max_size=3)
rates = st.floats(1e-6, 1e6).map(lambda x: float(f"{x:.3g}"))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(side, side, rates), min_size=1, max_size=5))
def test_print_parse_round_trip(reactions):
    lines = []
    for lhs, rhs, k in reactions:
        fmt = lambda s: " + ".join(f"{c:g}{n}" if c != 1 else n for n, c in s.items())
        lines.append(f"{fmt(lhs)} -> {fmt(rhs)} ; {k!r}")
    m = Mechanism.parse(lines)
    again = Mechanism.parse(str(m))
    assert again.species == m.species
    assert str(again) == str(m)
    for a, b in zip(again.to_weights(), m.to_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # and through the CRNN weights
    back = Mechanism.from_weights(m.species, *m.to_weights())
    for a, b in zip(back.to_weights(), m.to_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
