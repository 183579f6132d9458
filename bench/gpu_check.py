"""Does the package run on an accelerator, and how fast is training there?

Prints the JAX devices, then the training speed on the classic case (1 and
32 random starts) and the default recovery fit, as JSON. Run on a machine with
a GPU, e.g. `python bench/gpu_check.py`; on a CPU-only machine it measures
the CPU.
"""

import json
import time

import jax

import crnn
from crnn.report import match_reactions, recovered


def main():
    out = {"jax": jax.__version__, "devices": [str(d) for d in jax.devices()], "backend": jax.default_backend()}
    truth = crnn.Mechanism.parse("2A -> B ; 0.1\nA -> C ; 0.2\nC -> D ; 0.13\nB + D -> E ; 0.3")
    t0 = time.perf_counter()
    ds = crnn.make_dataset(truth, reactants=["A", "B"], seed=0)
    out["make_dataset_s"] = time.perf_counter() - t0
    for n_starts in (1, 32, 256):
        r = crnn.fit(ds, 4, epochs=1000, n_starts=n_starts, progress=False)
        out[f"epochs_per_s_{n_starts}_starts"] = r.timing["epochs_per_s"]
        out[f"compile_s_{n_starts}_starts"] = r.timing["compile_s"]
    r = crnn.fit(ds, 4, progress=False)
    learned = r.mechanism(0.01)
    out["recovery"] = {
        "train_s_after_compile": r.timing["train_s"],
        "recovered": recovered(truth, learned),
        "max_rate_error": max(m.rate_error for m in match_reactions(truth, learned)),
        "learned": str(learned).splitlines(),
    }
    print(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
