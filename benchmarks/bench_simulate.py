"""Simulator benchmark: time, CPU (this process: the Parquet writer; the forked workers: the chunks) and peak
memory to write N customers over two years; at 1M customers beside the issue-18 target (under 90 s).

    python benchmarks/bench_simulate.py --customers 100000
    python benchmarks/bench_simulate.py --customers 1000000 --keep /tmp/sim1m
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from carecall_eval.simulate import simulate

TARGET_S = 90.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--jobs", type=int, help="worker processes (default: one per CPU)")
    ap.add_argument("--keep", help="write here instead of a temporary directory")
    a = ap.parse_args(argv)
    out = Path(a.keep) if a.keep else Path(tempfile.mkdtemp()) / "sim"
    t0 = time.perf_counter()
    simulate(out, customers=a.customers, seed=a.seed, jobs=a.jobs)
    dt = time.perf_counter() - t0
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = max(me.ru_maxrss, kids.ru_maxrss) / 1024
    rows = pq.ParquetFile(out / "activity.parquet").metadata.num_rows
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"simulate: {a.customers:,} customers, {rows:,} activity rows, {size:,.0f} MB on disk: "
          f"{dt:,.1f} s, peak memory {peak:,.0f} MB (one process)")
    print(f"  CPU: {me.ru_utime + me.ru_stime:,.1f} s in this process (imports, writing the files), "
          f"{kids.ru_utime + kids.ru_stime:,.1f} s in the workers (simulating)")
    if a.customers == 1_000_000:
        print(f"  target (issue 18): 1M customers under {TARGET_S:.0f} s: {'met' if dt < TARGET_S else 'NOT met'}")
    if not a.keep:
        shutil.rmtree(out.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
