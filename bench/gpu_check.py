"""Training speed as the number of random starts grows, on whatever devices JAX sees.

For the classic case (5 species, 4 reactions; default integrator) and the case-3 set-up (3A -> B,
3 reactions, one hidden species; the Rosenbrock integrator), reports epochs per second, start-epochs
per second and the cost of one start for each number of starts, with the devices the starts were
spread over (`fit(shard_starts=...)`). With `--max-starts`, doubles the number of starts until a fit
no longer fits in memory and reports the largest that did.

Run on a GPU when one is lent: `python bench/gpu_check.py --starts 1 32 256 1024 --max-starts`;
on the CPU (the closing note's figures): `python bench/gpu_check.py --starts 1 8 32 128`.
Prints one JSON line per measurement and a summary at the end.
"""

import argparse
import json
import time

import jax

import crnn
from crnn import load_dataset


def measure(ds, n_reactions, n_starts, epochs, **kw) -> dict:
    t0 = time.perf_counter()
    r = crnn.fit(ds, n_reactions, epochs=epochs, n_starts=n_starts, progress=False, eval_every=max(epochs // 4, 1), **kw)
    eps = r.timing["epochs_per_s"]
    return {
        "n_starts": n_starts,
        "devices": r.config["devices"],
        "epochs_per_s": eps,
        "start_epochs_per_s": eps * n_starts,
        "ms_per_start_epoch": 1e3 / (eps * n_starts),
        "compile_s": r.timing["compile_s"],
        "wall_s": time.perf_counter() - t0,
    }


def largest_fitting(ds, n_reactions, epochs, start, limit, **kw) -> int:
    n, best = start, 0
    while n <= limit:
        try:
            measure(ds, n_reactions, n, epochs, **kw)
        except Exception as err:  # XLA raises RESOURCE_EXHAUSTED (an XlaRuntimeError) when out of memory
            if "RESOURCE_EXHAUSTED" in str(err) or "out of memory" in str(err).lower():
                break
            raise
        best, n = n, n * 2
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--epochs", type=int, default=400, help="epochs per measurement (the first quarter compiles)")
    parser.add_argument("--max-starts", action="store_true", help="also find the largest number of starts that fits")
    parser.add_argument("--limit", type=int, default=1 << 20, help="stop the doubling here")
    args = parser.parse_args()
    out = {"jax": jax.__version__, "backend": jax.default_backend(), "devices": [str(d) for d in jax.local_devices()]}
    print(json.dumps(out), flush=True)
    classic = crnn.make_dataset(
        crnn.Mechanism.parse("2A -> B ; 0.1\nA -> C ; 0.2\nC -> D ; 0.13\nB + D -> E ; 0.3"), reactants=["A", "B"], seed=0
    )
    setups = {"classic": (classic, 4, {}), "case3_hidden": (load_dataset("third_order_3A"), 3, {"extra_species": 1})}
    for name, (ds, n_reactions, kw) in setups.items():
        out[name] = []
        for n_starts in args.starts:
            row = measure(ds, n_reactions, n_starts, args.epochs, **kw)
            out[name].append(row)
            print(json.dumps({name: row}), flush=True)
        if args.max_starts:
            out[f"{name}_largest_n_starts"] = largest_fitting(ds, n_reactions, 20, max(args.starts), args.limit, **kw)
            print(json.dumps({f"{name}_largest_n_starts": out[f"{name}_largest_n_starts"]}), flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
