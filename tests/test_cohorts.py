"""Cohort building: index dates, groups, eligibility flow, covariates, windows, design serialisation."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from contract_helpers import write_dataset

from carecall_eval.cohorts import StudyDesign, build_cohort, window_totals
from carecall_eval.contract import load

D, T = dt.date, dt.datetime
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def _tables():
    cust = pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(1, 8)],
        "operator": "Demo",
        "birth_year": [1970, 1980, 1990, 1960, 1975, 1985, 1995],
        "gender": ["F", "M", "M", "F", "U", "M", "F"],
        "registered_on": [D(2020, 1, 1)] * 3 + [D(2024, 5, 1)] + [D(2020, 1, 1)] * 3,
        "closed_on": [None] * 6 + [D(2024, 7, 1)],
    })
    products = pd.DataFrame({"product": ["slots", "lotto"], "payback": [0.9, 0.5]})
    act = pd.DataFrame({
        "customer_id": ["c1", "c1", "c1", "c1", "c1", "c2", "c2", "c3", "c5", "c6", "c7", "c4", "c1"],
        "date": [D(2024, 5, 31), D(2024, 5, 31), D(2024, 6, 1), D(2024, 3, 10), D(2024, 3, 9), D(2024, 6, 9),
                 D(2024, 1, 1), D(2024, 1, 5), D(2024, 4, 1), D(2024, 4, 1), D(2024, 4, 1), D(2024, 6, 1),
                 D(2024, 12, 31)],
        "product": ["slots", "lotto", "slots", "slots", "lotto", "slots", "slots", "slots", "slots", "slots",
                    "slots", "slots", "slots"],
        "wagered": [100.0, 10.0, 50.0, 30.0, 999.0, 40.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 1.0],
        "won": [50.0, 0.0, 0.0, 40.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    })
    cases = pd.DataFrame({
        "case_id": ["k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8"],
        "customer_id": ["c1", "c2", "c3", "c4", "c5", "c5", "c6", "c7"],
        "opened_on": [D(2024, 6, 1), D(2024, 6, 10), D(2024, 2, 1), D(2024, 7, 1), D(2024, 8, 1), D(2024, 5, 1),
                      D(2024, 8, 1), D(2024, 7, 10)],
        "trigger": ["high_loss"] * 8,
        "channel": ["phone"] * 8,
        "arm": [None] * 8,
    })
    att = pd.DataFrame({
        "case_id": ["k1", "k1", "k2", "k2", "k3", "k4", "k5", "k6", "k7", "k8"],
        "attempted_at": [T(2024, 6, 1, 10), T(2024, 6, 3, 11), T(2024, 6, 10, 9), T(2024, 6, 11, 9),
                         T(2024, 2, 1, 9), T(2024, 7, 1, 9), T(2024, 8, 1, 9), T(2024, 5, 1, 9),
                         T(2024, 8, 1, 9), T(2024, 7, 10, 9)],
        "answered": [False, True, False, False, True, True, True, False, True, True],
        "duration_s": [None, 300.0, None, None, 200.0, 100.0, 100.0, None, 100.0, 100.0],
        "agent_id": ["a1"] * 10,
        "outcome": [None, "no_action", None, None, "no_action", "no_action", "no_action", None, "no_action",
                    "no_action"],
        "reception": [None, "positive", None, None, None, None, None, None, None, None],
    })
    sms = pd.DataFrame({"case_id": ["k2"], "sent_at": [T(2024, 6, 11, 10)], "kind": ["missed_call_followup"]})
    rg = pd.DataFrame({"customer_id": ["c6"], "occurred_on": [D(2024, 7, 15)], "event": ["self_exclusion"],
                       "via_call": [False]})
    trig = pd.DataFrame({"customer_id": ["c1", "c2"], "triggered_on": [D(2024, 5, 30), D(2024, 6, 8)],
                         "trigger": ["high_loss", "high_loss"], "value": [9000.0, 9500.0]})
    return {"customers": cust, "products": products, "activity": act, "triggers": trig, "call_cases": cases,
            "call_attempts": att, "sms": sms, "rg_events": rg}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("tiny"), _tables(), config='operator = "Demo"\ncurrency = "SEK"\n')
    return load(root)


def test_default_design_indexes_both_groups_at_opening(tiny):
    c = build_cohort(tiny)
    t = c.table.set_index("case_id")
    assert set(t.index) == {"k1", "k2", "k6"}
    assert t.loc["k1", "group"] == "contact" and t.loc["k2", "group"] == "comparison"
    assert t.loc["k6", "group"] == "comparison"
    assert t.loc["k1", "index_date"] == pd.Timestamp("2024-06-01")
    assert t.loc["k2", "index_date"] == pd.Timestamp("2024-06-10")
    # follow-up: data end 2024-12-31; 28 and 84 complete, 365 censored, never dropped
    assert t.loc["k1", "followup_28"] and t.loc["k1", "followup_84"] and not t.loc["k1", "followup_365"]


def test_flow_counts_each_exclusion_rule_once(tiny):
    f = build_cohort(tiny).flow.set_index("step")
    excl = f["excluded_contact"] + f["excluded_comparison"]
    assert excl["pre window (84 days) starts before the data"] == 1   # k3
    assert excl["account not open at index"] == 1                    # k8 (closed 2024-07-01)
    assert excl["tenure under 84 days"] == 1                         # k4 (registered 2024-05-01)
    assert excl["self-excluded in the 180 days before index"] == 1   # k7
    assert excl["contacted in the 365 days before index"] == 1       # k5 (k6 three months before)
    assert f.loc["eligible", "remaining_contact"] == 1
    assert f.loc["eligible", "remaining_comparison"] == 2
    assert f.loc["candidates", "remaining_contact"] == 6


def test_answered_index_is_an_option_and_says_so(tiny):
    d = StudyDesign(index="answered")
    t = build_cohort(tiny, d).table.set_index("case_id")
    assert t.loc["k1", "index_date"] == pd.Timestamp("2024-06-03")   # the answered call
    assert t.loc["k2", "index_date"] == pd.Timestamp("2024-06-10")   # the first attempt
    assert "MISALIGNED" in d.describe()
    assert "opened" in StudyDesign().describe()


def test_not_selected_design_indexes_contacts_at_their_trigger(tiny):
    c = build_cohort(tiny, StudyDesign(comparison="not_selected"))
    t = c.table
    k1 = t[t["case_id"] == "k1"].iloc[0]
    assert k1["index_date"] == pd.Timestamp("2024-05-30")


def test_window_totals_by_hand(tiny):
    keys = pd.DataFrame({"row_id": [0, 1], "customer_id": ["c1", "c1"],
                         "index_date": [pd.Timestamp("2024-06-01"), pd.Timestamp("2024-01-01")]})
    w = window_totals(tiny, keys, {"d1": (-1, -1), "pre": (-84, -1), "post": (0, 27)})
    # day -1 (2024-05-31): slots 100 (tl 10, net 50) + lotto 10 (tl 5, net 10)
    assert w.loc[0, "tl_d1"] == pytest.approx(15.0)
    assert w.loc[0, "net_loss_d1"] == pytest.approx(60.0)
    assert w.loc[0, "active_days_d1"] == 1
    # pre: 2024-03-09 is day -84 (lotto 999 -> tl 499.5), 2024-03-10 day -83 (tl 3), and day -1
    assert w.loc[0, "tl_pre"] == pytest.approx(499.5 + 3.0 + 15.0)
    assert w.loc[0, "wagered_pre"] == pytest.approx(999 + 30 + 110)
    assert w.loc[0, "active_days_pre"] == 3
    assert w.loc[0, "tl_post"] == pytest.approx(5.0)
    assert w.loc[1, "tl_post"] == 0 and w.loc[1, "active_days_post"] == 0
    assert np.isnan(w.loc[0, "deposits_pre"])          # no deposits table in this dataset


def test_window_totals_match_pandas_on_sample():
    """Independent implementation: plain pandas on the Parquet files."""
    ds = load(SAMPLE)
    act = pd.read_parquet(SAMPLE / "activity.parquet").merge(pd.read_parquet(SAMPLE / "products.parquet"))
    act["date"] = pd.to_datetime(act["date"])
    cases = ds.table("call_cases").head(40)
    keys = pd.DataFrame({"row_id": np.arange(len(cases)), "customer_id": cases["customer_id"].to_numpy(),
                         "index_date": cases["opened_on"].to_numpy()})
    w = window_totals(ds, keys, {"pre": (-84, -1), "post": (0, 83)})
    for _, k in keys.iterrows():
        a = act[act["customer_id"] == k["customer_id"]]
        off = (a["date"] - k["index_date"]).dt.days
        pre = a[(off >= -84) & (off <= -1)]
        assert w.loc[k["row_id"], "tl_pre"] == pytest.approx((pre["wagered"] * (1 - pre["payback"])).sum(),
                                                            rel=1e-9, abs=1e-9)
        assert w.loc[k["row_id"], "active_days_pre"] == pre["date"].nunique()
        post = a[(off >= 0) & (off <= 83)]
        assert w.loc[k["row_id"], "net_loss_post"] == pytest.approx((post["wagered"] - post["won"]).sum(),
                                                                   rel=1e-9, abs=1e-9)


def test_design_round_trips_through_toml_and_json():
    d = StudyDesign(comparison="not_selected", post_windows=(28, 84), triggers=("high_loss",),
                    study_start=D(2024, 4, 1)).replace(matching={"caliper": 0.1, "exact": ("trigger", "gender")})
    assert StudyDesign.from_toml(d.to_toml()) == d
    assert StudyDesign.from_json(d.to_json()) == d


@pytest.mark.parametrize("kwargs, msg", [
    ({"comparison": "everyone"}, "comparison='everyone' is not one of"),
    ({"contact": "randomized"}, "contact='randomized' goes with comparison='arms'"),
    ({"index": "answered", "comparison": "not_selected"}, "index='answered' exists only"),
    ({"pre_window": 0}, "pre_window must be a positive integer"),
    ({"triggers": ("High_Loss",)}, "triggers='High_Loss' is not one of"),
])
def test_bad_designs_get_clear_errors(kwargs, msg):
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        StudyDesign(**kwargs)


def test_unknown_design_field_is_named():
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['caliper'\]"):
        StudyDesign.from_dict({"caliper": 0.2})


def test_sample_cohort_is_imbalanced_before_matching():
    c = build_cohort(load(SAMPLE))
    t = c.table
    g = t.groupby("contact")
    smd_age = (g["age"].mean()[1] - g["age"].mean()[0]) / g["age"].std()[1]
    assert smd_age > 0.2
    assert c.counts()["contact"] > c.counts()["comparison"]


def test_sets_of_some_columns_equals_those_columns_of_the_whole_table_of_sets():
    from conftest import SAMPLE

    from carecall_eval.contract import load

    with load(SAMPLE, validate=False) as ds:
        smp = build_cohort(ds, cache=False).sample()
        assert smp.has_sets and "sets" not in smp.__dict__          # asking does not build the table
        cols = ["customer_id", "contact", "tl_pre", "log_tl_28"]
        part = smp.sets_of(cols)
        assert "sets" not in smp.__dict__
        whole = smp.sets
        assert list(part.columns) == [*cols, "distance", "weights", "subclass"]
        pd.testing.assert_frame_equal(part, whole[list(part.columns)], check_exact=True)
        pd.testing.assert_frame_equal(smp.sets_of(cols), part, check_exact=True)   # from the built table too
        from carecall_eval.cohorts.sample import MatchedSample

        unmatched = MatchedSample(smp.cohort, None)                 # as a randomized design has it
        assert not unmatched.has_sets and unmatched.sets_of(cols) is None


def test_attempt_summary_and_customer_lookup_equal_the_merges():
    """The cohort's per-case first attempt / first answer and its customer columns are looked up by key; they
    equal the pandas merges they replace, with unknown cases and customers, missing times and a subset."""
    from carecall_eval.cohorts import build as B

    ds = load(SAMPLE, validate=False)
    cases, att = ds.table("call_cases"), ds.table("call_attempts")
    cases.loc[cases.index[:5], "opened_on"] = pd.NaT
    att.loc[att.index[:7], "attempted_at"] = pd.NaT
    att.loc[att.index[7:9], "case_id"] = "no such case"
    for c in (cases, cases.iloc[::3]):
        for window in (1, 28):
            got = B._attempt_summary(c, att, window)
            pd.testing.assert_frame_equal(got, B._attempt_summary_merged(c, att, window), check_exact=True)
    assert 0 < got["reached"].mean() < 1 and got["first_attempt"].isna().any()
    cust = ds.table("customers")[["customer_id", "birth_year", "gender", "registered_on", "closed_on"]]
    cand = pd.concat([cases[["customer_id", "case_id"]].iloc[::2],
                      pd.DataFrame({"customer_id": ["nobody"], "case_id": ["x"]})])
    for c in (cand, cand.iloc[:-1]):
        pd.testing.assert_frame_equal(B._with_customers(c, cust),
                                      c.merge(cust, on="customer_id", how="left", validate="many_to_one"),
                                      check_exact=True)
    ds.close()
