"""Which estimate of the missed-call SMS effect recovers the truth?  Bias and coverage over simulated seeds.

For each seed a fresh operator is simulated (``carecall_eval.simulate``) and
:func:`carecall_eval.outcomes.reach.sms_effect` is run.  Three estimates are
compared with the simulator's realised policy effect on case-level reach of the
post-policy cases (``truth.json``: ``realised.sms_effect_on_reach``, the same
customers' reach with and without the policy, from shared random draws):

* ``reach.sms_effect``        the attempt-level difference-in-differences (primary);
* ``reach.sms_difference``    raw after - before;
* ``reach.its_level_change``  interrupted time series, level change at the policy date.

Printed: mean estimate, mean truth, bias, RMSE, and the share of seeds whose
interval covers the truth.  ``--bootstrap`` also runs the case bootstrap interval
of the primary estimate (slower).

Run::

    .venv/bin/python benchmarks/reach_bias.py --seeds 40 --customers 8000
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

ESTIMATORS = ("reach.sms_effect", "reach.sms_difference", "reach.its_level_change")


def one(seed: int, customers: int, bootstrap: bool, sms_after: int) -> list[dict]:
    from carecall_eval.contract import load
    from carecall_eval.outcomes.reach import sms_effect
    from carecall_eval.simulate import simulate

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "d"
        truth = simulate(out, customers=customers, seed=seed, sms_after_attempts=sms_after)["realised"]
        ds = load(out)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs = [("delta", sms_effect(ds, arms=(None,), sms_after_attempts=sms_after))]
            if bootstrap:
                runs.append(("bootstrap", sms_effect(ds, arms=(None,), sms_after_attempts=sms_after,
                                                     interval="bootstrap", n_boot=200, seed=seed)))
        ds.close()
    rows = []
    for label, res in runs:
        for m in ESTIMATORS if label == "delta" else ("reach.sms_effect",):
            r = res.metric(m)
            rows.append({"seed": seed, "estimator": m if label == "delta" else f"{m} (bootstrap)",
                         "estimate": r["estimate"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                         "truth": truth["sms_effect_on_reach"]})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--customers", type=int, default=8000)
    ap.add_argument("--sms-after", type=int, default=2)
    ap.add_argument("--bootstrap", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="also write the per-seed rows (CSV)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    seeds = range(a.first_seed, a.first_seed + a.seeds)
    with ProcessPoolExecutor(a.workers) as ex:
        rows = [r for rs in ex.map(one, seeds, [a.customers] * a.seeds, [a.bootstrap] * a.seeds,
                                   [a.sms_after] * a.seeds) for r in rs]
    df = pd.DataFrame(rows)
    df["error"] = df["estimate"] - df["truth"]
    df["covers"] = (df["ci_low"] <= df["truth"]) & (df["truth"] <= df["ci_high"])
    df["width"] = df["ci_high"] - df["ci_low"]
    summ = df.groupby("estimator", sort=False).agg(
        seeds=("seed", "size"), mean_estimate=("estimate", "mean"), mean_truth=("truth", "mean"),
        bias=("error", "mean"), rmse=("error", lambda e: float(np.sqrt(np.mean(e ** 2)))),
        coverage=("covers", "mean"), mean_ci_width=("width", "mean"))
    pd.set_option("display.width", 200)
    print(f"SMS effect on case-level reach: {a.seeds} seeds x {a.customers:,} customers, "
          f"sms_after_attempts={a.sms_after} ({time.perf_counter() - t0:,.0f} s)")
    print(summ.round(4).to_string())
    if a.out:
        df.to_csv(a.out, index=False)
    json.dump({"summary": summ.reset_index().to_dict(orient="records")}, sys.stdout, indent=None, default=float)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
