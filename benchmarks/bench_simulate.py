"""Simulator benchmark: time and peak memory to write N customers over two years.

    python benchmarks/bench_simulate.py --customers 100000
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", help="write here instead of a temporary directory")
    a = ap.parse_args(argv)
    out = Path(a.keep) if a.keep else Path(tempfile.mkdtemp()) / "sim"
    t0 = time.perf_counter()
    simulate(out, customers=a.customers, seed=a.seed)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = pq.ParquetFile(out / "activity.parquet").metadata.num_rows
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"simulate: {a.customers:,} customers, {rows:,} activity rows, {size:,.0f} MB on disk: "
          f"{dt:,.1f} s, peak memory {peak:,.0f} MB")
    if not a.keep:
        shutil.rmtree(out.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
