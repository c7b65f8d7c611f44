"""Benchmark of the plasmode self-check (issue 14): 100 replicates on a simulated operator, and its verdicts.

    python benchmarks/bench_selfcheck.py                          # 100k customers, 100 replicates
    python benchmarks/bench_selfcheck.py --customers 1000000      # the issue's target size
    python benchmarks/bench_selfcheck.py --data DIR               # any data directory

The simulated data are the end-to-end benchmark's (``benchmarks/out/e2e/``, simulated once per size and
seed).  The cohort is built once (one pass over activity); the self-check then draws, matches and fits
``--replicates`` times in memory, and the SMS check refits the answer model on pseudo-policy dates.  Printed:
wall and CPU seconds per step, seconds per replicate, the projection to 1M customers (replicate cost grows
with the number of never-reached customers: linear in the matched rows' PPML and matching), the operating
characteristics and the verdicts, against the simulator's truth where there is one.

Target (issue 14): 100 replicates at 1M customers in under 10 minutes on this machine (2 cores).  CPU
seconds are reported beside wall seconds because the machine is shared: wall time includes other
processes' load, CPU time is what the check costs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _timed(label: str, fn, log: dict):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    log[label] = {"wall_s": round(time.perf_counter() - w, 1), "cpu_s": round(time.process_time() - c, 1)}
    print(f"  {label}: {log[label]['wall_s']:.1f} s wall, {log[label]['cpu_s']:.1f} s CPU", flush=True)
    return out


def run(data: Path, replicates: int, seed: int, jobs: int, sms_replicates: int | None) -> dict:
    import carecall_eval as ce

    log: dict = {"data": str(data), "replicates": replicates, "jobs": jobs}
    ds = ce.load(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ce.CarecallWarning)
        cohort = _timed("cohort (one pass over activity)", lambda: ce.build_cohort(ds), log)
        sample = _timed("matching (real sample)", lambda: cohort.sample(), log)
        res = _timed(f"self-check, {replicates} replicates",
                     lambda: ce.selfcheck(ds, sample, replicates=replicates, seed=seed, n_jobs=jobs,
                                          sms_replicates=sms_replicates, progress=True), log)
        spend_only = res.details.get("seconds")
        sens = _timed("sensitivity (Rosenbaum, tipping points)", lambda: ce.sensitivity_analysis(ds, sample), log)
    ds.close()
    n_pool = res.settings["n_pool"]
    log.update({"customers_in_cohort": int(len(cohort.table)), "never_reached": int(n_pool),
                "sms_replicates": res.settings["sms_replicates"], "selfcheck_seconds_internal": spend_only,
                "verdicts": res.settings["verdicts"]})
    op = res.get_plot_data("operating")
    cols = ["estimator", "injected", "replicates", "mean_truth", "mean_estimate", "bias", "bias_se", "rmse",
            "coverage", "rejects", "width", "se_ratio"]
    log["operating"] = op[cols].round(4).to_dict(orient="records")
    print(op[cols].round(4).to_string(index=False))
    print(res.text)
    print(sens.text)
    truth = Path(data) / "truth.json"
    if truth.exists():
        r = json.loads(truth.read_text())["realised"]
        log["simulator"] = {"true_att_84d": r["realised_att_theoretical_loss"].get("post_84d"),
                            "naive_change_reached_84d": r.get("naive_change_reached_84d")}
    return log


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7, help="simulation seed (the e2e benchmark's)")
    ap.add_argument("--data", help="use this data directory instead of a simulation")
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--sms-replicates", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "out" / "selfcheck.json"))
    a = ap.parse_args(argv)
    if a.data:
        data = Path(a.data)
    else:
        from bench_e2e import ensure_data

        data, info = ensure_data(a.customers, a.seed)
        if info.get("measured_now") and info.get("seconds"):
            print(f"simulated {a.customers:,} customers in {info['seconds']:.0f} s")
    print(f"=== self-check on {data}", flush=True)
    log = run(data, a.replicates, 0, a.jobs, a.sms_replicates)
    key = f"self-check, {a.replicates} replicates"
    cpu = log[key]["cpu_s"]
    if a.jobs > 1:
        print("  (CPU seconds count this process only; the workers' time is in the wall seconds)")
    customers = a.customers if not a.data else None
    if customers and customers < 1_000_000:
        factor = 1_000_000 / customers
        log["projection_1M"] = {"factor": factor, "cpu_s": round(cpu * factor, 0),
                                "wall_s_at_this_load": round(log[key]["wall_s"] * factor, 0)}
        print(f"  projected to 1M customers (x{factor:g}, linear in the never-reached pool): "
              f"{cpu * factor / 60:.1f} min CPU ({log[key]['wall_s'] * factor / 60:.1f} min wall at this load)")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(log, indent=2, default=str) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
