"""Where the quick study's time goes: every run of `notebooks/runs.yml` in quick mode (what `make test` executes),
with JAX's compilation log on, and per run its wall time, the seconds XLA spent compiling and the seconds spent
tracing and lowering to MLIR (a jitted function traced inside another counts in both), then the compiled
functions that cost the most over all runs.

The quick study is the critical path of `make test`; its runs are small (a few hundred epochs, two starts), so
compilation, not arithmetic, is most of their cost on a cold cache. `--cold` compiles everything (an empty,
temporary persistent compilation cache: a fresh clone, or CI); without it the project's `.cache/jax` is used (a
second `make test` on the same machine).

Run: python bench/quick_study_profile.py [--cold] [--jobs 2] [--only NAME ...] [--keep DIR]
(`--keep DIR`: the executed quick notebooks and results stay in DIR; by default in a temporary folder, removed.)

Recorded (2026-12-07, 2 cores, 2 jobs, nothing else running; `python -m crnn.study run --quick --force --jobs 2`
with `JAX_LOG_COMPILES=1` and an empty `CRNN_JAX_CACHE`, its executed notebooks read by `profile` below): cold
17 min 48 s of wall time (the runs' own times sum to about 2 040 s), of which XLA compilation 956 s and tracing
and lowering 613 s; warm 9 min 39 s (runs sum to 1 130 s). Largest compile bills,
cold: `_run_chunk` 228 s over 19 compilations (CRNN training chunks; 15 to 31 s each on the case-5 notebooks),
`_fit_chunk` 113 s (23), `_full_trajectories` 93 s (28), `_solve_batch` 88 s (37), `_split_losses` 83 s (30),
`_fits` 81 s (19). Heaviest runs cold: nitric oxide 390 s (XLA 178 s), landscape 279 s (153 s), the two case-5 runs
about 205 s each (about 125 s each).
"""

import argparse
import collections
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

COMPILE = re.compile(r"Finished XLA compilation of (\S+) in ([0-9.e+-]+) s")
TRACE = re.compile(r"Finished (?:tracing \S+ for \w+|jaxpr to MLIR module conversion \S+) in ([0-9.e+-]+) sec")


def _texts(notebook: Path):
    """The stream outputs of an executed notebook (where the kernel's logging ends up), cell by cell."""
    for cell in json.loads(notebook.read_text()).get("cells", []):
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            yield "".join(text) if isinstance(text, list) else text


def profile(runs_dir: Path):
    """Per executed notebook: (compile seconds, trace seconds); and compile seconds and counts per function."""
    per_run, per_function = {}, collections.defaultdict(lambda: [0.0, 0])
    for notebook in sorted(runs_dir.glob("*.ipynb")):
        compile_s = trace_s = 0.0
        for text in _texts(notebook):
            for name, seconds in COMPILE.findall(text):
                compile_s += float(seconds)
                per_function[name][0] += float(seconds)
                per_function[name][1] += 1
            trace_s += sum(float(s) for s in TRACE.findall(text))
        per_run[notebook.stem] = (compile_s, trace_s)
    return per_run, per_function


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true", help="an empty persistent compilation cache (a fresh clone)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="+", default=None, help="these runs only (default: every run)")
    parser.add_argument("--keep", default=None, help="folder for the executed quick notebooks and results (kept)")
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory()
    root = Path(args.keep or scratch.name)
    if args.cold:
        os.environ["CRNN_JAX_CACHE"] = str(root / "jax-cache")  # read when crnn is imported (also by the kernels)
        (root / "jax-cache").mkdir(parents=True, exist_ok=True)
    os.environ["JAX_LOG_COMPILES"] = "1"  # inherited by the notebook kernels; their log goes to the cells' outputs
    os.environ.setdefault("CRNN_PROGRESS", "0")

    from crnn import study

    book = study.prepare_book_copy(root / "book")
    t0 = time.perf_counter()
    statuses = study.run_all(quick=True, jobs=args.jobs, only=args.only, force=True, book_dir=book,
                             results_dir=root / "results", progress=True)  # fmt: skip
    wall = time.perf_counter() - t0
    per_run, per_function = profile(book / "runs")
    print(f"\n{'run':<24} {'wall s':>8} {'XLA compile s':>14} {'tracing s':>10}")
    for s in sorted(statuses, key=lambda s: -s["wall_time_s"]):
        compile_s, trace_s = per_run.get(s["name"], (float("nan"), float("nan")))
        print(f"{s['name']:<24} {s['wall_time_s']:8.0f} {compile_s:14.0f} {trace_s:10.0f}")
    total = sum(s["wall_time_s"] for s in statuses)
    compile_total = sum(c for c, _ in per_run.values())
    trace_total = sum(t for _, t in per_run.values())
    print(f"{'sum of runs':<24} {total:8.0f} {compile_total:14.0f} {trace_total:10.0f}")
    print("\ncompiled functions, most expensive first (seconds, compilations):")
    for name, (seconds, count) in sorted(per_function.items(), key=lambda kv: -kv[1][0])[:12]:
        print(f"  {name:<32} {seconds:7.1f} {count:4d}")
    failed = [s["name"] for s in statuses if s["status"] not in ("ran", "cached")]
    print(f"\ncache={'cold' if args.cold else 'warm'} jobs={args.jobs} failed={failed or 'none'}")
    print(f"wall_s={wall:.0f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
