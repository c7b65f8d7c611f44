"""Scaling benchmark: how the stages that fit grow from 100k to 1M to 10M customers.

    python benchmarks/bench_scale.py                               # 100k, 1M and 10M customers
    python benchmarks/bench_scale.py --customers 100000 1000000    # some sizes
    python benchmarks/bench_scale.py --memory-limit 8GB            # DuckDB's limit (default: the 10M budget)

Issue 18 asks for 10M customers (about 1.2 billion activity rows) through the whole pipeline within 8 GB.
The whole report does not fit yet: the cohort's shared pass returns one row per key, segment, 63-day block
(and product, in the share windows), about 11.5M rows at 1M customers, and at 10M its Arrow result alone
would be larger than the budget before any estimator runs (the README's performance section).  So this
benchmark takes each size as far as the pipeline fits and says where it stops:

1. the simulator, in chunks (kept in ``benchmarks/out/e2e/`` and reused, as by ``bench_e2e.py``; its time is
   recorded when the data are simulated);
2. a bare DuckDB ``GROUP BY customer_id`` over activity (the floor; timed after one read of the files);
3. validation (``validate_dataset``), at the DuckDB memory limit given: above a quarter of it the uniqueness
   bitmaps are built in several passes;
4. the shared pass's query, run in DuckDB to its end but counted there instead of fetched (the number of
   groups it would hand to Python, and their size in Arrow from the 1M ratio of bytes to rows).

Each step runs in a fresh process, whose peak resident memory is printed beside its time.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: Arrow bytes per group of the shared pass's result (measured at 1M customers: 848 MB for 11.55M groups).
ARROW_BYTES_PER_GROUP = 77.0
STEPS = ("bare", "validate", "shared_pass")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _bare(data: Path, limit: str) -> dict:
    import duckdb

    src = f"read_parquet('{data / 'activity.parquet'}')"
    con = duckdb.connect(config={"memory_limit": limit})
    con.execute("SET enable_progress_bar = false")
    con.sql(f"SELECT count(*), sum(wagered) FROM {src}").fetchall()        # the files read once
    t = time.perf_counter()
    # every aggregate is read by the outer query (an unread one is dropped by the planner: no longer a scan)
    n = con.sql(f"SELECT count(*), sum(w), sum(l), sum(k) FROM (SELECT customer_id, sum(wagered) AS w, "
                f"sum(won) AS l, count(*) AS k FROM {src} GROUP BY customer_id)").fetchall()[0][0]
    return {"seconds": time.perf_counter() - t, "customers_with_play": int(n)}


def _validate(data: Path, limit: str) -> dict:
    os.environ["CARECALL_MEMORY_LIMIT"] = limit
    from carecall_eval.contract import load
    from carecall_eval.contract.validation import validate_dataset

    ds = load(data, validate=False)
    t = time.perf_counter()
    rep = validate_dataset(ds)
    return {"seconds": time.perf_counter() - t, "problems": len(rep.problems)}


class _Counted(Exception):
    pass


def _shared_pass(data: Path, limit: str) -> dict:
    """The report's shared pass over activity (every case at its opening day, every window), counted in DuckDB."""
    os.environ["CARECALL_MEMORY_LIMIT"] = limit
    os.environ["CARECALL_CACHE"] = "0"
    from carecall_eval.calendar import last_complete_quarter
    from carecall_eval.cohorts import build_cohort
    from carecall_eval.cohorts import windows as W
    from carecall_eval.cohorts.design import StudyDesign
    from carecall_eval.contract import load
    from carecall_eval.evaluate import one_pass
    from carecall_eval.report.context import effect_cohort_period

    ds = load(data, validate=False)
    q = last_complete_quarter(ds.data_end)
    start, end = effect_cohort_period(q, ds.data_end, window=84, pool_quarters=4)
    design = StudyDesign().replace(study_start=start, study_end=end)
    got: dict = {}
    fetch = W._fetch_arrow

    def count_instead(expr, table="activity"):
        if (W._CALLS[-1][0] if W._CALLS else "") == "shared_aggregates" and table == "activity":
            sql = str(expr.compile())
            t = time.perf_counter()
            got["groups"] = int(ds.con.sql(f"SELECT count(*) FROM ({sql})").fetchall()[0][0])
            got["seconds"] = time.perf_counter() - t
            got["keys"] = W._CALLS[-1][1]
            raise _Counted
        return fetch(expr, table)

    W._fetch_arrow = count_instead
    try:
        with one_pass(ds, design, window=84, placebo=True):
            build_cohort(ds, design)
    except _Counted:
        pass
    got["arrow_gb"] = got.get("groups", 0) * ARROW_BYTES_PER_GROUP / 2**30
    return got


def _child(step: str, data: Path, limit: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    try:
        t = time.perf_counter()
        rc = subprocess.call([sys.executable, __file__, "--step", step, "--data", str(data), "--json", out,
                              "--memory-limit", limit])
        res = json.loads(Path(out).read_text()) if rc == 0 and Path(out).stat().st_size else {"failed": rc}
        res["wall"] = time.perf_counter() - t
        return res
    finally:
        os.unlink(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--memory-limit", default="8GB")
    ap.add_argument("--reuse-data", action="store_true")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.step:
        res = {"bare": _bare, "validate": _validate, "shared_pass": _shared_pass}[a.step](Path(a.data), a.memory_limit)
        res["peak_mb"] = _peak_mb()
        Path(a.json).write_text(json.dumps(res))
        return 0
    from bench_e2e import ensure_data

    rows = {}
    for n in sorted(a.customers):
        data, sim = ensure_data(n, a.seed, a.reuse_data)
        import pyarrow.parquet as pq

        act = pq.ParquetFile(data / "activity.parquet").metadata.num_rows
        size = sum(f.stat().st_size for f in data.glob("*.parquet")) / 2**30
        print(f"\n== {n:,} customers: {act:,} activity rows, {size:.1f} GB of Parquet; simulated in "
              f"{sim['seconds']:,.0f} s ({'this run' if sim['measured_now'] else 'recorded ' + sim.get('at', '?')})",
              flush=True)
        r = {"simulate": sim.get("seconds"), "rows": act}
        for step in STEPS:
            got = _child(step, data, a.memory_limit)
            r[step] = got
            extra = ""
            if step == "shared_pass" and "groups" in got:
                extra = (f"; {got['keys']:,} keys -> {got['groups']:,} groups, about {got['arrow_gb']:.1f} GB "
                         "as Arrow in Python")
            if step == "validate" and "problems" in got:
                extra = f"; {got['problems']} problems"
            state = f"FAILED (exit {got['failed']})" if "failed" in got else f"{got['seconds']:8.1f} s"
            print(f"  {step:<12} {state}   peak {got.get('peak_mb', float('nan')):8,.0f} MB{extra}", flush=True)
        rows[n] = r
    sizes = sorted(rows)
    print("\ngrowth (seconds; x = over the previous size):")
    print(f"  {'stage':<12}" + "".join(f"{s:>22,}" for s in sizes))
    for step in ("simulate", *STEPS):
        cells, prev = [], None
        for s in sizes:
            v = rows[s][step] if step == "simulate" else rows[s][step].get("seconds")
            cells.append("n/a" if v is None else f"{v:,.1f}" + (f" ({v / prev:.1f}x)" if prev else ""))
            prev = v
        print(f"  {step:<12}" + "".join(f"{c:>22}" for c in cells))
    if sizes[-1] >= 10_000_000:
        print(f"  the cohort, the estimators and the report: not run at {sizes[-1]:,} (the shared pass's result "
              "above is more than the 8 GB budget)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
