import json
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crnn import CRNN, Adam, Dataset, Mechanism, RandomStarts, fit, make_dataset, simulate
from crnn._model import mass_action_rates
from crnn.hidden import as_hidden
from crnn.integrate import RK4, Rosenbrock
from crnn.report import match_reactions, recovered
from crnn.results import DATA


@pytest.fixture(scope="module")
def tiny_dataset():
    return make_dataset(Mechanism.parse("A -> B ; 0.2"), n_experiments=6, n_train=4, n_points=30, t_end=20)


@pytest.fixture(scope="module")
def two_step():
    return Dataset.load(DATA / "two_step_hidden_Z.csv")


def test_fit_learns_first_order_decay(tiny_dataset):
    result = fit(tiny_dataset, n_reactions=1, epochs=1500, n_starts=1, progress=False)
    learned = result.mechanism()
    assert recovered(Mechanism.parse("A -> B ; 0.2"), learned, coefficient_tol=0.05, rate_tol=0.03), str(learned)
    assert result.train_history.shape == (1, 1500)
    assert result.validation_history.shape == (1, 15) and result.validation_epochs[-1] == 1500
    assert result.final_validation_loss[0] < 0.02
    assert result.failures.tolist() == [0] and result.ok
    assert isinstance(result.integrator, RK4)  # no hidden species: the explicit default
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
    assert a.config["seed"] == 4 and a.config["n_starts"] == 3 and a.config["integrator"]["name"] == "RK4"


def test_extra_species_are_hidden_and_integrated_stiff_safely(tiny_dataset):
    result = fit(tiny_dataset, n_reactions=2, extra_species=1, epochs=50, n_starts=2, progress=False)
    assert result.species == ("A", "B", "Z") and result.n_observed == 2
    assert result.params.w_out.shape == (2, 3)
    assert isinstance(result.integrator, Rosenbrock) and result.config["integrator"]["tableau"] == "rodas3"


@pytest.mark.parametrize("k_true", [100.0, 1.8e-4])
def test_reach_rate_constants_100_times_outside_the_initialisation(k_true):
    # The default initialisation draws ln k in (-4, 0), i.e. k in [0.018, 1]: k = 100 and 1.8e-4 are 100
    # times above and below it. The fast data are sampled over 3 of their time constants (sampled on
    # [0, 40] they would be over before the first sample: no information); the slow ones on the
    # protocol's [0, 40] (0.7 % converted).
    t_end = 3.0 / k_true if k_true > 1 else 40.0
    data = make_dataset(Mechanism.parse(f"A -> B ; {k_true}"), n_experiments=6, n_train=4, n_points=30, t_end=t_end)
    # (a) From the far end of the initialisation range (ln k = -4 for the fast truth, 0 for the slow
    # one: 8.6 to travel), stoichiometry given: the optimiser's reach alone.
    far = CRNN(jnp.array([[-1.0, 1.0]]), jnp.array([-4.0 if k_true > 1 else 0.0]))
    result = fit(data, n_reactions=1, epochs=2000, init=far, optimizer=Adam(train_stoichiometry=False), progress=False)
    assert np.exp(float(result.params.ln_k[0])) == pytest.approx(k_true, rel=0.05)
    # (b) From random starts, stoichiometry learned too (the slow data, 0.7 % converted, cannot tell the
    # order of the reaction, so only the fast one is identifiable this way).
    if k_true > 1:
        result = fit(data, n_reactions=1, epochs=2000, n_starts=2, progress=False)
        (rate,) = result.mechanism().rates
        assert rate == pytest.approx(k_true, rel=0.05)


def test_failed_solves_do_not_poison_parameters(tiny_dataset):
    # Start from a rate constant that overflows (k = e^800): every solve and gradient is non-finite;
    # each step is skipped and counted, parameters stay finite, and the result says it failed.
    stiff = CRNN(jnp.array([[-1.0, 1.0]]), jnp.array([800.0]))
    with pytest.warns(UserWarning, match="no start ended with a finite loss"):
        result = fit(tiny_dataset, n_reactions=1, epochs=20, eval_every=10, init=stiff, progress=False)
    assert result.failures.tolist() == [20] and not result.ok
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(result.all_params))
    np.testing.assert_array_equal(np.asarray(result.params.ln_k), [800.0])  # never moved
    assert result.final_train_loss[0] == np.inf
    # a start whose re-solve fails is marked, not a crash: nothing judged dead, and judging goes on
    assert not result.solve_ok(tiny_dataset, 0)
    assert result.active(tiny_dataset, 0).tolist() == [True]
    assert np.all(np.isinf(result.fluxes(tiny_dataset, 0)))
    from crnn.landscape import judge_fit

    judged = judge_fit(result, tiny_dataset, {"A": [1], "B": [1]}, Mechanism.parse("A -> B ; 0.2"), n_starts=1, iterations=5)
    assert judged["solve failed"].tolist() == [True] and judged["rounded"].tolist() == ["A -> B"]


