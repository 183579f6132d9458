"""Coverage of the rate-constant intervals (`crnn.intervals`) on simulated datasets of the positive control.

The positive control (2A <=> Z, Z + A -> B; k1 = 2, k-1 = 10, k2 = 0.5; Z hidden) at 5 % multiplicative noise,
`--n` datasets (data seeds 1000, 1001, ...; the study's protocol otherwise): for each dataset and method, the
95 % intervals on K = k1/k-1, on k2 and on each rate constant, and whether they contain the truth. Prints, per
method and quantity, the fraction covered with its 95 % Wilson interval (the target: 0.90 to 0.98), and the
method's wall time per dataset (this machine, after the first dataset's compilation). Writes the per-dataset rows
to `--out` (CSV) when given.

Run: python bench/interval_coverage.py [--n 100] [--methods profile bootstrap] [--n-boot 100] [--out FILE]

Recorded rows: `bench/results/interval_coverage_bootstrap.csv` (`--n 100 --methods bootstrap --out ...`,
2026-12-02, 2 cores shared with another job: about 16 s per dataset): covered 95/100 (k1), 95 (k-1), 93 (k2),
91 (K = k1/k-1), each within 0.90-0.98. `bench/results/interval_coverage_nuts.csv` (`--n 100 --methods nuts
--out ...`, the intervals chapter's sampler settings: 300 draws after 200 adaptation steps, 2 chains, the
sampler whitened by the Laplace covariance): only the first 20 datasets so far (2026-12-02; the run shared the
cores with a rebuild and a test suite and was stopped): covered 19/20 (K), 20/20 (k2, k1, k-1); 21 s per dataset
alone, 32 s (median) beside other jobs. The 100-dataset figure is still to be measured (about 35 minutes of one core).
"""

import argparse
import json
import time

import numpy as np
import pandas as pd

import crnn
from crnn.intervals import rate_intervals
from crnn.report import wilson_interval

TRUTH = {"K": 0.2, "k2": 0.5, "k(2A -> Z)": 2.0, "k(Z -> 2A)": 10.0, "k(A + Z -> B)": 0.5}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100, help="simulated datasets")
    parser.add_argument("--methods", nargs="+", default=["profile", "bootstrap"])
    parser.add_argument("--n-boot", type=int, default=100, help="bootstrap resamples per dataset")
    parser.add_argument("--n-samples", type=int, default=300, help="NUTS draws per chain (the intervals chapter's)")
    parser.add_argument("--n-warmup", type=int, default=200, help="NUTS adaptation steps per chain (the chapter's)")
    parser.add_argument("--chains", type=int, default=2, help="NUTS chains")
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--out", default=None, help="CSV of the per-dataset rows")
    args = parser.parse_args()
    truth = crnn.Mechanism.parse("2A -> Z ; 2\nZ -> 2A ; 10\nZ + A -> B ; 0.5", species=["A", "B", "Z"])
    combos = {"K": [1, -1, 0], "k2": [0, 0, 1]}
    rows, cost = [], {m: [] for m in args.methods}
    for i in range(args.n):
        data = crnn.make_dataset(truth, reactants=["A"], observed=["A", "B"], noise=args.noise, seed=1000 + i)
        for method in args.methods:
            t0 = time.perf_counter()
            table = rate_intervals(truth, data, method=method, combinations=combos, n_boot=args.n_boot, seed=i,
                                   n_samples=args.n_samples, n_warmup=args.n_warmup, chains=args.chains).table  # fmt: skip
            if i:  # the first dataset pays the compilations
                cost[method].append(time.perf_counter() - t0)
            for _, r in table.iterrows():
                value = TRUTH[r["quantity"]]
                rows.append({"dataset": i, "method": method, "quantity": r["quantity"], "estimate": r["estimate"],
                             "low": r["low"], "high": r["high"], "covered": bool(r["low"] < value < r["high"])})  # fmt: skip
        if (i + 1) % 10 == 0 or i + 1 == args.n:  # the coverage so far, so that a stopped run still tells
            print(f"== {i + 1} datasets", flush=True)
            report(pd.DataFrame(rows), cost, args.out)


def report(rows, cost, out):
    if out:
        rows.to_csv(out, index=False)
    summary = []
    for (method, quantity), g in rows.groupby(["method", "quantity"], sort=False):
        k, n = int(g["covered"].sum()), len(g)
        lo, hi = wilson_interval(k, n)
        summary.append({"method": method, "quantity": quantity, "covered": k, "datasets": n, "fraction": k / n,
                        "95 % interval": f"{lo:.2f}-{hi:.2f}", "in 0.90-0.98": 0.90 <= k / n <= 0.98,
                        "median relative width": float(np.median((g["high"] - g["low"]) / TRUTH[quantity]))})  # fmt: skip
    print(pd.DataFrame(summary).to_string(index=False))
    print(json.dumps({m: {"s_per_dataset_median": float(np.median(c)) if c else None} for m, c in cost.items()}), flush=True)


if __name__ == "__main__":
    main()
