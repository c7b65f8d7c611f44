"""Retention: Cox and Kaplan-Meier against R's survival package, exit times by hand, sample vs truth."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from carecall_eval import build_cohort, load
from carecall_eval.outcomes.retention import exit_times, retention, retention_from_times

RESULTS = Path(__file__).parent / "results"
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def test_cox_and_km_against_R():
    """R: Rscript tests/results/survival_reference.R (survival 3.5.3; coxph with weights, cluster, Efron ties;
    survfit with weights).  R prints 12 digits; lifelines' optimiser converges to ~1e-8."""
    d = pd.read_csv(RESULTS / "survival_data.csv")
    ref = pd.read_csv(RESULTS / "survival_reference.csv").set_index("quantity")["value"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = retention_from_times(d, horizon=365, cluster="cluster")
    hr = res.metric("retention.hazard_ratio", "difference")
    assert hr["estimate"] == pytest.approx(ref["hr"], rel=1e-6)
    # the robust interval implies the robust SE on the log scale
    se = (np.log(hr["ci_high"]) - np.log(hr["ci_low"])) / (2 * 1.959963984540054)
    # lifelines and R differ slightly in how Efron-tied events enter the robust score residuals
    # (0.03% on these data); a wrong clustering or weighting moves it by far more.
    assert se == pytest.approx(ref["robust_se"], rel=1e-3)
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
        warnings.simplefilter("ignore")
        c = build_cohort(ds)
        res = retention(ds, c.match().matched_data())
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