def test_init_rejects_options_it_would_ignore(tiny_dataset):
    start = CRNN(jnp.array([[-1.0, 1.0]]), jnp.array([-1.0]))
    for options in [dict(seed=3), dict(n_starts=4)]:
        with pytest.raises(ValueError, match="init= a CRNN fixes the one start"):
            fit(tiny_dataset, n_reactions=1, epochs=1, init=start, progress=False, **options)
    with pytest.raises(TypeError, match="RandomStarts"):
        fit(tiny_dataset, n_reactions=1, epochs=1, init=dict(tied=False), progress=False)


def test_frozen_stoichiometry_stays_exactly_as_given(tiny_dataset):
    start = CRNN(jnp.array([[-0.9, 1.2]]), jnp.array([-1.0]))
    result = fit(tiny_dataset, n_reactions=1, epochs=300, init=start, optimizer=Adam(train_stoichiometry=False), progress=False)
    np.testing.assert_array_equal(np.asarray(result.params.w_out), np.asarray(start.w_out))
    assert float(result.params.ln_k[0]) != -1.0


def test_fluxes_use_the_hidden_species_trajectories(two_step):
    truth = Mechanism.parse(two_step.metadata["mechanism"], species=["A", "B", "Z"])
    start = CRNN.from_mechanism(truth)
    result = fit(two_step, 3, extra_species=1, init=start, epochs=1, optimizer=Adam(lr=0.0, lr_ln_k=0.0), progress=False)
    y0 = np.concatenate([two_step.y0[two_step.train], np.zeros((int(two_step.train.sum()), 1))], axis=1)
    states = np.asarray(simulate(truth, y0, two_step.ts)).reshape(-1, 3)
    w_in, ln_k, _ = truth.to_weights()
    expected = np.asarray(jax.vmap(lambda y: mass_action_rates(y, w_in, ln_k, 1e-5))(states)).max(axis=0)
    # Z -> 2A and Z + A -> B consume Z: evaluated at Z = 0 they would be ~1e-4 of these.
    np.testing.assert_allclose(result.fluxes(two_step), expected, rtol=1e-4)
    assert result.trajectories(two_step.y0[0], two_step.ts).shape == (100, 3)


def test_qss_predictions_compile_once():
    from crnn._train import _full_trajectories

    data = make_dataset(Mechanism.parse("3A -> B ; 0.1"), n_experiments=4, n_train=2, n_points=20)
    result = fit(data, 2, extra_species=1, hidden="qss", epochs=20, n_starts=2, progress=False)
    result.predict(data.y0[:2], data.ts)
    size = _full_trajectories._cached._cache_size()
    for s in range(2):
        result.predict(data.y0[:2], data.ts, start=s)
    assert _full_trajectories._cached._cache_size() == size


def _compilations(call) -> int:
    """How many XLA compilations `call()` triggers (JAX's own log of them)."""
    import logging

    class Count(logging.Handler):
        n = 0

        def emit(self, record):
            if "Finished XLA compilation" in record.getMessage():
                Count.n += 1

    handler = Count()
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    jax.config.update("jax_log_compiles", True)
    try:
        call()
    finally:
        jax.config.update("jax_log_compiles", False)
        logger.removeHandler(handler)
    return Count.n


def test_a_second_identical_fit_compiles_nothing(tiny_dataset, two_step):
    for data, kw in [(tiny_dataset, dict(n_reactions=2)), (two_step, dict(n_reactions=3, extra_species=1))]:
        call = lambda: fit(data, epochs=50, n_starts=2, eval_every=25, progress=False, **kw)
        assert _compilations(call) > 0  # the first call compiles (the counter works)
        assert _compilations(call) == 0
    # other hyperparameters, seed and epochs are arguments of the compiled step, not constants in it
    other = lambda: fit(tiny_dataset, 2, order_penalty=0.3, epochs=75, n_starts=2, eval_every=25, seed=9,
                        optimizer=Adam(lr=0.02, lr_ln_k=0.1, grad_clip=3.0), progress=False)  # fmt: skip
    assert _compilations(other) == 0


