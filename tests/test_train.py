import jax
import numpy as np
import pytest

import crnn
from crnn import CRNN, Mechanism, fit, make_dataset
from crnn.report import match_reactions, recovered


@pytest.fixture(scope="module")
def tiny_dataset():
    return make_dataset(Mechanism.parse("A -> B ; 0.2"), n_experiments=6, n_train=4, n_points=30, t_end=20)


def test_fit_learns_first_order_decay(tiny_dataset):
    result = fit(tiny_dataset, n_reactions=1, epochs=1500, ln_k_range=(-3.0, -1.0), progress=False)
    learned = result.mechanism()
    assert recovered(Mechanism.parse("A -> B ; 0.2"), learned, coefficient_tol=0.05, rate_tol=0.03), str(learned)
    assert result.train_history.shape == (1, 1500)
    assert result.validation_history.shape == (1, 15) and result.validation_epochs[-1] == 1500
    assert result.final_validation_loss[0] < 0.02
    assert result.failures.tolist() == [0]
    table = result.table()
    assert list(table.columns) == ["equation", "rate", "orders", "total order"]
    assert table.loc[0, "rate"] == pytest.approx(0.2, rel=0.03)


def test_same_seed_same_result_and_starts_differ(tiny_dataset):
    kw = dict(n_reactions=2, epochs=200, n_starts=3, progress=False, seed=4)
    a, b = fit(tiny_dataset, **kw), fit(tiny_dataset, **kw)
    for x, y in zip(jax.tree.leaves(a.all_params), jax.tree.leaves(b.all_params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_array_equal(a.train_history, b.train_history)
    np.testing.assert_array_equal(a.final_validation_loss, b.final_validation_loss)
    assert a.best_start == b.best_start
    assert not np.allclose(a.train_history[0], a.train_history[1])  # distinct random starts
    assert a.final_validation_loss[a.best_start] == a.final_validation_loss.min()


def test_extra_species_are_hidden(tiny_dataset):
    result = fit(tiny_dataset, n_reactions=2, extra_species=1, epochs=50, progress=False)
    assert result.species == ("A", "B", "Z") and result.n_observed == 2
    assert result.params.w_out.shape == (2, 3)


def test_failed_solves_do_not_poison_parameters(tiny_dataset):
    # Start from a rate constant that overflows (k = e^800): every solve and
    # gradient is non-finite; each step is skipped and counted, parameters stay finite.
    stiff = CRNN(jax.numpy.array([[-1.0, 1.0]]), jax.numpy.array([800.0]))
    result = fit(tiny_dataset, n_reactions=1, epochs=20, eval_every=10, init=stiff, progress=False)
    assert result.failures.tolist() == [20]
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(result.all_params))
    np.testing.assert_array_equal(np.asarray(result.params.ln_k), [800.0])  # never moved
    assert result.final_train_loss[0] == np.inf  # the adaptive re-evaluation fails too, and says so


def test_bad_arguments(tiny_dataset):
    with pytest.raises(ValueError, match="n_reactions"):
        fit(tiny_dataset, n_reactions=0)
    with pytest.raises(ValueError, match="order_penalty"):
        fit(tiny_dataset, n_reactions=1, order_penalty=-1)
    with pytest.raises(ValueError, match="integrator"):
        fit(tiny_dataset, n_reactions=1, integrator="euler", epochs=1)


@pytest.mark.slow
def test_classic_mechanism_is_recovered(classic, classic_dataset):
    result = fit(classic_dataset, n_reactions=4, order_penalty=1.0, progress=False)
    learned = result.mechanism(threshold=0.01)
    matches = match_reactions(classic, learned)
    detail = "\n".join(f"{classic.reactions[m.true_index]} ~ {m} " for m in matches) + f"\nlearned:\n{learned}"
    for m in matches:
        assert m.coefficient_error <= 0.1, detail
        assert m.rate_error <= 0.05, detail
    assert crnn.report.recovered(classic, learned)
