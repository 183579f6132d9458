"""Training speed of `crnn.fit` (float64, this machine), with the PyTorch baseline side by side.

Measures, for the default integrator of each set-up:
- the classic case (5 species, 4 reactions, no hidden species: RK4 on the data grid) and the case-3
  set-up (3A -> B, 3 reactions, one hidden species: the stiff-safe Rosenbrock);
- epochs per second for 1 and for 32 random starts, their compile times, and the throughput ratio
  (start-epochs per second with 32 starts over that with 1);
- the classic case also with the Rosenbrock integrator (what stiff safety costs there);
- the case-5 set-up (2A + B -> C, two reversible pairs, the hidden species in quasi-steady state: `QSSField`);
- the wall time of the positive-control fit (`two_step_hidden_Z`, 3 reactions, Z hidden, defaults);
- with `--torch`, the PyTorch + torchdiffeq baseline (bench/torch_baseline.py; `pip install -e ".[bench]"`).

The last line printed is `epochs_per_s=<number>` for one start on the classic case.
Run: python bench/train_speed.py [--torch] [--quick]
"""

import argparse
import json
import os
import subprocess
import sys
import time

import jax

import crnn
import crnn.report
from crnn import load_dataset
from crnn.integrate import Rosenbrock


def speed(ds, n_reactions, n_starts, epochs, **kw):
    r = crnn.fit(ds, n_reactions, epochs=epochs, n_starts=n_starts, progress=False, eval_every=max(epochs // 5, 1), **kw)
    return {"epochs_per_s": r.timing["epochs_per_s"], "compile_s": r.timing["compile_s"], "integrator": r.config["integrator"]}


def setup(ds, n_reactions, epochs, **kw):
    one = speed(ds, n_reactions, 1, epochs, **kw)
    many = speed(ds, n_reactions, 32, max(epochs // 4, 50), **kw)
    return {
        "integrator": one["integrator"],
        "epochs_per_s_1_start": one["epochs_per_s"],
        "epochs_per_s_32_starts": many["epochs_per_s"],
        "start_epochs_per_s_ratio_32_over_1": 32 * many["epochs_per_s"] / one["epochs_per_s"],
        "compile_s_1_start": one["compile_s"],
        "compile_s_32_starts": many["compile_s"],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--torch", action="store_true", help="also run the PyTorch baseline side by side")
    parser.add_argument("--quick", action="store_true", help="fewer epochs (smoke test)")
    args = parser.parse_args()
    epochs = 200 if args.quick else 2000
    report = {"machine": {"cpus": os.cpu_count(), "jax": jax.__version__, "device": str(jax.devices()[0])}}
    classic = crnn.make_dataset(
        crnn.Mechanism.parse("2A -> B ; 0.1\nA -> C ; 0.2\nC -> D ; 0.13\nB + D -> E ; 0.3"), reactants=["A", "B"], seed=0
    )
    report["classic"] = setup(classic, 4, epochs)
    print(json.dumps({"classic": report["classic"]}, default=float), flush=True)
    report["classic_rosenbrock"] = setup(classic, 4, epochs // 4, integrator=Rosenbrock())
    print(json.dumps({"classic_rosenbrock": report["classic_rosenbrock"]}, default=float), flush=True)
    report["case3_hidden"] = setup(load_dataset("third_order_3A"), 3, epochs // 4, extra_species=1)
    print(json.dumps({"case3_hidden": report["case3_hidden"]}, default=float), flush=True)
    qss = dict(extra_species=1, hidden="qss", init=crnn.RandomStarts(reversible=True))
    report["case5_qss"] = setup(load_dataset("third_order_2AB_noise5"), 2, epochs // 8, **qss)
    print(json.dumps({"case5_qss": report["case5_qss"]}, default=float), flush=True)

    control = load_dataset("two_step_hidden_Z")
    t0 = time.perf_counter()
    r = crnn.fit(control, 3, extra_species=1, progress=False, **({"epochs": 200} if args.quick else {}))
    truth = crnn.Mechanism.parse(control.metadata["mechanism"])
    found = [crnn.report.recovered(truth, r.mechanism(0.01, start=s)) for s in range(r.n_starts)]
    report["positive_control_fit"] = {
        "wall_s": time.perf_counter() - t0,
        "epochs": r.config["epochs"],
        "n_starts": r.n_starts,
        "starts_recovering_the_truth": int(sum(found)),
        "best_validation_loss": float(r.final_validation_loss.min()),
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
        report["speedup_vs_torch_1_start"] = report["classic"]["epochs_per_s_1_start"] / report["torch"]["epochs_per_s"]
        if "epochs_per_s_first_300" in report["torch"]:
            report["speedup_vs_torch_first_300_epochs"] = (
                report["classic"]["epochs_per_s_1_start"] / report["torch"]["epochs_per_s_first_300"]
            )

    print(json.dumps(report, indent=2, default=float))
    print(f"epochs_per_s={report['classic']['epochs_per_s_1_start']:.1f}")


if __name__ == "__main__":
    main()
