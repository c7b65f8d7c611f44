"""End-to-end benchmark: simulate, then load + validate + cohorts + matching + every estimator + report.

    python benchmarks/bench_e2e.py                       # 100k and 1M customers (make bench)
    python benchmarks/bench_e2e.py --customers 100000    # one size

For each size the simulated operator (two years, written as Parquet in chunks)
is kept in ``benchmarks/out/e2e/`` and reused by later runs with the same size
and seed.  The pipeline runs in a fresh process per size, stage by stage,
printing each stage's wall time and its peak resident memory (the process's
high-water mark is reset before each stage through ``/proc/self/clear_refs``;
the notebook runs in a kernel, whose peak is read from the kernel process).
In the same process and on the same files, a bare DuckDB ``GROUP BY
customer_id`` over each large table is timed first, and every aggregation
query of the pipeline (``carecall_eval.cohorts.windows``) is compared with
the one over its own table.  Cached data are simulated again when the
simulator's source changes (``simulator.sha256`` in the data directory).

Targets (issue 7, on 2 cores and 24 GB): the pipeline under 5 minutes and 8 GB
at 1M customers; each aggregation within 3x of the bare GROUP BY.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "e2e"


# ----------------------------------------------------------------------------- data

def ensure_data(customers: int, seed: int) -> tuple[Path, float | None]:
    """The simulated data directory for (customers, seed), simulated when absent; (dir, seconds or None)."""
    import hashlib

    import carecall_eval.simulate as sim
    from carecall_eval.simulate import simulate

    stamp = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(Path(sim.__file__).parent.glob("*.py")))
                           ).hexdigest()
    d = OUT / f"sim_{customers}_seed{seed}"
    if (d / "truth.json").exists() and (d / "simulator.sha256").exists() \
            and (d / "simulator.sha256").read_text().strip() == stamp:
        return d, None
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"simulating {customers:,} customers (seed {seed}) into {d} ...", flush=True)
    t = time.perf_counter()
    simulate(d, customers=customers, seed=seed)
    (d / "simulator.sha256").write_text(stamp + "\n")
    return d, time.perf_counter() - t


# ----------------------------------------------------------------------------- one pipeline run (child)

def run_pipeline(data: Path, memory_limit: str) -> dict:
    """Render the quarterly report of `data` in this process; return stage timings, peaks and the query log.

    The pipeline is what ``carecall-eval report`` runs: open + validate, the
    quarter's key figures, the effect cohort (four pooled quarters) with its
    covariates, matching, every outcome estimator (spending with placebo,
    subgroups and event study; retention; reach, calls, actions; randomized
    arms), the year-earlier retention cohort, then the notebook that lays the
    figures out as HTML.
    """
    import duckdb
    import pyarrow.parquet as pq

    from carecall_eval.cohorts import windows
    from carecall_eval.report.render import render_report
    from carecall_eval.stages import Stages

    act_rows = pq.ParquetFile(data / "activity.parquet").metadata.num_rows
    st = Stages(quiet=False, stream=sys.stdout)
    bare = {}
    for table, cols in (("activity", "sum(wagered) AS w, sum(won) AS won"), ("deposits", "sum(amount) AS a"),
                        ("rg_events", "max(occurred_on) AS o")):
        with st(f"bare DuckDB GROUP BY ({table})"):
            con = duckdb.connect(config={"memory_limit": memory_limit})
            got = con.sql(f"SELECT customer_id, {cols}, count(*) AS n "
                          f"FROM read_parquet('{data / (table + '.parquet')}') GROUP BY customer_id").df()
            con.close()
        bare[table] = st.records[-1]["seconds"]
        if table == "activity":
            n = len(got)
    out_dir = Path(tempfile.mkdtemp(prefix="carecall_bench_report_"))
    os.environ["CARECALL_MEMORY_LIMIT"] = memory_limit
    try:
        with windows.query_log() as log:
            render_report(data, "latest", out=out_dir, progress=False, timeout=3600, stages=st)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    kernel_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    for r in st.records:
        if r["stage"] == "report notebook":
            r["peak_mb"] = max(r["peak_mb"], kernel_peak)   # the notebook runs in a kernel process
    return {"activity_rows": act_rows, "customers_with_play": n, "bare_seconds": bare,
            "stages": st.records,
            "aggregations": [{"function": f, "table": t, "keys": k, "seconds": s} for f, t, k, s in log]}


# ----------------------------------------------------------------------------- parent

def _print_size(customers: int, res: dict) -> None:
    pipe = [s for s in res["stages"] if not s["stage"].startswith("bare DuckDB GROUP BY")]
    total = sum(s["seconds"] for s in pipe)
    peak = max(s["peak_mb"] for s in pipe)
    res["total_seconds"], res["peak_mb"] = total, peak
    print(f"  {'pipeline total':<28} {total:8.1f} s   peak {peak:8,.0f} MB")
    bare = res["bare_seconds"]
    aggs = res["aggregations"]
    for a in aggs:
        a["ratio"] = a["seconds"] / bare[a["table"]]
    res["worst_ratio"] = max((a["ratio"] for a in aggs), default=float("nan"))
    print(f"  aggregation queries: {len(aggs)}, {sum(a['seconds'] for a in aggs):.1f} s in all; bare GROUP BY "
          + ", ".join(f"{t} {s:.2f} s" for t, s in bare.items())
          + f"; slowest query {res['worst_ratio']:.2f}x the bare GROUP BY over its table")
    by_fn: dict[tuple, list] = {}
    for a in aggs:
        by_fn.setdefault((a["function"], a["table"]), []).append(a)
    for (fn, table), rows in by_fn.items():
        r = max(rows, key=lambda a: a["ratio"])
        print(f"    {fn:<18} on {table:<10} {len(rows):3d} queries, slowest {r['seconds']:6.2f} s on "
              f"{r['keys']:,} keys ({r['ratio']:.2f}x bare)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--memory-limit", default="4GB", help="DuckDB memory limit (default 4GB)")
    ap.add_argument("--run", help=argparse.SUPPRESS)          # child mode: run the pipeline on this directory
    ap.add_argument("--json", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.run:
        res = run_pipeline(Path(a.run), a.memory_limit)
        Path(a.json).write_text(json.dumps(res))
        return 0
    results = {}
    for n in sorted(a.customers):
        data, sim_s = ensure_data(n, a.seed)
        print(f"\n== {n:,} customers ({data.name}"
              + (f", simulated in {sim_s:,.0f} s" if sim_s is not None else ", simulated earlier") + ")", flush=True)
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
            jpath = fh.name
        try:
            subprocess.run([sys.executable, __file__, "--run", str(data), "--json", jpath,
                            "--memory-limit", a.memory_limit], check=True)
            res = json.loads(Path(jpath).read_text())
        finally:
            os.unlink(jpath)
        print(f"  activity rows {res['activity_rows']:,}; customers with play {res['customers_with_play']:,}")
        _print_size(n, res)
        results[n] = res
    if len(results) > 1:
        sizes = sorted(results)
        lo, hi = results[sizes[0]], results[sizes[-1]]
        print(f"\nscaling {sizes[0]:,} -> {sizes[-1]:,} customers "
              f"({hi['activity_rows'] / lo['activity_rows']:.1f}x activity rows):")
        for s_lo, s_hi in zip(lo["stages"], hi["stages"]):
            print(f"  {s_lo['stage']:<28} {s_lo['seconds']:7.1f} s -> {s_hi['seconds']:7.1f} s "
                  f"({s_hi['seconds'] / max(s_lo['seconds'], 1e-9):5.1f}x)")
        print(f"  {'pipeline total':<28} {lo['total_seconds']:7.1f} s -> {hi['total_seconds']:7.1f} s "
              f"({hi['total_seconds'] / lo['total_seconds']:5.1f}x); peak {lo['peak_mb']:,.0f} -> "
              f"{hi['peak_mb']:,.0f} MB")
    big = results[max(results)]
    if max(results) >= 1_000_000:
        ok_t, ok_m = big["total_seconds"] < 300, big["peak_mb"] < 8192
        ratio = big["worst_ratio"]
        print(f"\ntargets at {max(results):,}: total {big['total_seconds']:.0f} s < 300 s: "
              f"{'met' if ok_t else 'NOT met'}; peak {big['peak_mb']:,.0f} MB < 8192 MB: "
              f"{'met' if ok_m else 'NOT met'}; slowest aggregation {ratio:.2f}x bare < 3x: "
              f"{'met' if ratio < 3 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
