"""``case_timeline``'s trigger link (issue 18: one integer key for merge_asof) equals the plain two-column link.

The reference is the previous implementation.  The data are the sample with some triggers moved beyond the
link's gap, some removed and some relabelled, so cases without a trigger, cases whose trigger is too old,
and a customer with two trigger types are all present.
"""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
from conftest import SAMPLE

from carecall_eval.contract import load
from carecall_eval.outcomes.programme.speed import STEPS, case_timeline
from carecall_eval.outcomes.reach.cases import case_reach


def _timeline_reference(ds, gap_days):
    cr = case_reach(ds)
    trig = ds.table("triggers")[["customer_id", "trigger", "triggered_on"]].copy()
    trig["triggered_on"] = pd.to_datetime(trig["triggered_on"]).astype("datetime64[ns]")
    c = cr.sort_values("opened_on").reset_index(drop=True)
    c = pd.merge_asof(c, trig.sort_values("triggered_on"), left_on="opened_on", right_on="triggered_on",
                      by=["customer_id", "trigger"], direction="backward", tolerance=pd.Timedelta(days=gap_days))
    for stem, start, end, _ in STEPS:
        d0 = pd.to_datetime(c[start]).dt.normalize()
        d1 = pd.to_datetime(c[end]).dt.normalize()
        c[f"days_{stem}"] = (d1 - d0).dt.days.astype(float)
    return c.sort_values(["opened_on", "case_id"]).reset_index(drop=True)


def test_case_timeline_trigger_link_equals_the_two_column_merge(tmp_path):
    d = tmp_path / "data"
    shutil.copytree(SAMPLE, d)
    trig = pd.read_parquet(d / "triggers.parquet")
    rng = np.random.default_rng(4)
    u = rng.random(len(trig))
    trig.loc[u < 0.15, "triggered_on"] -= pd.Timedelta(days=40)            # beyond a 30-day gap
    trig.loc[(u >= 0.15) & (u < 0.25), "trigger"] = "other_trigger"          # another type: no link
    trig = trig[(u < 0.25) | (u >= 0.35)]                                    # removed
    trig.to_parquet(d / "triggers.parquet", index=False)
    cases = pd.read_parquet(d / "call_cases.parquet")
    cases.loc[cases.index % 17 == 0, "trigger"] = None                      # cases without a trigger type
    cases.to_parquet(d / "call_cases.parquet", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load(d, validate=False)
        for gap in (30, 7):
            got, ref = case_timeline(ds, gap_days=gap), _timeline_reference(ds, gap)
            pd.testing.assert_frame_equal(got, ref)
            assert 0.3 < got["triggered_on"].isna().mean() < 0.9       # both linked and unlinked cases
