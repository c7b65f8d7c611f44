"""Retention: Cox and Kaplan-Meier against R's survival package and statsmodels, exit times by hand, sample vs
truth, level and horizon honoured, unobservable horizons not published."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from carecall_eval import StudyDesign, build_cohort, load
from carecall_eval._validation import z_quantile
from carecall_eval.outcomes.retention import _retention_from_times, exit_times, retention

RESULTS = Path(__file__).parent / "results"
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def test_cox_and_km_against_R():
    """R: Rscript tests/results/survival_reference.R (survival 3.5.3; coxph with weights, cluster, Efron ties;
    survfit with weights).  R prints 12 digits; lifelines' optimiser converges to ~1e-8."""
    d = pd.read_csv(RESULTS / "survival_data.csv")
    ref = pd.read_csv(RESULTS / "survival_reference.csv").set_index("quantity")["value"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no third-party warning leaks out of the estimator
        res = _retention_from_times(d, horizon=365, cluster="cluster")
    hr = res.metric("retention.hazard_ratio", "difference")
    assert hr["estimate"] == pytest.approx(ref["hr"], rel=1e-6)
    # lifelines and R differ slightly in how Efron-tied events enter the robust score residuals
    # (0.03% on these data); a wrong clustering or weighting moves it by far more.
    assert hr["se"] == pytest.approx(ref["robust_se"], rel=1e-3)
    # the interval is exp(log HR +- z se), se on the log scale
    z = z_quantile(0.95)
    assert (hr["ci_low"], hr["ci_high"]) == pytest.approx(
        (hr["estimate"] * np.exp(-z * hr["se"]), hr["estimate"] * np.exp(z * hr["se"])), rel=1e-12)
    assert res.metric("retention.account_12m", "contact")["estimate"] == pytest.approx(ref["km365_contact"], rel=1e-9)
    assert res.metric("retention.account_12m", "comparison")["estimate"] == pytest.approx(ref["km365_control"],
                                                                                        rel=1e-9)


def test_exit_times_by_hand(tmp_path):
    from contract_helpers import valid_tables, write_dataset

    t = valid_tables()
    ds = load(write_dataset(tmp_path / "d", t))
    table = pd.DataFrame({"customer_id": ["c1", "c2", "c2"],
                          "index_date": pd.to_datetime(["2024-01-02", "2024-01-02", "2024-03-05"])})
    ex = exit_times(ds, table)
    end = pd.Timestamp(ds.data_end)
    # c1 never closes: censored at the data end; c2 closed 2024-03-01, 59 days after 2024-01-02
    assert ex.loc[0, "event"] == 0 and ex.loc[0, "duration"] == (end - pd.Timestamp("2024-01-02")).days
    assert ex.loc[1, "event"] == 1 and ex.loc[1, "duration"] == 59
    # an exit before the index does not count
    assert ex.loc[2, "event"] == 0


def test_sample_retention_matches_truth():
    ds = load(SAMPLE)
    truth = json.loads((SAMPLE / "truth.json").read_text())["realised"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # ibis on duckdb
        c = build_cohort(ds)
        res = retention(ds, c.sample())
    r = res.metric("retention.account_12m", "contact")
    assert r["ci_low"] <= truth["retention_account_12m_reached"] <= r["ci_high"]
    assert "were still customers after 12 months" in res.text
    km = res.get_plot_data("km")
    assert set(km["group"]) == {"contact", "comparison"}
    assert km["survival"].between(0, 1).all()


def test_fast_cox_robust_variance_equals_lifelines_loop():
    """The O(n) score residuals give lifelines' own (O(n^2)) robust variance, with weights, ties and clusters."""
    from lifelines import CoxPHFitter

    from carecall_eval.outcomes.retention import _cox_fitter

    rng = np.random.default_rng(11)
    n = 1500
    x = rng.integers(0, 2, n)
    df = pd.DataFrame({"duration": np.ceil(rng.exponential(200 * np.exp(-0.4 * x))).clip(max=365),
                       "contact": x, "z": rng.normal(size=n), "weights": rng.choice([0.2, 1.0, 2.5], n),
                       "cluster": rng.integers(0, 400, n)})
    df["event"] = (df["duration"] < 365).astype(int)
    assert df["duration"].duplicated().any()                      # tied times
    kw = dict(duration_col="duration", event_col="event", weights_col="weights", cluster_col="cluster",
              robust=True)
    ref = CoxPHFitter().fit(df, **kw)
    fast = _cox_fitter(alpha=0.05).fit(df, **kw)
    assert type(fast._model).__name__ == "_SemiParametricPHFitter"     # the fast path really ran
    np.testing.assert_allclose(fast.params_, ref.params_, rtol=1e-12)
    np.testing.assert_allclose(fast.standard_errors_, ref.standard_errors_, rtol=1e-9)
    assert fast.standard_errors_["contact"] != pytest.approx(CoxPHFitter().fit(
        df, duration_col="duration", event_col="event", weights_col="weights").standard_errors_["contact"],
        rel=1e-3)                                                   # the robust variance is not the model one


def test_fast_schoenfeld_residuals_and_ph_test_equal_lifelines_loop():
    """The vectorised Schoenfeld residuals (Efron ties) equal lifelines' O(n^2) loop, and so does the PH test."""
    from lifelines import CoxPHFitter
    from lifelines.statistics import proportional_hazard_test

    from carecall_eval.outcomes.retention import _cox_fitter

    rng = np.random.default_rng(5)
    n = 2000
    x = rng.integers(0, 2, n)
    df = pd.DataFrame({"duration": np.ceil(rng.exponential(150 * np.exp(-0.3 * x))).clip(max=300),
                       "contact": x, "z": rng.normal(size=n), "weights": rng.choice([0.3, 1.0, 1.7], n),
                       "cluster": rng.integers(0, 500, n)})
    df["event"] = (df["duration"] < 300).astype(int)
    assert df.loc[df["event"] == 1, "duration"].duplicated().any()      # tied event times
    kw = dict(duration_col="duration", event_col="event", weights_col="weights", cluster_col="cluster",
              robust=True)
    ref = CoxPHFitter().fit(df, **kw)
    fast = _cox_fitter(alpha=0.05).fit(df, **kw)
    r_ref = ref.compute_residuals(df, kind="schoenfeld")
    r_fast = fast.compute_residuals(df, kind="schoenfeld")
    assert len(r_fast) == int(df["event"].sum())
    pd.testing.assert_index_equal(r_fast.index, r_ref.index)
    np.testing.assert_allclose(r_fast.to_numpy(), r_ref.to_numpy(), rtol=1e-9, atol=1e-12)
    p_ref = proportional_hazard_test(ref, df, time_transform="rank").summary["p"]
    p_fast = proportional_hazard_test(fast, df, time_transform="rank").summary["p"]
    np.testing.assert_allclose(p_fast.to_numpy(), p_ref.to_numpy(), rtol=1e-9)


# --------------------------------------------------------------------------- level, horizon, not observable
@pytest.fixture(scope="module")
def obs(sample):
    ds, _ = sample
    return ds, build_cohort(ds).sample()


def test_km_greenwood_se_and_log_log_interval_against_statsmodels():
    """Reference: statsmodels.duration.survfunc.SurvfuncRight (an independent Kaplan-Meier with Greenwood's
    standard error) on R's data set with integer weights, each row repeated `weight` times (what a frequency
    weight means; SurvfuncRight's own freq_weights gives another se).  The interval is lifelines' exponential
    Greenwood exp(-exp(log(-log S) +- z se / (S log S))) at the level asked for."""
    from statsmodels.duration.survfunc import SurvfuncRight

    d = pd.read_csv(RESULTS / "survival_data.csv")
    d["weights"] = np.ceil(d["weights"] * 2)                 # integer weights: frequency weights for both tools
    level = 0.975
    res = _retention_from_times(d, horizon=300, level=level, cluster="cluster")
    z = z_quantile(level)
    for grp, lab in ((1, "contact"), (0, "comparison")):
        g = d[d["contact"] == grp]
        g = g.loc[g.index.repeat(g["weights"].astype(int))]
        sm = SurvfuncRight(g["duration"].to_numpy(), g["event"].to_numpy())
        at = np.searchsorted(sm.surv_times, 300, side="right") - 1
        row = res.metric("retention.account_300d", lab)
        assert row["estimate"] == pytest.approx(sm.surv_prob[at], rel=1e-12)
        assert row["se"] == pytest.approx(sm.surv_prob_se[at], rel=1e-9)
        S, se = row["estimate"], row["se"]
        lo, hi = (np.exp(-np.exp(np.log(-np.log(S)) + sign * z * se / (S * np.log(S)))) for sign in (-1, 1))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi), rel=1e-9)


