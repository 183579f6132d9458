"""Wall time of `crnn.discover` on the positive control (`two_step_hidden_Z`, 32 random starts, defaults).

The control is 2A <=> Z (k1 = 2, k-1 = 10), Z + A -> B (k2 = 0.5) with Z unobserved; the learner is given
the element counts of the observed species (A = 1 unit, B = 3) and enumerates the hidden compositions
itself. Prints the machine's load (what else was running), the time of each stage, how many starts
recovered the truth (every rate within 5 %), and as its last line `seconds=<number>` (the whole call,
compilation included).

Run: python bench/discover_speed.py [--cold] [--starts N]
(--cold: without the persistent compilation cache in .cache/jax, i.e. as a fresh checkout compiles.)
"""

import argparse
import json
import os
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true", help="compile everything (no persistent compilation cache)")
    parser.add_argument("--starts", type=int, default=32)
    args = parser.parse_args()
    if args.cold:
        os.environ["CRNN_JAX_CACHE"] = "0"  # read when crnn is imported

    import jax

    import crnn
    from crnn.report import recovered

    data = crnn.load_dataset("two_step_hidden_Z")
    truth = crnn.Mechanism.parse(data.metadata["mechanism"])
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    result = crnn.discover(data, composition={"A": [1], "B": [3]}, n_starts=args.starts, progress=False)
    seconds = time.perf_counter() - t0
    found = sum(recovered(truth, result.mechanism(s)) for s in range(result.n_starts))
    report = {
        "machine": {"cpus": os.cpu_count(), "jax": jax.__version__, "device": str(jax.devices()[0])},
        "load average before (1, 5, 15 min)": load_before,
        "load average after": os.getloadavg(),
        "persistent compilation cache": not args.cold,
        "n_starts": result.n_starts,
        "recovered (rates within 5 %)": found,
        "timing": {k: round(float(v), 2) for k, v in result.timing.items()},
        "best": result.ranked.iloc[0]["mechanism"],
    }
    print(json.dumps(report, indent=2, default=str), file=sys.stderr)
    print(f"seconds={seconds:.1f}")


if __name__ == "__main__":
    main()
