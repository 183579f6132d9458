"""`crnn.discover`'s learning step through the dense field and through a library's own field (profile, not target).

The learner trains every library's rate constants through the Rosenbrock solve. `MassAction` takes the
stoichiometry as an argument (one compilation for every library, every product of the rate law's n x n
Jacobian written out, zeros included); `FixedMassAction` compiles one library's stoichiometry in and writes
only its nonzero terms. This benchmark takes the library learner's largest problem (the truth with two hidden
species: A + B <=> Z1, Z1 + A -> Z2, Z2 -> C; its 16 libraries hold 6 to 28 reactions) and times one
learning chunk (`crnn.discover._learn_chunk`, `--epochs` Adam steps of `--starts` random starts) of one library
through each field: the first call (compilation included), the best of three more, and the largest difference
of the learned ln k after the four chunks (rounding: fused multiply-adds group the two fields' sums differently).

Writes bench/results/discover_fields.json. Run: python bench/discover_fields.py [--epochs 20] [--starts 16]
[--library 7] (library 7 has 28 reactions; 5 has 8)
"""

import argparse
import importlib
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import crnn
from crnn.integrate import FixedMassAction, MassAction

OUT = Path(__file__).resolve().parent / "results" / "discover_fields.json"
D = importlib.import_module("crnn.discover")  # the module (crnn.discover is also the function's name)
TRUTH = ["A + B -> Z1 ; 1.0", "Z1 -> A + B ; 0.5", "Z1 + A -> Z2 ; 0.5", "Z2 -> C ; 0.3"]  # the learner's notebook


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--starts", type=int, default=16)
    parser.add_argument("--library", type=int, default=7)
    args = parser.parse_args()

    data = crnn.make_dataset(crnn.Mechanism.parse("\n".join(TRUTH)), reactants=["A", "B"], observed=["A", "B", "C"], seed=13)
    observed = list(data.species)
    initial = [s for s, v in zip(observed, np.any(data.y0 > 0, axis=0)) if v]
    libraries = D.enumerate_libraries(
        observed, initial, {"A": [1, 0], "B": [0, 1], "C": [2, 1]}, hidden_species=2, required=observed
    )
    n_r = max(lib.n_reactions for lib in libraries)  # discover pads every library to the largest
    training = D.Training()
    lo, hi = training.ln_k_bounds
    context = D._make_context(libraries, data, D.Simplification(), (lo, hi), training.floor)
    library = libraries[args.library]
    w_in, w_out = library.weights(n_r)
    mask = np.arange(n_r) < library.n_reactions
    rows = lambda a: jnp.asarray(np.repeat(a[None], args.starts, axis=0))
    tr = data.train
    problems = D._Problems(
        rows(w_in), rows(w_out), rows(mask), jnp.asarray(context.y0[tr]), jnp.asarray(data.ys[tr]), jnp.asarray(context.scale)
    )
    number = lambda v: jnp.asarray(v, dtype=float)
    hyper = D._Hyper(*(number(v) for v in (3e-3, training.lr, training.lr_decay, training.grad_clip, 1000, training.delay,
                                          training.ramp, [lo, hi])))  # fmt: skip
    ln_k0 = np.where(rows(mask), np.random.default_rng(0).uniform(*training.ln_k_range, (args.starts, n_r)), lo)
    report = {
        "machine": {"cpus": os.cpu_count(), "jax": jax.__version__, "load average before": os.getloadavg()},
        "library": {"index": args.library, "reactions": library.n_reactions, "padded to": n_r, "label": library.label},
        "starts": args.starts,
        "epochs per chunk": args.epochs,
    }
    learned = {}
    for name, field in (("dense", MassAction(training.floor)), ("fixed", FixedMassAction.of(w_in, w_out, training.floor))):
        state = D._initial_state(hyper, jnp.asarray(ln_k0))
        run = lambda s: D._learn_chunk(training.integrator, field, context.ts, args.epochs, hyper, problems, s)
        t0 = time.perf_counter()
        state = jax.block_until_ready(run(state))
        first = time.perf_counter() - t0
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            state = jax.block_until_ready(run(state))
            best = min(best, time.perf_counter() - t0)
        learned[name] = np.asarray(state.ln_k)
        report[name] = {
            "first call s": first,
            "steady s per chunk": best,
            "ms per start-epoch": 1e3 * best / args.epochs / args.starts,
        }
        print(f"{name}: first call {first:.1f} s, then {best:.3f} s per {args.epochs} epochs", flush=True)
    report["speed-up"] = report["dense"]["steady s per chunk"] / report["fixed"]["steady s per chunk"]
    report["largest |ln k difference|"] = float(np.max(np.abs(learned["dense"] - learned["fixed"])))
    report["machine"]["load average after"] = os.getloadavg()
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"speed_up={report['speed-up']:.2f}")


if __name__ == "__main__":
    main()
