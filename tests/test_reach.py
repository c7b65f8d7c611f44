"""Reach and the missed-call SMS: case definitions against truth.json, the primary estimate's coverage of the
simulator's realised policy effect, the secondary figures, no-policy data and another SMS rule."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from carecall_eval.contract import load
from carecall_eval.outcomes.reach import answer_rates, case_reach, sms_effect, wilson_interval
from carecall_eval.simulate import simulate

from conftest import SAMPLE, realised_truth
#: The simulator's truth counts ordinary phone cases only (arm null), so the exact comparisons use that definition.
TRUTH_ARMS = (None,)


@pytest.fixture(scope="module")
def sim8k(tmp_path_factory):
    path = tmp_path_factory.mktemp("reach") / "sim8k"
    simulate(path, customers=8000, seed=4711)
    ds = load(path)
    yield ds, realised_truth(path)
    ds.close()


@pytest.fixture(scope="module")
def sample_result(sample):
    ds, _ = sample
    return sms_effect(ds, arms=TRUTH_ARMS)


# --------------------------------------------------------------------------- Wilson
@pytest.mark.parametrize("level", [0.90, 0.95, 0.99])
@pytest.mark.parametrize("count,nobs", [(0, 10), (1, 10), (10, 10), (7, 23), (40, 100), (522, 990), (3, 4000)])
def test_wilson_against_statsmodels(count, nobs, level):
    lo, hi = wilson_interval(count, nobs, level)
    ref = proportion_confint(count, nobs, alpha=1 - level, method="wilson")
    assert (lo, hi) == pytest.approx(ref, abs=1e-12)


def test_wilson_vectorised_and_validated():
    lo, hi = wilson_interval(np.array([1, 0]), np.array([10, 0]))
    assert lo[0] == pytest.approx(proportion_confint(1, 10, method="wilson")[0], abs=1e-12)
    assert np.isnan(lo[1]) and np.isnan(hi[1])
    with pytest.raises(ValueError, match="level"):
        wilson_interval(1, 10, level=95)
    with pytest.raises(ValueError, match="count <= nobs"):
        wilson_interval(11, 10)


# --------------------------------------------------------------------------- case table
def test_case_reach_matches_truth_definition(sample):
    ds, truth = sample
    cr = case_reach(ds, arms=TRUTH_ARMS)
    before, after = cr[~cr["post_policy"].astype(bool)], cr[cr["post_policy"].astype(bool)]
    assert len(before) == truth["n_cases_before_sms"] and len(after) == truth["n_cases_after_sms"]
    assert before["reached"].mean() == truth["reach_before_sms"]
    assert after["reached"].mean() == truth["reach_after_sms"]


def test_case_reach_columns_and_semantics(sample):
    ds, _ = sample
    cr = case_reach(ds)
    cases = ds.table("call_cases")
    # only phone cases of ordinary or call arms; control and letter cases (no attempts) are filtered, not an error
    assert set(cr["arm"].dropna()) <= {"call"}
    assert (cases.set_index("case_id").loc[cr["case_id"], "channel"] == "phone").all()
    wide = case_reach(ds, arms=(None, "call", "letter", "control"))
    pd.testing.assert_frame_equal(wide, cr)
    # attempts until reached: the number of the answered attempt, NA when never reached
    assert cr["attempts_to_reach"].isna().equals(~cr["reached"])
    assert (cr.loc[cr["reached"], "attempts_to_reach"] == cr.loc[cr["reached"], "n_attempts"]).all()
    # reached after the SMS: only post-policy cases that got an SMS, answered within 48 h of it, on attempt >= 3
    ras = cr[cr["reached_after_sms"]]
    assert len(ras) > 0
    assert ras["sms_sent"].all() and ras["post_policy"].astype(bool).all()
    assert (ras["attempts_to_reach"] >= 3).all()
    lag = ras["reached_at"] - ras["sms_at"]
    assert ((lag > pd.Timedelta(0)) & (lag <= pd.Timedelta(hours=48))).all()
    assert not cr.loc[~cr["post_policy"].astype(bool), "sms_sent"].any()
    assert cr["quarter"].str.fullmatch(r"\d{4}Q[1-4]").all()


def test_answer_rates_count_attempts(sample):
    ds, _ = sample
    res = answer_rates(ds, arms=TRUTH_ARMS)
    cr = case_reach(ds, arms=TRUTH_ARMS)
    first = res.metric("attempt.answer_rate", "attempt_1")
    assert first["n"] == len(cr)
    assert first["estimate"] == pytest.approx((cr["attempts_to_reach"] == 1).sum() / len(cr), abs=1e-15)
    third_after = res.metric("attempt.answer_rate", "attempt_3.after_sms")
    post = cr[cr["post_policy"].astype(bool)]
    n3 = int((post["n_attempts"] >= 3).sum())
    assert third_after["n"] == n3
    assert third_after["estimate"] == pytest.approx((post["attempts_to_reach"] == 3).sum() / n3, abs=1e-15)
    lo, hi = proportion_confint(int((post["attempts_to_reach"] == 3).sum()), n3, method="wilson")
    assert (third_after["ci_low"], third_after["ci_high"]) == pytest.approx((lo, hi), abs=1e-12)


# --------------------------------------------------------------------------- the SMS effect
def _check_effect(res, truth):
    assert res.metric("reach.before_sms")["estimate"] == truth["reach_before_sms"]
    assert res.metric("reach.after_sms")["estimate"] == truth["reach_after_sms"]
    eff = res.metric("reach.sms_effect", "difference")
    assert eff["ci_low"] <= truth["sms_effect_on_reach"] <= eff["ci_high"], (eff, truth["sms_effect_on_reach"])
    raw = res.metric("reach.sms_difference", "difference")
    assert raw["estimate"] == pytest.approx(truth["reach_after_sms"] - truth["reach_before_sms"], abs=1e-12)
    its = res.metric("reach.its_level_change", "difference")
    assert np.isfinite([its["estimate"], its["ci_low"], its["ci_high"]]).all()
    assert np.isfinite(res.metric("reach.its_slope_change")["estimate"])
    cf = res.metric("reach.after_sms_without_policy")
    assert cf["estimate"] == pytest.approx(truth["reach_after_sms"] - eff["estimate"], abs=1e-12)
    return eff


def test_sms_effect_on_sample_covers_truth(sample, sample_result):
    _, truth = sample
    eff = _check_effect(sample_result, truth)
    assert eff["n"] == truth["n_cases_after_sms"]
    assert "would have been reached" in sample_result.text


def test_sms_effect_on_fresh_simulation_covers_truth(sim8k):
    ds, truth = sim8k
    res = sms_effect(ds, arms=TRUTH_ARMS)
    eff = _check_effect(res, truth)
    # the simulator's SMS raises the log-odds of later attempts by 1.0: the fitted odds ratio must cover e^1
    orr = res.metric("reach.sms_odds_ratio")
    assert orr["ci_low"] <= np.e <= orr["ci_high"]
    # the primary estimate is closer to the truth than the raw difference, which also carries trend and mix
    raw = res.metric("reach.sms_difference")
    assert abs(eff["estimate"] - truth["sms_effect_on_reach"]) < abs(raw["estimate"] - truth["sms_effect_on_reach"])


def test_bootstrap_interval_is_reproducible_and_covers(sample):
    ds, truth = sample
    a = sms_effect(ds, arms=TRUTH_ARMS, interval="bootstrap", n_boot=60, seed=3)
    b = sms_effect(ds, arms=TRUTH_ARMS, interval="bootstrap", n_boot=60, seed=3)
    ea, eb = a.metric("reach.sms_effect"), b.metric("reach.sms_effect")
    assert (ea["ci_low"], ea["ci_high"]) == (eb["ci_low"], eb["ci_high"])
    assert ea["ci_low"] <= truth["sms_effect_on_reach"] <= ea["ci_high"]
    assert "bootstrap" in ea["method"]


def test_plot_data_and_params(sample_result):
    w = sample_result.get_plot_data("weekly")
    assert {"week", "n", "reach", "post_policy", "fitted", "counterfactual"} <= set(w.columns)
    assert w["fitted"].notna().all()
    # before the policy, the fit and its no-policy counterfactual coincide
    pre = w[~w["post_policy"]]
    assert np.allclose(pre["fitted"], pre["counterfactual"])
    assert sample_result.get_plot_data("policy_start") == pd.Timestamp("2025-01-01")
    json.dumps(sample_result.settings)
    assert sample_result.settings["policy_start"] == "2025-01-01"


def test_other_sms_rule(tmp_path):
    """An operator that sends the SMS after one unanswered attempt: the parameter follows the rule."""
    path = tmp_path / "sms1"
    simulate(path, customers=6000, seed=99, sms_after_attempts=1)
    truth = realised_truth(path)
    with load(path) as ds:
        res = sms_effect(ds, arms=TRUTH_ARMS, sms_after_attempts=1)
        _check_effect(res, truth)
        assert res.params["sms_after_attempts"] == 1
        assert "attempt 2 on" in res.text
        with pytest.raises(ValueError, match="no case has more than"):
            sms_effect(ds, sms_after_attempts=4)


def test_no_policy_date_reports_reach_over_time_only(tmp_path):
    path = tmp_path / "nopolicy"
    simulate(path, customers=3000, seed=8, sms_policy_start=None)
    with load(path) as ds:
        assert ds.config.sms_policy_start is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = sms_effect(ds)
        metrics = set(res.summary["metric"])
        assert {"reach.overall", "reach.quarter", "attempt.answer_rate"} == metrics
        assert "No effect of a missed-call SMS is estimated" in res.text
        assert res.get_plot_data("policy_start") is None
        cr = case_reach(ds)
        assert res.metric("reach.overall")["estimate"] == cr["reached"].mean()
        assert cr["post_policy"].isna().all()
        rates = answer_rates(ds)
        assert set(rates.summary["period"]) == {"all"}


def test_bad_options_name_the_argument(sample):
    ds, _ = sample
    with pytest.raises(ValueError, match="level"):
        sms_effect(ds, level=1.2)
    with pytest.raises(ValueError, match="sms_after_attempts"):
        sms_effect(ds, sms_after_attempts=0)
    with pytest.raises(ValueError, match="interval"):
        sms_effect(ds, interval="wald")


def test_reach_plots_draw_the_plot_data(sample_result):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from carecall_eval.plotting import answer_rate_plot, reach_its_plot

    ax = reach_its_plot(sample_result)
    w = sample_result.get_plot_data("weekly")
    assert len(ax.collections[0].get_offsets()) == len(w)
    assert any(ln.get_label() == "SMS policy starts" for ln in ax.lines)
    ax2 = answer_rate_plot(sample_result)
    tab = sample_result.get_plot_data("answer_by_attempt")
    heights = sorted(p.get_height() for p in ax2.patches)
    assert heights == pytest.approx(sorted(tab.loc[tab["period"] != "all", "rate"]))
    plt.close("all")
