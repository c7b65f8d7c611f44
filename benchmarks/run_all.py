"""`make bench`: every benchmark and slow study, each in its own process (so peak memory is its own).

Prints sizes, times and peak memory.  Not run by `make test`.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

STEPS = [
    ("simulator, 100k customers", ["bench_simulate.py", "--customers", "100000"]),
    # simulates 100k and 1M customers once (kept in benchmarks/out/e2e/, about 10 min at 1M), then times the
    # whole report pipeline at both sizes against a bare DuckDB GROUP BY
    ("end to end: 100k and 1M customers, load to report", ["bench_e2e.py"]),
    # issue 18's 10M customers: simulated once (about 13 GB of Parquet, kept in benchmarks/out/e2e/), then the
    # stages that fit at each size (bare scan, validation, the shared pass counted in DuckDB), with their growth
    ("scaling: 100k, 1M and 10M customers, as far as the pipeline fits", ["bench_scale.py"]),
    ("matching (20k x 400k and 200k x 4M)", ["bench_matching.py"]),
    ("spending estimators: bias and coverage over 40 seeds", ["coverage_spending.py", "--seeds", "40"]),
    ("reach after the SMS: bias and coverage", ["reach_bias.py"]),
    # issue 15: matched-set randomized studies of about 2,150 customers (20k simulated, the top 15% randomized)
    ("randomized studies: ITT and effect of being reached, bias and coverage over 40 seeds",
     ["coverage_trial.py", "--seeds", "40", "--customers", "20000", "--share", "0.15"]),
    # issue 14: 100 plasmode replicates on the e2e benchmark's 100k-customer operator, projected to 1M
    ("plasmode self-check: 100 replicates at 100k customers", ["bench_selfcheck.py", "--customers", "100000"]),
    # simulated cohorts cached in benchmarks/out/precision/ (about 30 s per seed the first time)
    ("spending precision (issue 17): primary vs candidates, 40 seeds x 40k customers",
     ["precision_study.py", "--seeds", "40", "--variants", "default"]),
    ("spending precision (issue 17): effect size, null, stronger selection, 20 seeds each",
     ["precision_study.py", "--seeds", "20", "--variants", "effect", "null", "selection"]),
]


def main() -> int:
    failed = 0
    for title, cmd in STEPS:
        script = HERE / cmd[0]
        if not script.exists():
            print(f"\n=== {title}: {script.name} missing, skipped")
            continue
        print(f"\n=== {title}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script), *cmd[1:]])
        print(f"--- {title}: exit {rc}, {time.perf_counter() - t0:,.0f} s wall", flush=True)
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
