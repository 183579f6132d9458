"""The exhaustive mechanism map: enumeration checked by hand and by its invariants; rate fits on a known answer."""

import os

import numpy as np
import pytest

from crnn import Dataset, Mechanism, simulate
from crnn.landscape import Candidate, enumerate_mechanisms, fit_rates, hidden_compositions
from crnn.results import DATA


def labels(candidates):
    return {frozenset(c.equations()) for c in candidates}


def test_hand_counted_isomerisation():
    # A -> B with A, B, Z all of one unit, unimolecular products only, up to two reactions, A initial.
    # By hand: {A->B}; A->B with one of A->Z, B->A, B->Z; and A->Z, Z->B. (Z->A, Z->B beside A->B
    # are dead: nothing makes Z; A->Z, Z->A never makes B.)
    found = enumerate_mechanisms({"A": [1], "B": [1]}, ["A"], max_reactions=2, max_products=1, max_hidden_size=1)
    expected = {
        frozenset({"A -> B"}),
        frozenset({"A -> B", "A -> Z"}),
        frozenset({"A -> B", "B -> A"}),
        frozenset({"A -> B", "B -> Z"}),
        frozenset({"A -> Z", "Z -> B"}),
    }
    assert labels(found) == expected and len(found) == 5


@pytest.mark.parametrize(
    "composition, initial",
    [({"A": [1], "B": [3]}, ["A"]), ({"A": [1, 0], "B": [0, 1], "C": [2, 1]}, ["A", "B"])],
)
def test_enumeration_invariants(composition, initial):
    found = enumerate_mechanisms(composition, initial, max_reactions=3, max_products=3, max_hidden_size=3)
    assert len({c.key for c in found}) == len(found)  # no duplicates
    for c in found:
        mech = c.mechanism()
        z = c.hidden_composition or (0,) * len(next(iter(composition.values())))
        comp = {**{s: np.array(v) for s, v in composition.items()}, "Z": np.array(z)}
        for r in mech.reactions:
            assert sum(r.reactants.values()) <= 2 and sum(r.products.values()) <= 3
            mass_in = sum(comp[s] * n for s, n in r.reactants.items())
            mass_out = sum(comp[s] * n for s, n in r.products.items())
            np.testing.assert_array_equal(mass_in, mass_out)
    template = {"3A": "2A -> Z|Z -> 2A|A + Z -> B", "2AB": "2A -> Z|Z -> 2A|B + Z -> C"}["3A" if len(initial) == 1 else "2AB"]
    assert frozenset(template.split("|")) in labels(found)


def test_candidate_from_mechanism_matches_the_enumerated_twin():
    found = enumerate_mechanisms({"A": [1], "B": [3]}, ["A"], max_reactions=3, max_products=2)
    truth = Candidate.from_mechanism(
        Mechanism.parse("2A <=> Z ; 2, 10\nZ + A -> B ; 0.5", species=["A", "B", "Z"]), ["A", "B", "Z"]
    )
    assert truth.key in {c.key for c in found}
    assert hidden_compositions(2, 2) == [(0, 1), (1, 0), (0, 2), (1, 1), (2, 0)]


@pytest.mark.slow
def test_rate_fits_find_the_positive_control_and_rank_it_first():
    data = Dataset.load(DATA / "two_step_hidden_Z.csv")
    found = enumerate_mechanisms({"A": [1], "B": [3]}, ["A"], max_reactions=3, max_products=2)
    fitted = fit_rates(found, data, n_starts=2, iterations=40)
    best = fitted.table.sort_values("validation loss").iloc[0]
    assert frozenset(best["mechanism"].split("; ")) == frozenset({"2A -> Z", "Z -> 2A", "A + Z -> B"})
    rates = dict(zip(best["mechanism"].split("; "), best["rates"]))
    assert rates["2A -> Z"] == pytest.approx(2.0, rel=0.01)
    assert rates["Z -> 2A"] == pytest.approx(10.0, rel=0.01)
    assert rates["A + Z -> B"] == pytest.approx(0.5, rel=0.01)
    assert best["bic rank"] == 1 and len(fitted.noise_floor(best["validation loss"])) == 1


def test_rounding_a_learned_mechanism():
    from crnn.landscape import round_mechanism

    # the positive control as a CRNN might learn it: Z in a unit where its coefficients are 0.63
    learned = Mechanism.parse(
        "1.98A -> 0.63Z ; 2\n0.64Z -> 2.01A ; 10\n1.02A + 0.62Z -> 0.99B ; 0.5\n0.004A -> 0.003B ; 1e-3", species=["A", "B", "Z"]
    )
    candidate, info = round_mechanism(learned, {"A": [1], "B": [3]})
    assert set(candidate.equations()) == {"2A -> Z", "Z -> 2A", "A + Z -> B"}
    assert info["elementary"] and info["balanced"] and info["hidden_composition"] == (2,)
    assert info["rounding_error"] == pytest.approx(0.04, abs=0.02)
    # the second-order copy of chapter 2 rounds to an unbalanced reaction
    copy, info = round_mechanism(Mechanism.parse("2.1A -> 0.72B ; 0.06", species=["A", "B", "Z"]), {"A": [1], "B": [3]})
    assert copy.equations() == ["2A -> B"] and not info["balanced"]


