"""Coverage study: bias and 95% interval coverage of the spending estimators over simulated seeds.

Each seed simulates a fresh operator (default 4,000 customers, two years), builds the default
cohort (reached vs unreached, both indexed at opening), matches with the design defaults, and
estimates the 84-day effect on theoretical loss.  The truth is the simulator's realised effect
over the same window (``truth.json``: ``realised_att_theoretical_loss.post_84d``).

    python benchmarks/coverage_spending.py --seeds 40 --customers 4000
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from carecall_eval.cohorts import StudyDesign, build_cohort
from carecall_eval.contract import load
from carecall_eval.outcomes.spending import spending_effect
from carecall_eval.simulate import simulate

METRICS = {"naive": "spending.naive_change", "matched (primary)": "spending.matched_change",
           "post-only ratio": "spending.post_only_change", "diff-in-diff": "spending.did_change"}


def run(seeds: int, customers: int, first_seed: int = 1000, window: int = 84, index: str | None = None,
        placebo: bool = False) -> pd.DataFrame:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(seeds):
            seed = first_seed + k
            t0 = time.perf_counter()
            truth = simulate(Path(tmp) / "d", customers=customers, seed=seed)
            true = truth["realised"]["realised_att_theoretical_loss"][f"post_{window}d"]
            ds = load(Path(tmp) / "d")
            design = StudyDesign(index=index)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cohort = build_cohort(ds, design)
                res = spending_effect(ds, cohort, window=window, windows=(window,), placebo=placebo,
                                      subgroups=False, event_weeks=None)
            s = res.summary[res.summary["window"] == window]
            for label, metric in METRICS.items():
                r = s[s["metric"] == metric].iloc[0]
                rows.append({"seed": seed, "estimator": label, "truth": true, "estimate": r["estimate"],
                             "ci_low": r["ci_low"], "ci_high": r["ci_high"]})
            if placebo:
                r = s[s["metric"] == "spending.placebo_change"].iloc[0]
                rows.append({"seed": seed, "estimator": "placebo (truth 0)", "truth": 0.0, "estimate": r["estimate"],
                             "ci_low": r["ci_low"], "ci_high": r["ci_high"]})
            print(f"  seed {seed}: truth {true:+.3f}, matched {s[s['metric'] == METRICS['matched (primary)']]['estimate'].iloc[0]:+.3f} "
                  f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def report(df: pd.DataFrame) -> pd.DataFrame:
    df = df.assign(err=df["estimate"] - df["truth"],
                   covered=(df["ci_low"] <= df["truth"]) & (df["truth"] <= df["ci_high"]))
    out = df.groupby("estimator", sort=False).agg(
        seeds=("seed", "size"), mean_truth=("truth", "mean"), mean_estimate=("estimate", "mean"),
        bias=("err", "mean"), rmse=("err", lambda e: float(np.sqrt(np.mean(e ** 2)))),
        coverage_95=("covered", "mean"))
    out["mc_se_coverage"] = np.sqrt(out["coverage_95"] * (1 - out["coverage_95"]) / out["seeds"])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--customers", type=int, default=4000)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--index", choices=["opened", "answered"], default=None,
                    help="index rule (default: the design default, opening)")
    ap.add_argument("--placebo", action="store_true", help="also run the placebo analysis")
    ap.add_argument("--out", help="write per-seed rows to this CSV")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    df = run(a.seeds, a.customers, a.first_seed, index=a.index, placebo=a.placebo)
    if a.out:
        df.to_csv(a.out, index=False)
    pd.set_option("display.width", 200)
    print(f"\nSpending estimators, 84-day theoretical loss, {a.seeds} seeds x {a.customers:,} customers "
          f"(index: {a.index or 'opened'}), {time.perf_counter() - t0:.0f} s")
    print(report(df).round(4).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
