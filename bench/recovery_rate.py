"""How often does `crnn.fit` with default arguments recover the classic mechanism?

For each of `--seeds` data seeds: the classic mechanism's data by `crnn.make_dataset` with its
defaults (30 experiments, only A starts non-zero, noise-free), then `crnn.fit(data, 4)` with every
other argument at its default. Recovered means every true reaction matched by a learned one with
its rate within 5 % and its coefficients within 0.1 (`crnn.report.recovered`).

Prints one JSON line per seed, then a summary line with the fraction (and its 95 % Wilson interval)
and the wall time. Run: python bench/recovery_rate.py [--seeds 10]
"""

import argparse
import json
import time

import crnn
from crnn.report import match_reactions, recovered, wilson_interval

CLASSIC = "2A -> B ; 0.1\nA -> C ; 0.2\nC -> D ; 0.13\nB + D -> E ; 0.3"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=None, help="override the default epochs (smoke tests)")
    args = parser.parse_args()
    truth = crnn.Mechanism.parse(CLASSIC)
    t_all = time.perf_counter()
    hits = []
    for seed in range(args.seeds):
        data = crnn.make_dataset(truth, seed=seed)
        t0 = time.perf_counter()
        result = crnn.fit(data, 4, progress=False, **({} if args.epochs is None else {"epochs": args.epochs}))
        learned = result.mechanism(0.01)
        matches = match_reactions(truth, learned)
        hit = recovered(truth, learned)
        hits.append(hit)
        starts = sum(recovered(truth, result.mechanism(0.01, start=s)) for s in range(result.n_starts))
        print(json.dumps({
            "data_seed": seed, "recovered": hit, "starts_recovering": starts, "n_starts": result.n_starts,
            "max_rate_error": max(m.rate_error for m in matches),
            "max_coefficient_error": max(m.coefficient_error for m in matches),
            "wall_s": time.perf_counter() - t0,
        }), flush=True)  # fmt: skip
    low, high = wilson_interval(sum(hits), len(hits))
    print(json.dumps({
        "recovered": int(sum(hits)), "data_seeds": len(hits), "fraction": sum(hits) / len(hits),
        "wilson_95": [low, high], "wall_s": time.perf_counter() - t_all,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
