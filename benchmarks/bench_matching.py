"""Benchmark of greedy nearest-neighbour propensity-score matching.

Workload (issue #3): 8 normal covariates, 1:1 matching without replacement,
caliper 0.2 SD of the propensity score, at 20,000 treated x 400,000 controls
and 200,000 x 4,000,000.  Each size runs in a fresh subprocess so the peak
resident memory (``ru_maxrss``) belongs to that size alone; it includes the
input DataFrame.  Import time (statsmodels, paid once per session) is
reported separately, not in the match time.  If R with MatchIt is installed, ``matchit()`` is timed on
the 20k x 400k data for comparison (skipped otherwise).

Run::

    python benchmarks/bench_matching.py            # both sizes, plus MatchIt if present
    python benchmarks/bench_matching.py --quick    # 20k x 400k only, no R
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

SIZES = [(20_000, 400_000), (200_000, 4_000_000)]
N_COVARIATES = 8
CALIPER = 0.2
SEED = 20260301


def make_data(n_treated: int, n_control: int, seed: int = SEED):
    """Simulated cohort: treated units' covariates shifted by 0.1-0.45 SD; rows shuffled."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = n_treated + n_control
    treat = np.zeros(n, dtype=np.int8)
    treat[rng.choice(n, n_treated, replace=False)] = 1
    shift = np.linspace(0.1, 0.45, N_COVARIATES)
    cols = {}
    for j in range(N_COVARIATES):
        x = rng.standard_normal(n)
        x[treat == 1] += shift[j]
        cols[f"x{j + 1}"] = x
    df = pd.DataFrame(cols)
    df.insert(0, "treat", treat)
    return df


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(n_treated: int, n_control: int) -> dict:
    """Time ``match()`` (and separately ``balance()``) on one size, in this process."""
    t0 = time.perf_counter()
    import statsmodels.discrete.discrete_model  # noqa: F401  (imported once per session)

    from carecall_eval.matching import match
    t_import = time.perf_counter() - t0

    df = make_data(n_treated, n_control)
    covs = [c for c in df.columns if c != "treat"]
    rss_data = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    res = match(df, "treat", covs, caliper=CALIPER)
    t_match, c_match = time.perf_counter() - t0, time.process_time() - c0
    rss_match = _rss_mb()
    t0 = time.perf_counter()
    bal = res.balance()
    t_bal = time.perf_counter() - t0
    return {
        "n_treated": n_treated, "n_control": n_control,
        "match_seconds": round(t_match, 3), "match_cpu_seconds": round(c_match, 3),
        "import_seconds": round(t_import, 3), "balance_seconds": round(t_bal, 3),
        "peak_rss_mb_after_data": round(rss_data, 1), "peak_rss_mb_after_match": round(rss_match, 1),
        "peak_rss_mb_total": round(_rss_mb(), 1),
        "treated_matched": int(res.counts.loc["matched", "treated"]),
        "max_abs_smd_after": round(float(bal.drop(index="distance")["smd_after"].abs().max()), 4),
    }


def run_matchit(n_treated: int, n_control: int) -> dict | None:
    """Time R's ``matchit()`` on the same data, or ``None`` if R/MatchIt is unavailable."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    check = subprocess.run([rscript, "-e", "quit(status = !requireNamespace('MatchIt', quietly = TRUE))"],
                           capture_output=True)
    if check.returncode != 0:
        return None
    df = make_data(n_treated, n_control)
    covs = [c for c in df.columns if c != "treat"]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.csv")
        df.to_csv(path, index=False)
        script = (
            "suppressPackageStartupMessages(library(MatchIt));"
            f"d <- read.csv('{path}');"
            f"f <- treat ~ {' + '.join(covs)};"
            f"tm <- system.time(m <- matchit(f, data = d, method = 'nearest', distance = 'glm', caliper = {CALIPER}));"
            "cat(sprintf('%.3f %.3f %d %s\\n', tm[['elapsed']], tm[['user.self']] + tm[['sys.self']], "
            "sum(m$weights[d$treat == 1] > 0), "
            "as.character(packageVersion('MatchIt'))))"
        )
        out = subprocess.run([rscript, "-e", script], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-300:]}
    secs, cpu, matched, version = out.stdout.split()
    return {"n_treated": n_treated, "n_control": n_control, "matchit_seconds": float(secs),
            "matchit_cpu_seconds": float(cpu),
            "treated_matched": int(matched), "matchit_version": version}


def _child(n_treated: int, n_control: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(n_treated), str(n_control)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark and print one line per size; returns the records."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="only 20k x 400k, no R")
    p.add_argument("--no-r", action="store_true", help="skip the MatchIt comparison")
    p.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run_one(*args.child)))
        return []
    sizes = SIZES[:1] if args.quick else SIZES
    print(f"matching benchmark: {N_COVARIATES} covariates, 1:1 nearest neighbour without replacement, "
          f"caliper {CALIPER} SD of the propensity score (logit fit included)")
    records = []
    for n1, n0 in sizes:
        r = _child(n1, n0)
        records.append(r)
        print(f"  {n1:>9,} treated x {n0:>10,} controls: match {r['match_seconds']:6.2f} s "
              f"(CPU {r['match_cpu_seconds']:.2f} s), "
              f"balance table {r['balance_seconds']:6.2f} s, peak RSS {r['peak_rss_mb_total']:8.0f} MB "
              f"(data alone {r['peak_rss_mb_after_data']:.0f} MB); {r['treated_matched']:,} treated matched, "
              f"max |SMD| after {r['max_abs_smd_after']}")
    if not (args.quick or args.no_r):
        n1, n0 = SIZES[0]
        r = run_matchit(n1, n0)
        if r is None:
            print("  MatchIt: R or MatchIt not installed; comparison skipped")
        elif "error" in r:
            print(f"  MatchIt failed: {r['error']}")
        else:
            records.append(r)
            ratio = r["matchit_seconds"] / records[0]["match_seconds"]
            cpu_ratio = r["matchit_cpu_seconds"] / records[0]["match_cpu_seconds"]
            print(f"  MatchIt {r['matchit_version']} matchit() at {n1:,} x {n0:,}: {r['matchit_seconds']:.2f} s "
                  f"(CPU {r['matchit_cpu_seconds']:.2f} s): {ratio:.0f}x slower wall, {cpu_ratio:.0f}x CPU; "
                  f"{r['treated_matched']:,} treated matched)")
    print(f"  (machine load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; wall times "
          "grow with other processes' load, CPU times much less)")
    return records


if __name__ == "__main__":
    main()
