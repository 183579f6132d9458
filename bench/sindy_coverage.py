"""Coverage of SINDy's bootstrap intervals (`crnn.sindy.coefficient_intervals`) on simulated datasets.

The truth 3A -> B (k = 0.1: dA/dt = -0.3 A^3, dB/dt = 0.1 A^3, both terms in the degree-3 polynomial library) at
`--noise` multiplicative noise, `--n` datasets (data seeds 2000, 2001, ...; the study's protocol otherwise), SINDy as
the SINDy chapter fits it (smoothed finite differences for noisy data, plain ones for noise-free, STLSQ at
`--threshold`), then `--n-boot` resamples of the training experiments: per dataset, whether each true coefficient's
95 % interval contains it, and whether the model keeps exactly the true terms. Prints the fraction covered with its
95 % Wilson interval (a 95 % interval should cover 0.90 to 0.98), the median interval and estimate relative to the
truth, and the cost per dataset. Writes the per-dataset rows to `--out` (CSV) when given.

Run: python bench/sindy_coverage.py [--n 100] [--noise 0.05] [--n-boot 200] [--threshold 0.01] [--out FILE]
"""

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import pysindy as ps

import crnn
from crnn.report import wilson_interval
from crnn.sindy import coefficient_intervals


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100, help="simulated datasets")
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples per dataset")
    parser.add_argument("--threshold", type=float, default=0.01, help="STLSQ threshold")
    parser.add_argument("--out", default=None, help="CSV of the per-dataset rows")
    args = parser.parse_args()
    truth = crnn.Mechanism.parse("3A -> B ; 0.1")
    rows = []
    for i in range(args.n):
        data = crnn.make_dataset(truth, noise=args.noise, seed=2000 + i)
        t0 = time.perf_counter()
        model = ps.SINDy(
            feature_library=ps.PolynomialLibrary(degree=3),
            optimizer=ps.STLSQ(threshold=args.threshold),
            differentiation_method=ps.SmoothedFiniteDifference() if args.noise > 0 else ps.FiniteDifference(),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit([data.ys[j] for j in np.flatnonzero(data.train)], t=data.ts, feature_names=list(data.species))
        names = model.feature_library.get_feature_names(list(data.species))
        true = np.zeros_like(model.coefficients())
        true[0, names.index("A^3")], true[1, names.index("A^3")] = -0.3, 0.1
        table = coefficient_intervals(model, data, n_boot=args.n_boot, seed=i, truth=true).set_index(["equation", "term"])
        cost = time.perf_counter() - t0
        exact = bool(np.array_equal(model.coefficients() != 0, true != 0))
        for eq in ("dA/dt", "dB/dt"):
            r = table.loc[(eq, "A^3")]
            rows.append({"dataset": i, "coefficient": f"{eq}: A^3", "true": r["true"], "estimate": r["coefficient"],
                         "low": r["low"], "high": r["high"], "covered": bool(r["contains the truth"]),
                         "only the true terms": exact, "seconds": cost})  # fmt: skip
        if args.out:
            pd.DataFrame(rows).to_csv(args.out, index=False)
    df = pd.DataFrame(rows)
    setting = f"degree 3, threshold {args.threshold}, {args.n_boot} resamples"
    print(f"{args.n} datasets of 3A -> B at {args.noise:.0%} noise, {setting}")
    for name, g in df.groupby("coefficient"):
        k = int(g["covered"].sum())
        lo, hi = wilson_interval(k, len(g))
        rel = lambda c: float(np.median(g[c] / g["true"] - 1))
        ends = sorted([rel("low"), rel("high")])  # a negative truth turns the ends around
        print(f"  {name}: covered {k}/{len(g)} = {k / len(g):.2f} (95 % Wilson {lo:.2f}-{hi:.2f}); median estimate "
              f"{rel('estimate'):+.1%}, median ends {ends[0]:+.1%} and {ends[1]:+.1%} from the truth")  # fmt: skip
    exact = df.groupby("dataset")["only the true terms"].first()
    print(f"  models with exactly the true terms: {int(exact.sum())}/{len(exact)}")
    print(f"  cost per dataset (fit + intervals): median {df.groupby('dataset')['seconds'].first().median():.2f} s")


if __name__ == "__main__":
    main()