def test_level_0975_and_horizon_180(obs):
    """level=0.975 used to raise a KeyError; horizon=180 used to keep the 12-month ids and words."""
    ds, smp = obs
    r95, r = retention(ds, smp), retention(ds, smp, horizon=180, level=0.975)
    assert r.settings["level"] == 0.975 and r.settings["horizon"] == 180
    ids = set(r.summary["metric"])
    assert {"retention.account_180d", "retention.active_180d", "retention.hazard_ratio"} <= ids
    assert not any("12m" in i for i in ids)
    assert "after 180 days" in r.text and "12 months" not in r.text
    assert "97.5% CI" in r.text and "95%" not in r.text
    # the hazard ratio does not depend on the horizon; its se not on the level; its interval widens with the level
    h95, h = r95.metric("retention.hazard_ratio"), r.metric("retention.hazard_ratio")
    assert h["estimate"] == pytest.approx(h95["estimate"], rel=1e-12) and h["se"] == pytest.approx(h95["se"])
    z = z_quantile(0.975)
    assert np.log(h["ci_high"] / h["ci_low"]) == pytest.approx(2 * z * h["se"], rel=1e-9)
    assert r.metric("retention.ph_test_p")["estimate"] == pytest.approx(r95.metric("retention.ph_test_p")["estimate"])
    # the active share counts days 90..179 and only customers followed to day 179
    act = r.metric("retention.active_180d", "contact")
    assert "days 90..179" in act["method"]
    idx = pd.to_datetime(smp.table["index_date"])
    complete = (idx + pd.Timedelta(days=179) <= ds.data_end) & (smp.table["contact"] == 1)
    assert act["n"] == int(complete.sum())
    d = r.metric("retention.active_180d", "difference")
    assert d["ci_high"] - d["ci_low"] == pytest.approx(2 * z * d["se"], rel=1e-12)
    # defaults unchanged: stable ids
    assert {"retention.account_12m", "retention.active_12m"} <= set(r95.summary["metric"])
    assert r95.metric("retention.account_12m", "contact")["se"] > 0