def test_starts_stepped_in_groups_give_the_all_at_once_result(tiny_dataset):
    from crnn._train import _Data, _Hyper, _initial_state, _Model, _run_chunk

    model = _Model(as_hidden("integrated"), RK4(), 1e-5, 2, 0, tuple(tiny_dataset.ts.tolist()))
    data = _Data(jnp.asarray(tiny_dataset.y0), jnp.asarray(tiny_dataset.ys), jnp.asarray(tiny_dataset.scale()))
    one = lambda v: jnp.asarray(v, dtype=float)
    hyper = _Hyper(one(1.0), one(2.0), one(0.01), one(0.05), one(0.01), one(10.0), one(100), True)
    state = _initial_state(hyper, RandomStarts().draw(5, 0, 2, 2))
    a, _ = _run_chunk(model, hyper, data, state, 20, None)
    b, _ = _run_chunk(model, hyper, data, state, 20, 2)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-12, atol=1e-14)


def test_bad_arguments(tiny_dataset):
    with pytest.raises(ValueError, match="n_reactions"):
        fit(tiny_dataset, n_reactions=0)
    with pytest.raises(ValueError, match="order_penalty"):
        fit(tiny_dataset, n_reactions=1, order_penalty=-1)
    with pytest.raises(ValueError, match="integrator"):
        fit(tiny_dataset, n_reactions=1, integrator="euler", epochs=1)
    with pytest.raises(ValueError, match="hidden"):
        fit(tiny_dataset, n_reactions=1, hidden="frozen", epochs=1)


@pytest.mark.slow
def test_classic_mechanism_is_recovered_with_defaults(classic, classic_dataset):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = fit(classic_dataset, n_reactions=4, progress=False)
    learned = result.mechanism(threshold=0.01)
    matches = match_reactions(classic, learned)
    detail = "\n".join(f"{classic.reactions[m.true_index]} ~ {m} " for m in matches) + f"\nlearned:\n{learned}"
    for m in matches:
        assert m.coefficient_error <= 0.1, detail
        assert m.rate_error <= 0.05, detail


@pytest.mark.slow
def test_random_starts_spread_over_two_devices_give_the_single_device_result(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "shard.py"
    script.write_text(
        "import json, numpy as np, crnn\n"
        'm = crnn.Mechanism.parse("2A -> B ; 0.1\\nA -> C ; 0.2\\nC -> D ; 0.13\\nB + D -> E ; 0.3")\n'
        "ds = crnn.make_dataset(m, reactants=['A', 'B'], seed=0)\n"
        "a = crnn.fit(ds, 4, epochs=300, n_starts=4, progress=False)\n"
        "b = crnn.fit(ds, 4, epochs=300, n_starts=4, progress=False, shard_starts=False)\n"
        "print(json.dumps({'devices': [a.config['devices'], b.config['devices']],\n"
        "                  'sharding': str(a.all_params.ln_k.sharding),\n"
        "                  'val': [a.final_validation_loss.tolist(), b.final_validation_loss.tolist()],\n"
        "                  'ln_k': [np.asarray(a.all_params.ln_k).tolist(), np.asarray(b.all_params.ln_k).tolist()]}))\n"
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "CRNN_PROGRESS": "0"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["devices"] == [2, 1] and "starts" in got["sharding"]
    np.testing.assert_allclose(got["val"][0], got["val"][1], rtol=1e-9)
    np.testing.assert_allclose(got["ln_k"][0], got["ln_k"][1], rtol=1e-9, atol=1e-12)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="known failure, reported in the book's positive-control chapter: gradient training with the defaults does not "
    "recover the in-class two-step mechanism (0 of 32 starts in the full run); strict, so a fix shows up here",
)
def test_positive_control_is_recovered_by_half_of_the_starts(two_step):
    # The chapter-3 budget (2000 epochs) on 4 starts keeps this inside the CI time; the chapter runs 32 starts
    # at 5000 epochs on three data sets.
    result = fit(two_step, 3, extra_species=1, n_starts=4, epochs=2000, progress=False)
    truth = Mechanism.parse(two_step.metadata["mechanism"])
    found = [recovered(truth, result.mechanism(0.01, start=s)) for s in range(result.n_starts)]
    assert sum(found) >= result.n_starts / 2
