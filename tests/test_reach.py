"""Reach and the missed-call SMS: case definitions against truth.json, the primary estimate's coverage of the
simulator's realised policy effect, the secondary figures, no-policy data and another SMS rule."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE, realised_truth
from statsmodels.stats.proportion import proportion_confint

from carecall_eval.contract import load
from carecall_eval.contract.config import read_operator_config
from carecall_eval.outcomes.intervals import wilson_interval
from carecall_eval.outcomes.reach import answer_rates, case_reach, sms_effect
from carecall_eval.simulate import simulate

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
        assert res.settings["sms_after_attempts"] == 1
        assert "attempt 2 on" in res.text
        # the simulator writes its rule into operator.toml, and the estimator's default is read from there
        assert ds.config.sms_after_attempts == 1
        default = sms_effect(ds, arms=TRUTH_ARMS)
        assert default.settings["sms_after_attempts"] == 1
        pd.testing.assert_frame_equal(default.summary, res.summary)
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


# --------------------------------------------------------------------------- protocol, operator facts, intervals
def test_data_only_estimators_take_no_sample(sample):
    ds, _ = sample
    for fn in (sms_effect, answer_rates):
        with pytest.raises(TypeError, match="takes no sample"):
            fn(ds, "a cohort")
    with pytest.raises(ValueError, match="level must be a number strictly between 0 and 1"):
        answer_rates(ds, level=95)


def test_sms_rule_is_read_from_operator_toml(tmp_path, sample):
    ds, _ = sample
    # the sample's operator.toml states the rule; a file without it keeps the defaults (old files stay valid)
    assert (ds.config.sms_after_attempts, ds.config.sms_window_hours) == (2, 48.0)
    (tmp_path / "operator.toml").write_text('operator = "Old"\ncurrency = "SEK"\n')
    old = read_operator_config(tmp_path)
    assert (old.sms_after_attempts, old.sms_window_hours) == (2, 48.0)
    assert "sms_after_attempts" not in old.extra
    for line, key in (("sms_after_attempts = 0", "sms_after_attempts"),
                      ('sms_after_attempts = "2"', "sms_after_attempts"),
                      ("sms_window_hours = -1", "sms_window_hours"),
                      ("sms_window_hours = true", "sms_window_hours")):
        (tmp_path / "operator.toml").write_text(f'operator = "Bad"\ncurrency = "SEK"\n{line}\n')
        with pytest.raises(ValueError, match=key):
            read_operator_config(tmp_path)


def test_estimators_default_to_the_operator_rule(tmp_path, sample):
    """A data directory whose operator.toml says SMS after 3 attempts, counted within 2 hours."""
    ds, _ = sample
    data = tmp_path / "rule"
    data.mkdir()
    for f in SAMPLE.iterdir():
        if f.suffix == ".parquet":
            (data / f.name).symlink_to(f)
    (data / "operator.toml").write_text('operator = "Rule"\ncurrency = "SEK"\nsms_policy_start = 2025-01-01\n'
                                        "sms_after_attempts = 3\nsms_window_hours = 2\n")
    with load(data) as rds:
        cr = case_reach(rds)
        lag = cr["reached_at"] - cr["sms_at"]
        assert cr["reached_after_sms"].equals((lag > pd.Timedelta(0)) & (lag <= pd.Timedelta(hours=2)))
        assert cr["reached_after_sms"].sum() < case_reach(ds)["reached_after_sms"].sum()
        # an argument overrides the file for that call only
        pd.testing.assert_frame_equal(case_reach(rds, sms_window_hours=48), case_reach(ds))
        res = sms_effect(rds, arms=TRUTH_ARMS)
        from carecall_eval.report.quarters import kpi_table, quarter_kpis

        kpis = quarter_kpis(rds, ["2025Q1"])
        assert kpis.set_index("metric").loc["kpi.reach_after_sms", "count"] == \
            cr[cr["sms_sent"] & (cr["quarter"] == "2025Q1")]["reached_after_sms"].sum()
        assert "Reached within 2 h of the SMS (of those sent one)" in kpi_table(kpis).index
    assert "Reached within 48 h of the SMS (of those sent one)" in kpi_table(quarter_kpis(ds, ["2025Q1"])).index
    assert res.settings["sms_after_attempts"] == 3 and res.settings["sms_window_hours"] == 2.0
    assert "attempt 4 on" in res.text
    assert "attempts > 3" in res.metric("reach.sms_odds_ratio")["method"]


def _newey_west_se(X: np.ndarray, y: np.ndarray, w: np.ndarray, lags: int) -> np.ndarray:
    """Newey-West (Bartlett kernel) standard errors of weighted least squares, written out by hand."""
    Xw, yw = X * np.sqrt(w)[:, None], y * np.sqrt(w)
    bread = np.linalg.inv(Xw.T @ Xw)
    beta = bread @ Xw.T @ yw
    u = (yw - Xw @ beta)[:, None] * Xw
    meat = u.T @ u
    for j in range(1, lags + 1):
        g = u[j:].T @ u[:-j]
        meat += (1 - j / (lags + 1)) * (g + g.T)
    return np.sqrt(np.diag(bread @ meat @ bread))


def test_intervals_from_standard_errors_carry_them(sample_result):
    from scipy.stats import norm

    s = sample_result.summary.set_index("metric")
    z = norm.ppf(0.975)
    eff = s.loc["reach.sms_effect"]
    assert "delta method" in eff["method"]
    assert (eff["ci_low"], eff["ci_high"]) == pytest.approx((eff["estimate"] - z * eff["se"],
                                                             eff["estimate"] + z * eff["se"]), abs=1e-12)
    cf = s.loc["reach.after_sms_without_policy"]
    assert cf["se"] == eff["se"]
    orr = s.loc["reach.sms_odds_ratio"]
    assert "log scale" in orr["method"]
    assert (np.log(orr["ci_low"]), np.log(orr["ci_high"])) == pytest.approx(
        (np.log(orr["estimate"]) - z * orr["se"], np.log(orr["estimate"]) + z * orr["se"]), abs=1e-12)
    # the ITS standard errors are Newey-West's, recomputed here by hand from the weekly series
    w = sample_result.get_plot_data("weekly")
    fit = sample_result.details["its"]
    X, names = np.asarray(fit.model.exog), list(fit.model.exog_names)
    assert np.allclose(X[:, names.index("level_change")], w["post_policy"].astype(float))
    se = _newey_west_se(X, w["reach"].to_numpy(float), w["n"].to_numpy(float), sample_result.settings["hac_lags"])
    for term, metric in (("level_change", "reach.its_level_change"), ("slope_change", "reach.its_slope_change")):
        row = s.loc[metric]
        assert row["se"] == pytest.approx(se[names.index(term)], rel=1e-9)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((row["estimate"] - z * row["se"],
                                                                 row["estimate"] + z * row["se"]), abs=1e-12)


def test_policy_with_cases_on_one_side_is_a_typed_warning(sample):
    from carecall_eval.errors import DataWarning

    ds, _ = sample
    with pytest.warns(DataWarning, match="leaves no phone cases on one side"):
        res = sms_effect(ds, policy_start="2030-01-01", level=0.9)
    assert "reach.sms_effect" not in set(res.summary["metric"])
    assert "the policy date 2030-01-01 has cases on one side only" in res.text
    assert "90% CI" in res.text and "95%" not in res.text