def test_horizon_beyond_follow_up_is_not_available(obs):
    """Nobody in data/sample (two years of data) can be followed three years: no figure, a reason."""
    ds, smp = obs
    r = retention(ds, smp, horizon=3 * 365)
    s = r.summary
    for m in ("retention.account_1095d", "retention.active_1095d"):
        rows = s[s["metric"] == m]
        assert len(rows) == 3 and rows["estimate"].isna().all() and rows["ci_low"].isna().all()
        assert rows["note"].str.startswith("not available: ").all()
    assert "followed for 36 months" in r.metric("retention.account_1095d", "contact")["note"]
    assert r.text.startswith("Retention of reached customers after 36 months is not available: no one in the "
                             "contact group was followed for 36 months")
    assert "%" not in r.text.split(".")[0]
    # the hazard ratio describes the follow-up there is, so it stays
    assert r.metric("retention.hazard_ratio")["estimate"] > 0
    assert r.to_json()                       # NaN as null


def test_quarter_without_a_year_of_follow_up_is_not_published(sample, tmp_path):
    """`export --quarter 2025Q2` published 12-month retention of 100% (100% to 100%) for cases nobody could be
    followed 12 months (data end 2025-12-31): now the rows are missing with a note, in the result and the bundle."""
    from types import SimpleNamespace

    from carecall_eval.compare.export import _metrics_table

    ds, _ = sample
    c = build_cohort(ds, StudyDesign().replace(study_start=pd.Timestamp("2025-04-01").date(),
                                               study_end=pd.Timestamp("2025-06-30").date()))
    r = retention(ds, c.sample(), label="reached in 2025Q2")
    acc = r.summary[r.summary["metric"] == "retention.account_12m"]
    assert acc["estimate"].isna().all() and (acc.loc[acc["group"] != "difference", "at_risk"] == 0).all()
    assert "not available" in r.text and "100%" not in r.text
    summary = r.summary.assign(estimator="retention")
    m, _ = _metrics_table(SimpleNamespace(summary=summary), 10, 0.95)
    out = m[m["metric"] == "retention.account_12m"]
    assert out["estimate"].isna().all() and out["ci_low"].isna().all() and out["ci_high"].isna().all()
    assert out["note"].str.startswith("not available: ").all() and (out["suppressed"] == "").all()
    # one customer left: no hazard ratio either, and the reason survives the small-count text rule
    assert m.loc[m["metric"] == "retention.hazard_ratio", "note"].tolist() == [
        "not available: fewer than two customers left during follow-up"]


def test_retention_takes_a_cohort_or_nothing(obs):
    ds, smp = obs
    by_cohort = retention(ds, smp.cohort)                # matched with the design's defaults
    pd.testing.assert_frame_equal(by_cohort.summary, retention(ds, smp).summary)
    assert retention(ds).summary.equals(by_cohort.summary)
    assert by_cohort.settings["cluster"] == smp.cluster
    with pytest.raises(TypeError, match="MatchedSample"):
        retention(ds, smp.table)                          # the old call: a matched table
    with pytest.raises(TypeError):
        retention(ds, smp, cluster="subclass")            # one cluster rule, from the sample
