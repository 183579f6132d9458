"""Training speed of `crnn.fit` on the classic case (30 experiments, 100 times, float64).

Measures, on this machine:
- epochs per second (one epoch = one full-batch Adam step) for 1 and for 32
  random starts trained together with vmap, and the compile time;
- the same with the adaptive diffrax integrator (Tsit5), for comparison, with
  its accepted and rejected solver steps;
- where the time of one epoch goes (forward solve vs gradient, dispatch);
- the wall time of the default fit that recovers the mechanism;
- with `--torch`, the PyTorch + torchdiffeq baseline run side by side
  (bench/torch_baseline.py; needs `pip install -e ".[bench]"`).

The last line printed is `epochs_per_s=<number>` for one start.
Run: python bench/train_speed.py [--torch] [--quick]
"""

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import crnn
from crnn.loss import data_loss
from crnn.model import CRNN
from crnn.report import match_reactions
from crnn.simulate import SolverConfig, solve
from crnn.train import make_predictor


def timed_fit(ds, **kw):
    r = crnn.fit(ds, 4, progress=False, **kw)
    return r, r.timing


def per_call(fn, *args, repeats=50):
    jax.block_until_ready(fn(*args))
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / repeats


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--torch", action="store_true", help="also run the PyTorch baseline side by side")
    parser.add_argument("--quick", action="store_true", help="fewer epochs (smoke test)")
    args = parser.parse_args()
    epochs = 300 if args.quick else 2000
    truth = crnn.Mechanism.parse("2A -> B ; 0.1\nA -> C ; 0.2\nC -> D ; 0.13\nB + D -> E ; 0.3")
    ds = crnn.make_dataset(truth, reactants=["A", "B"], seed=0)
    report = {"machine": {"cpus": os.cpu_count(), "jax": jax.__version__, "device": str(jax.devices()[0])}}

    _, t1 = timed_fit(ds, epochs=epochs, n_starts=1)
    _, t32 = timed_fit(ds, epochs=max(epochs // 4, 200), n_starts=32)
    report["rk4"] = {
        "epochs_per_s_1_start": t1["epochs_per_s"],
        "epochs_per_s_32_starts": t32["epochs_per_s"],
        "cost_32_over_1": t1["epochs_per_s"] / t32["epochs_per_s"],
        "compile_s_1_start": t1["compile_s"],
        "compile_s_32_starts": t32["compile_s"],
    }
    _, td = timed_fit(ds, epochs=max(epochs // 10, 100), n_starts=1, integrator="diffrax")
    report["diffrax_tsit5"] = {"epochs_per_s_1_start": td["epochs_per_s"], "compile_s": td["compile_s"]}

    # Where the time goes: forward solve and gradient of the training loss, one start.
    tr = ds.train
    y0, ys, scale = jnp.asarray(ds.y0[tr]), jnp.asarray(ds.ys[tr]), jnp.asarray(ds.scale())
    params = CRNN.init(jax.random.PRNGKey(0), 5, 4, ln_k_range=(-8.0, -6.0))
    predict = make_predictor(ds.ts, 5, 0, "rk4", 1, 1e-5, None)
    loss = lambda p: data_loss(predict(p, y0)[0], ys, scale)
    fwd, grad = jax.jit(loss), jax.jit(jax.grad(loss))
    report["profile_1_start"] = {
        "forward_ms": 1e3 * per_call(fwd, params),
        "gradient_ms": 1e3 * per_call(grad, params),
        "rhs_evaluations_per_epoch": int(tr.sum()) * (len(ds.ts) - 1) * 4,
        "epoch_ms": 1e3 / t1["epochs_per_s"],
    }
    # Adaptive solver work at the true parameters and at a random start.
    cfg = SolverConfig(solver="tsit5", rtol=1e-6, atol=1e-9, floor=1e-5)
    steps = {}
    for name, p in [("truth", CRNN.from_mechanism(truth)), ("random_start", params)]:
        _, _, acc, rej = jax.vmap(solve, in_axes=(None, 0, None, None))(p.weights(), y0, jnp.asarray(ds.ts), cfg)
        steps[name] = {"accepted_per_experiment": float(np.mean(acc)), "rejected_per_experiment": float(np.mean(rej))}
    report["diffrax_tsit5"]["steps"] = steps

    if not args.quick:
        r, t = timed_fit(ds, n_starts=1)
        learned = r.mechanism(0.01)
        m = match_reactions(truth, learned)
        report["recovery_fit"] = {
            "epochs": r.config["epochs"],
            "train_s_after_compile": t["train_s"],
            "total_s": t["total_s"],
            "recovered": crnn.report.recovered(truth, learned),
            "max_rate_error": max(x.rate_error for x in m),
            "max_coefficient_error": max(x.coefficient_error for x in m),
            "learned": str(learned).splitlines(),
        }

    if args.torch:
        cmd = [
            sys.executable,
            os.path.join(os.path.dirname(__file__), "torch_baseline.py"),
            "--epochs",
            "100" if args.quick else "1500",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        report["torch"] = json.loads(out)
        report["speedup_vs_torch_1_start"] = t1["epochs_per_s"] / report["torch"]["epochs_per_s"]

    print(json.dumps(report, indent=2, default=float))
    print(f"epochs_per_s={t1['epochs_per_s']:.1f}")


if __name__ == "__main__":
    main()
