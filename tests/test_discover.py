"""The library learner (crnn.discover): libraries counted by hand, mass balance with element vectors, argument
checks, the simplifier on a null pair, compile-once, and the positive control."""

import numpy as np
import pytest

import crnn
from crnn import Dataset, Mechanism, discover, make_dataset
from crnn.discover import Simplification, Training, enumerate_libraries, simplify
from crnn.report import recovered
from crnn.results import DATA


def reactions(library) -> set[str]:
    return set(library.equations())


@pytest.fixture(scope="module")
def two_step():
    return Dataset.load(DATA / "two_step_hidden_Z.csv")


@pytest.fixture(scope="module")
def tiny():
    return make_dataset(Mechanism.parse("2A -> B ; 0.3"), n_experiments=4, n_train=2, n_points=20, t_end=10)


def test_library_of_3a_to_b_counted_by_hand():
    # A = 1 unit, B = 3, Z = A2 (2 units). Reactant sides of at most two molecules, product sides of at most two:
    # mass 2: Z, 2A -> Z <=> 2A; mass 3: B, A + Z -> B <=> A + Z; mass 4: A + B, 2Z -> A + B <=> 2Z;
    # mass 5 (B + Z) and 6 (2B) have no second side. All six fire from A (2A -> Z, then A + Z -> B).
    (library,) = enumerate_libraries(["A", "B"], ["A"], {"A": [1], "B": [3]}, hidden_compositions={"Z": [2]})
    expected = {"2A -> Z", "Z -> 2A", "A + Z -> B", "B -> A + Z", "A + B -> 2Z", "2Z -> A + B"}
    assert reactions(library) == expected and library.n_reactions == 6
    assert library.species == ("A", "B", "Z") and library.hidden_composition == ((2,),)
    # one product molecule at most: only 2A -> Z and A + Z -> B remain
    (small,) = enumerate_libraries(["A", "B"], ["A"], {"A": [1], "B": [3]}, hidden_compositions={"Z": [2]}, max_products=1)
    assert reactions(small) == {"2A -> Z", "A + Z -> B"}
    # enumerated compositions (Z of 1, 2 or 3 units): Z = A never makes B (nothing of mass 3 forms from A and Z),
    # Z = 3 never fires from A (no side of mass 1 or 2 but A and 2A): only Z = A2 is left
    (only,) = enumerate_libraries(["A", "B"], ["A"], {"A": [1], "B": [3]})
    assert only.hidden_composition == ((2,),) and reactions(only) == expected


def test_mass_balance_with_element_vectors():
    composition = {"A": [1, 0], "B": [0, 1], "C": [2, 1]}
    libraries = enumerate_libraries(["A", "B", "C"], ["A", "B"], composition)
    found = {lib.hidden_composition[0]: reactions(lib) for lib in libraries}
    assert {"A + B -> Z", "A + Z -> C"} <= found[(1, 1)]
    assert {"2A -> Z", "B + Z -> C"} <= found[(2, 0)]
    for lib in libraries:
        vectors = {**{s: np.array(v) for s, v in composition.items()}, "Z": np.array(lib.hidden_composition[0])}
        for r in lib.mechanism(range(lib.n_reactions)).reactions:
            np.testing.assert_array_equal(sum(vectors[s] * c for s, c in r.reactants.items()),
                                          sum(vectors[s] * c for s, c in r.products.items()))  # fmt: skip
            assert sum(r.reactants.values()) <= 2 and sum(r.products.values()) <= 2
        # one mass per species (A = B = 1, C = 3) would balance both in one library; element vectors never do
        assert not {"A + Z -> C", "B + Z -> C"} <= reactions(lib)
    # no library repeats another, and each can make C from A and B
    assert len({frozenset(reactions(lib)) for lib in libraries}) == len(libraries)
    # two hidden species: compositions given per species
    (two,) = enumerate_libraries(["A", "B", "C"], ["A", "B"], composition, hidden_species=2,
                                 hidden_compositions={"Z1": [1, 1], "Z2": [2, 1]})  # fmt: skip
    assert two.species == ("A", "B", "C", "Z1", "Z2")
    assert {"A + B -> Z1", "A + Z1 -> Z2", "Z2 -> C"} <= reactions(two)