def test_a_second_identical_rate_fit_compiles_nothing():
    from test_train import _compilations

    data = Dataset.load(DATA / "two_step_hidden_Z.csv")
    candidates = enumerate_mechanisms({"A": [1], "B": [3]}, ["A"], max_reactions=2, max_hidden_size=2)[:3]
    call = lambda: fit_rates(candidates, data, n_starts=1, iterations=3, progress=False)
    assert _compilations(call) > 0
    assert _compilations(call) == 0
    other = lambda: fit_rates(candidates[::-1], data, n_starts=1, iterations=3, seed=5, ln_k_bounds=(-10.0, 6.0), progress=False)
    assert _compilations(other) == 0  # other candidates of the same shape, seed and bounds: arguments, not constants


@pytest.mark.slow
def test_adaptive_rescoring_is_stored_in_the_persistent_compilation_cache(tmp_path):
    """The adaptive (Kvaerno5) re-solve of every rate fit compiles to an executable without host callbacks
    (equinox's runtime checks give NaN: `crnn/__init__`), so a fresh process stores it in the persistent cache and the
    next one loads it instead of compiling again. With equinox's default (`EQX_ON_ERROR=raise`) it is never stored."""
    import subprocess
    import sys

    script = (
        "import crnn\n"
        "from crnn.landscape import Candidate, fit_rates\n"
        "m = crnn.Mechanism.parse('A -> B ; 0.5')\n"
        "d = crnn.make_dataset(m, reactants=['A'], seed=0)\n"
        "fit_rates([Candidate.from_mechanism(m, ['A', 'B'])], d, n_starts=1, iterations=2, progress=False)\n"
    )
    stored = {}
    for mode in ["default", "raise"]:
        cache = tmp_path / mode
        env = {**os.environ, "CRNN_JAX_CACHE": str(cache), "CRNN_PROGRESS": "0"}
        env.pop("EQX_ON_ERROR", None)
        if mode == "raise":
            env["EQX_ON_ERROR"] = "raise"
        subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=600)
        stored[mode] = sorted(p.name.split("-")[0] for p in cache.iterdir())
    assert "jit__rate_losses" in stored["default"], stored
    assert "jit__rate_losses" not in stored["raise"], stored  # the reference: a host callback keeps it out


def test_a_failed_solve_in_one_subset_leaves_the_other_subsets_losses_finite():
    """The re-scoring solves every experiment once: a failed solve of a validation experiment makes the validation
    loss infinite and leaves the training loss as it is, and the other way round (each subset as if solved alone)."""
    import jax.numpy as jnp

    from crnn.integrate import Adaptive
    from crnn.landscape import EXACT, _padded_weights, _rate_losses

    truth = Mechanism.parse("2A -> B ; 1.0")
    w_in, w_out, _ = _padded_weights([Candidate.from_mechanism(truth, ["A", "B"])])
    ts = np.linspace(0.0, 5.0, 20)
    y0 = np.array([[0.5, 0.0], [1.0, 0.0], [2000.0, 0.0]])  # the third needs far more steps than the others
    ys = np.asarray(simulate(truth, y0, ts))
    integrator = Adaptive(max_steps=250)
    _, ok = integrator.solve_each(EXACT, (w_in[0], jnp.zeros(1), w_out[0]), jnp.asarray(y0), jnp.asarray(ts))
    assert np.asarray(ok).tolist() == [True, True, False]  # what the test relies on
    args = (integrator, EXACT, 2, jnp.asarray(w_in), jnp.zeros((1, 1)), jnp.asarray(w_out), jnp.asarray(y0), jnp.asarray(ys),
            jnp.ones(2), tuple(ts.tolist()))  # fmt: skip
    train_loss, sse, val_loss, each = (np.asarray(a)[0] for a in _rate_losses(*args, jnp.asarray([True, True, False])))
    assert train_loss == pytest.approx(0.0, abs=1e-6) and sse == pytest.approx(0.0, abs=1e-9) and np.isinf(val_loss)
    assert np.isinf(each[2]) and np.all(np.isfinite(each[:2]))
    train_loss, sse, val_loss, each = (np.asarray(a)[0] for a in _rate_losses(*args, jnp.asarray([False, True, True])))
    assert np.isinf(train_loss) and np.isinf(sse) and val_loss == pytest.approx(0.0, abs=1e-6)
