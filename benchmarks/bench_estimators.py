"""Time registry estimators one by one on simulated data, and check that their figures did not move.

    python benchmarks/bench_estimators.py benchmarks/out/e2e/sim_100000_seed7 reach speed randomized retention
    python benchmarks/bench_estimators.py DIR reach --save /tmp/before.pkl      # keep the summaries
    python benchmarks/bench_estimators.py DIR reach --compare /tmp/before.pkl   # and compare later (rtol 1e-9)

The default cohort is built and matched once (not timed with the estimators); each estimator is then called
through its function (not the registry's on-disk result memo, which would only read a stored result) in the
order given, so an estimator that reuses what an earlier one computed in the process (the case table of
reach) shows that.  Wall and CPU seconds are printed per estimator; prefix with ``nice -n 10`` on a shared
machine.  The aggregate cache (``CARECALL_CACHE``) is used as configured.
"""
from __future__ import annotations

import argparse
import pickle
import sys
import time
import warnings

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("names", nargs="+")
    p.add_argument("--save", help="pickle the summaries and texts here")
    p.add_argument("--compare", help="compare the summaries and texts with this pickle (rtol 1e-9)")
    a = p.parse_args(argv)

    import pandas as pd

    import carecall_eval as ce
    from carecall_eval.outcomes.registry import ESTIMATORS

    warnings.simplefilter("ignore")
    ds = ce.load(a.data, validate=False)
    t = time.perf_counter()
    sample = ce.build_cohort(ds).sample()
    print(f"cohort + matching  {time.perf_counter() - t:6.2f} s", flush=True)
    out = {}
    for name in a.names:
        spec = ESTIMATORS[name]
        if not spec.applies(ds):
            print(f"{name:18s} does not apply to these data")
            continue
        t, c = time.perf_counter(), time.process_time()
        r = spec.func(ds, sample) if spec.sample == "observational" else spec.func(ds)
        print(f"{name:18s} {time.perf_counter() - t:6.2f} s wall {time.process_time() - c:6.2f} s cpu", flush=True)
        out[name] = (r.summary, r.text)
    if a.save:
        with open(a.save, "wb") as f:
            pickle.dump(out, f)
    bad = 0
    if a.compare:
        with open(a.compare, "rb") as f:
            ref = pickle.load(f)
        for name, (summary, text) in out.items():
            if name not in ref:
                continue
            s0, t0 = ref[name]
            try:
                pd.testing.assert_frame_equal(summary.reset_index(drop=True), s0.reset_index(drop=True),
                                              rtol=1e-9, check_dtype=False)
                same = text == t0
            except AssertionError as e:
                print(f"{name}: summary differs: {str(e)[:500]}")
                same = False
            worst = 0.0
            for col in ("estimate", "se", "ci_low", "ci_high"):
                x, y = summary[col].to_numpy(float), s0[col].to_numpy(float)
                ok = np.isfinite(x) & np.isfinite(y) & (y != 0)
                if ok.any():
                    worst = max(worst, float(np.max(np.abs(x[ok] - y[ok]) / np.abs(y[ok]))))
            print(f"{name:18s} {'same figures' if same else 'DIFFERENT'} (largest relative difference {worst:.1e})")
            bad += not same
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
