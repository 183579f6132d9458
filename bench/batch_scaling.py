"""How the training step's cost grows with the number of random starts, and what bounds it (profile, not target).

Issue 18 asks 32 random starts for at least 4 x the start-epochs per second of one start. This benchmark measures
where the time of one training step (`crnn._train._run_chunk`, value and gradient and Adam, all starts) goes as the
starts grow, and the arithmetic floor under it on this machine:

- the throughput of `exp` and `log` (ns per element, float64 and float32, large arrays): every evaluation of the
  CRNN's rate law takes one `log` per species and one `exp` per reaction, per experiment and state;
- for the classic case (RK4 on the data grid: 4 reactions, 5 species) and the case-3 set-up (Rosenbrock, 3 reactions,
  one hidden species): the time per start-epoch with 1, 4, 8 and 32 starts (all at once, and in the integrator's
  default groups), the ratio to one start, and the time the forward pass's `exp` and `log` alone take per start-epoch
  (a lower bound on the forward pass; the gradient pass reuses these values), and its share of the step with the
  most starts (small: the step is not bound by these functions);
- the Rosenbrock set-up also in float32 (data, parameters and hyperparameters cast; the solver works in the dtype of
  the initial states), to price the float32 lever the issue names.

Writes bench/results/batch_scaling.json. Run: python bench/batch_scaling.py [--quick]
"""

import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import crnn
from crnn import _train, load_dataset
from crnn.hidden import as_hidden
from crnn.integrate import RK4, Rosenbrock

OUT = Path(__file__).resolve().parent / "results" / "batch_scaling.json"


def _best_time(f, *args, repeats: int = 5) -> float:
    jax.block_until_ready(f(*args))
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def transcendentals(n: int = 1_000_000) -> dict:
    out = {}
    for dtype in (jnp.float64, jnp.float32):
        x = jnp.asarray(np.random.default_rng(0).uniform(0.1, 2.0, n), dtype=dtype)
        for name, fn in (("exp", jnp.exp), ("log", jnp.log)):
            out[f"{name}_ns_per_element_{dtype.__name__}"] = _best_time(jax.jit(fn), x, repeats=20) / n * 1e9
    return out


def _setup(ds, n_reactions, n_starts, integrator, extra_species, dtype):
    n_species = len(ds.species) + extra_species
    cast = lambda a: jnp.asarray(a, dtype=dtype)
    params0 = jax.tree.map(cast, crnn.RandomStarts().draw(n_starts, 0, n_species, n_reactions))
    model = _train._Model(as_hidden("integrated"), integrator, 1e-5, len(ds.species), extra_species, tuple(ds.ts.tolist()))
    data = _train._Data(cast(ds.y0[ds.train]), cast(ds.ys[ds.train]), cast(ds.scale()))
    hyper = _train._Hyper(
        order_penalty=cast(1.0), max_total_order=cast(2.0), lr=cast(0.01), lr_ln_k=cast(0.05), lr_decay=cast(0.01),
        grad_clip=cast(10.0), epochs=cast(2000), train_stoichiometry=True,
    )  # fmt: skip
    return model, hyper, data, _train._initial_state(hyper, params0)


def step_time(ds, n_reactions, n_starts, integrator, group, extra_species=0, dtype=jnp.float64, length=20) -> float:
    """Seconds per epoch of `_run_chunk` (all starts), best of 3 after a compiling call."""
    model, hyper, data, state = _setup(ds, n_reactions, n_starts, integrator, extra_species, dtype)
    run = lambda s: _train._run_chunk(model, hyper, data, s, length, group)[1][0]
    return _best_time(run, state, repeats=3) / length


def setup_scaling(name, ds, n_reactions, integrator, extra_species, evaluations_per_step, starts, dtype=jnp.float64):
    rows, one = [], None
    for n in starts:
        for group in [None] + ([integrator.start_group] if integrator.start_group and integrator.start_group < n else []):
            t = step_time(ds, n_reactions, n, integrator, group, extra_species, dtype)
            one = t if n == 1 else one
            rows.append({"starts": n, "group": group, "ms_per_start_epoch": 1e3 * t / n, "ratio_to_1_start": one * n / t})
            print(json.dumps({"setup": name, "dtype": dtype.__name__, **rows[-1]}), flush=True)
    n_species, n_experiments = len(ds.species) + extra_species, int(ds.train.sum())
    states = evaluations_per_step * n_experiments  # rate-law evaluations per epoch of one start (forward pass)
    return {"experiments": n_experiments, "species": n_species, "reactions": n_reactions,
            "rate_law_evaluations_per_start_epoch": states, "rows": rows}  # fmt: skip


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1 and 4 starts only (smoke test)")
    args = parser.parse_args()
    starts = (1, 4) if args.quick else (1, 4, 8, 32)
    report = {"machine": {"cpus": os.cpu_count(), "jax": jax.__version__, "device": str(jax.devices()[0])}}
    report["transcendentals"] = tr = transcendentals()
    print(json.dumps(tr), flush=True)

    classic = crnn.make_dataset(
        crnn.Mechanism.parse("2A -> B ; 0.1\nA -> C ; 0.2\nC -> D ; 0.13\nB + D -> E ; 0.3"), reactants=["A", "B"], seed=0
    )
    rk4_evals = 4 * (len(classic.ts) - 1)  # four stages per interval, one step per interval
    report["classic_rk4"] = setup_scaling("classic, RK4", classic, 4, RK4(), 0, rk4_evals, starts)
    case3 = load_dataset("third_order_3A")
    ros_evals = 3 * Rosenbrock().steps(case3.ts)  # RODAS3: one f with its Jacobian and two more f per step
    report["case3_rosenbrock"] = setup_scaling("case 3, Rosenbrock", case3, 3, Rosenbrock(), 1, ros_evals, starts)
    report["case3_rosenbrock_float32"] = setup_scaling(
        "case 3, Rosenbrock", case3, 3, Rosenbrock(), 1, ros_evals, (1, starts[-1]), dtype=jnp.float32
    )
    for key in ("classic_rk4", "case3_rosenbrock", "case3_rosenbrock_float32"):
        s = report[key]
        dtype = "float32" if key.endswith("float32") else "float64"
        per_eval_ns = s["species"] * tr[f"log_ns_per_element_{dtype}"] + s["reactions"] * tr[f"exp_ns_per_element_{dtype}"]
        s["forward_exp_log_ms_per_start_epoch"] = s["rate_law_evaluations_per_start_epoch"] * per_eval_ns * 1e-6
        largest = max(r["starts"] for r in s["rows"])
        most = min((r for r in s["rows"] if r["starts"] == largest), key=lambda r: r["ms_per_start_epoch"])
        s["best_ratio_at_most_starts"] = most["ratio_to_1_start"]
        s["exp_log_share_of_the_step_at_most_starts"] = s["forward_exp_log_ms_per_start_epoch"] / most["ms_per_start_epoch"]
    if not args.quick:
        OUT.parent.mkdir(exist_ok=True)
        OUT.write_text(json.dumps(report, indent=1, default=float) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1, default=float))


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    main()
