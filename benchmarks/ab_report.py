"""A/B of the report's figures between two checkouts, on one machine, one after the other.

    python benchmarks/ab_report.py TREE DATA

Runs ``build_quarterly`` (cold: the cache off, 20 self-check replicates) with the carecall_eval of the
checkout TREE (put first on ``sys.path``; a ``git worktree`` of another commit), prints each stage's time
and peak memory and the total, and saves the exported metrics to ``/tmp/ab_<tree name>.pkl`` so that two
runs can be compared exactly.  Used when the machine's speed differs from an earlier measurement.
"""
from __future__ import annotations

import importlib
import inspect
import os
import sys
import time


def main(tree: str, data: str) -> None:
    os.environ["CARECALL_CACHE"] = "0"
    tree = os.path.abspath(tree)
    sys.path.insert(0, tree)
    package = importlib.import_module("carecall_eval")
    if not package.__file__.startswith(tree):
        raise SystemExit(f"carecall_eval was imported from {package.__file__}, not from {tree}")
    load = importlib.import_module("carecall_eval.contract").load
    context = importlib.import_module("carecall_eval.report.context")
    last_complete_quarter = importlib.import_module("carecall_eval.calendar").last_complete_quarter
    stages = importlib.import_module("carecall_eval.stages").Stages(quiet=False, stream=sys.stdout)
    ds = load(data, validate=False)
    t = time.perf_counter()
    # as the renderer calls it (details dropped as each section is computed), where the tree knows the option
    lean = {"details": False} if "details" in inspect.signature(context.build_quarterly).parameters else {}
    report = context.build_quarterly(ds, last_complete_quarter(ds.data_end), stages=stages, **lean)
    total = time.perf_counter() - t
    peak = max(r["peak_mb"] for r in stages.records)
    print(f"TOTAL {total:.1f} s, peak {peak:,.0f} MB, tree {tree}")
    report.metrics().summary.to_pickle(f"/tmp/ab_{os.path.basename(tree)}.pkl")


if __name__ == "__main__":
    main(*sys.argv[1:3])