def test_bad_arguments_name_the_argument(tiny):
    ok = {"A": [1], "B": [2]}
    cases = [
        (dict(composition=None), "composition"),
        (dict(composition={"A": [1], "B": [2, 0]}), "composition"),
        (dict(composition={"A": [1]}), "composition"),
        (dict(composition={"A": [1], "B": [-2]}), "composition"),
        (dict(composition=ok, hidden_species=-1), "hidden_species"),
        (dict(composition=ok, hidden_compositions={"Z": [1, 1]}), "hidden_compositions"),
        (dict(composition=ok, hidden_compositions={"Q": [1]}), "hidden_compositions"),
        (dict(composition=ok, n_starts=0), "n_starts"),
        (dict(composition=ok, epochs=0), "epochs"),
        (dict(composition=ok, sparsity=-1.0), "sparsity"),
        (dict(composition={"A": [1], "B": [5]}, hidden_species=0), "library is empty"),
        (dict(composition=ok, max_products=0), "max_products"),
        (dict(composition=ok, max_hidden_size=0), "max_hidden_size"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            discover(tiny, progress=False, **kwargs)
    no_validation = Dataset(tiny.species, tiny.ts, tiny.ys, tiny.y0, np.array(["train"] * tiny.n_experiments))
    with pytest.raises(ValueError, match="validation"):
        discover(no_validation, composition=ok, progress=False)
    with pytest.raises(ValueError, match="criterion"):
        Simplification(criterion="cv")


def test_simplifier_removes_a_null_pair_as_a_group(two_step):
    # The positive control plus A + B -> 2A and A + B -> 2B at equal rates: together they do nothing.
    truth = Mechanism.parse(two_step.metadata["mechanism"], species=["A", "B", "Z"])
    padded = Mechanism.parse(
        "2A <=> Z ; 2.0, 10.0\nZ + A -> B ; 0.5\nA + B -> 2A ; 0.7\nA + B -> 2B ; 0.7", species=["A", "B", "Z"]
    )
    # One Levenberg-Marquardt step per trial refit: removing one reaction of the pair leaves the other at
    # full rate (the fit is ruined and the criterion rises); only removing the pair at once keeps the fit.
    for settings in [Simplification(child_iterations=1), Simplification(child_iterations=1, screen=0)]:
        simplified, removed = simplify(padded, two_step, simplification=settings)  # bulk removal; all pairs
        assert recovered(truth, simplified, rate_tol=0.01), str(simplified)
        assert [sorted(g) for g in removed] == [["A + B -> 2A", "A + B -> 2B"]]
    # one reaction at a time, the same refits cannot undo the pair
    one_at_a_time = Simplification(child_iterations=1, screen=0, max_group=1)
    stuck, removed = simplify(padded, two_step, simplification=one_at_a_time)
    assert stuck.n_reactions == 5 and removed == []


def test_a_second_identical_discover_compiles_nothing(tiny):
    from test_train import _compilations  # JAX's own log of XLA compilations, counted

    call = lambda: discover(tiny, 0, composition={"A": [1], "B": [2]}, n_starts=2, epochs=20,
                            training=Training(eval_every=10), progress=False)  # fmt: skip
    assert _compilations(call) > 0  # the first call compiles (the counter works)
    assert _compilations(call) == 0


@pytest.mark.slow
def test_positive_control_is_recovered_by_a_clear_majority(two_step):
    truth = Mechanism.parse(two_step.metadata["mechanism"])
    result = discover(two_step, composition={"A": [1], "B": [3]}, n_starts=4, epochs=300, progress=False)
    found = [recovered(truth, result.mechanism(s)) for s in range(result.n_starts)]
    assert sum(found) >= 3, result.ranked
    assert result.n_starts == 4 and result.mechanism().species == ("A", "B", "Z")
    best = result.ranked.iloc[0]
    assert set(best["mechanism"].split("; ")) == {"2A -> Z", "Z -> 2A", "A + Z -> B"}
    assert best["starts"] == sum(found) and best["hidden composition"] == {"Z": [2]}
    assert list(result.table().columns) == ["equation", "rate", "orders", "total order"]
    # every library reaction of every run is accounted for: kept or pruned, then eliminated or final
    for _, run in result.runs.iterrows():
        assert len(run["kept"]) + len(run["pruned"]) == result.libraries[run["library"]].n_reactions
        assert sum(len(g) for g in run["eliminated"]) + len(run["final"]) == len(run["kept"]) + len(run["added"])
    assert set(result.timing) >= {"learn_s", "simplify_s", "rescore_s", "total_s"}
    assert isinstance(crnn.Discovery, type) and crnn.discover is discover
