"""Spending estimators: PPML against a hand-written sandwich, E-values, and recovery of simulated truth."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from carecall_eval.cohorts import build_cohort
from carecall_eval.contract import load
from carecall_eval.errors import InputError, NotAvailableError
from carecall_eval.outcomes.spending import (
    decomposition,
    evalue,
    event_study,
    key_figures,
    matched_ppml,
    naive_change,
    ppml,
    spending_effect,
)


def test_evalue_matches_vanderweele_ding():
    # VanderWeele & Ding (2017), Ann Intern Med: RR 3.9 -> E-value 7.26; CI limit 1.8 -> 3.0
    e, e_ci = evalue(3.9, 1.8, 8.7)
    assert e == pytest.approx(3.9 + np.sqrt(3.9 * 2.9))
    assert round(e, 2) == 7.26 and round(e_ci, 2) == 3.0
    # protective ratio: invert; interval through 1 -> 1
    e, e_ci = evalue(0.8, 0.6, 1.1)
    assert e == pytest.approx(1.25 + np.sqrt(1.25 * 0.25)) and e_ci == 1.0


def test_ppml_dummy_only_is_the_ratio_of_weighted_means():
    rng = np.random.default_rng(3)
    n = 400
    t = rng.integers(0, 2, n)
    y = rng.gamma(0.5, 100, n) * np.where(t == 1, 0.8, 1.0)
    w = rng.uniform(0.2, 3, n)
    r = ppml(y, pd.DataFrame({"t": t}), term="t", weights=w)
    ratio = (np.sum(w * y * t) / np.sum(w * t)) / (np.sum(w * y * (1 - t)) / np.sum(w * (1 - t)))
    assert r.estimate == pytest.approx(ratio - 1, rel=1e-8)


def test_ppml_cluster_errors_against_a_hand_written_sandwich():
    """Independent implementation of the weighted Poisson cluster sandwich (numpy)."""
    rng = np.random.default_rng(11)
    n, G = 600, 150
    g = rng.integers(0, G, n)
    x = rng.normal(size=n)
    t = rng.integers(0, 2, n)
    mu = np.exp(1 + 0.3 * x - 0.2 * t)
    y = rng.gamma(2.0, mu / 2.0)
    w = rng.uniform(0.5, 2.0, n)
    r = ppml(y, pd.DataFrame({"t": t, "x": x}), term="t", weights=w, groups=g)
    X = np.column_stack([np.ones(n), t, x])
    beta = r.params.to_numpy()
    m = np.exp(X @ beta)
    bread = np.linalg.inv((X * (w * m)[:, None]).T @ X)
    scores = X * (w * (y - m))[:, None]
    G = len(np.unique(g))          # clusters actually present
    S = np.zeros((g.max() + 1, 3))
    np.add.at(S, g, scores)
    meat = S.T @ S
    k = 3
    corr = G / (G - 1) * (n - 1) / (n - k)
    V = corr * bread @ meat @ bread
    assert r.se == pytest.approx(np.sqrt(V[1, 1]), rel=1e-6)
    # and the point estimate solves the weighted score equations
    assert np.abs(scores.sum(axis=0)).max() < 1e-6 * np.abs(w * y).sum()


def test_naive_change_equals_ratio_of_sums_for_equal_windows():
    t = pd.DataFrame({"contact": [1, 1, 1, 0], "customer_id": ["a", "b", "c", "d"],
                      "tl_pre": [100.0, 50.0, 10.0, 5.0], "tl_post84": [40.0, 60.0, 0.0, 99.0]})
    r = naive_change(t, "tl", 84, 84)
    assert r.estimate == pytest.approx(100 / 160 - 1)


def test_decomposition_adds_up():
    d = decomposition(-0.30, -0.15).set_index("step")["value"]
    assert d["after"] == pytest.approx(70.0)
    assert d["before (index = 100)"] + d["would have happened anyway"] + d["added by the call"] == \
        pytest.approx(d["after"])
    assert d["added by the call"] == pytest.approx(70 - 70 / 0.85)


def test_key_figures_by_hand():
    m = pd.DataFrame({"contact": [1, 1, 1, 0, 0], "weights": [1, 1, 1, 2, 1],
                      "tl_pre": [84.0, 84.0, 84.0, 84.0, 84.0], "tl_post28": [14.0, 56.0, 0.0, 28.0, 7.0]})
    kf = key_figures(m, "tl", 28, 84).set_index("group")
    # contact: per-day pre 1; post 0.5, 2, 0 -> two reduced, changes -0.5 and -1
    assert kf.loc["contact", "share_reduced"] == pytest.approx(2 / 3)
    assert kf.loc["contact", "mean_change_among_reducers"] == pytest.approx(-0.75)
    # comparison: post 1.0 (weight 2, not reduced), 0.25 (weight 1, reduced)
    assert kf.loc["comparison", "share_reduced"] == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def obs_sample(sample):
    ds, truth = sample
    return ds, build_cohort(ds).sample(), truth


@pytest.fixture(scope="module")
def sample_result(obs_sample):
    ds, smp, truth = obs_sample
    return spending_effect(ds, smp), truth


def _fast(ds, smp, **kw):
    return spending_effect(ds, smp, **{"placebo": False, "subgroups": False, "event_weeks": None, **kw})


def test_sample_matched_covers_truth_and_naive_does_not(sample_result):
    res, truth = sample_result
    true84 = truth["realised_att_theoretical_loss"]["post_84d"]
    s = res.summary[res.summary["window"] == 84].set_index("metric")
    assert s.loc["spending.matched_change", "ci_low"] <= true84 <= s.loc["spending.matched_change", "ci_high"]
    # the naive figure overstates the effect: regression to the mean is in it
    assert s.loc["spending.naive_change", "estimate"] < true84 - 0.08
    assert s.loc["spending.placebo_change", "ci_low"] <= 0 <= s.loc["spending.placebo_change", "ci_high"]
    assert "regression to the mean" in res.text
    assert "in the 12 weeks after the index" in res.text


def test_sample_result_has_every_metric_and_plot_data(sample_result):
    res, _ = sample_result
    ids = set(res.summary["metric"])
    for mid in ("spending.naive_change", "spending.matched_change", "spending.matched_diff",
                "spending.did_change", "spending.post_only_change", "spending.placebo_change",
                "spending.share_reduced", "spending.mde", "spending.evalue", "spending.subgroup_change"):
        assert mid in ids
    # the headline row is the one metric() returns without window=
    assert res.metric("spending.matched_change")["window"] == 84
    ev = res.get_plot_data("event_study")
    assert set(ev["group"]) == {"contact", "comparison"}
    assert ev["week"].min() == -26 and ev["week"].max() == 52
    # event study and the window totals agree on the pre-index level (weeks -12..-1 = days -84..-1)
    pre = ev[(ev["week"] < 0) & (ev["week"] >= -12) & (ev["group"] == "contact")]["mean"].sum()
    mt = res.details["matched_table"]
    c = mt[mt["contact"] == 1]
    assert pre == pytest.approx(np.average(c["tl_pre"], weights=c["weights"]), rel=1e-9)


def test_every_interval_from_a_standard_error_carries_it(sample_result):
    """Ratios: se of the log ratio (exp(log(1+est) -/+ z se) - 1); matched_diff: se in currency (est -/+ z se)."""
    res, _ = sample_result
    s = res.summary
    z = 1.959963984540054          # scipy.stats.norm.ppf(0.975)
    ratios = s[s["metric"].isin(["spending.naive_change", "spending.matched_change", "spending.post_only_change",
                                 "spending.did_change", "spending.placebo_change", "spending.subgroup_change"])]
    assert len(ratios) > 20 and ratios["se"].notna().all()
    assert ratios["method"].str.contains("log ratio").all()
    b = np.log1p(ratios["estimate"])
    np.testing.assert_allclose(ratios["ci_low"], np.expm1(b - z * ratios["se"]), rtol=1e-9)
    np.testing.assert_allclose(ratios["ci_high"], np.expm1(b + z * ratios["se"]), rtol=1e-9)
    d = s[s["metric"] == "spending.matched_diff"]
    assert len(d) == 3 and d["se"].notna().all()
    np.testing.assert_allclose(d["ci_low"], d["estimate"] - z * d["se"], rtol=1e-9)
    np.testing.assert_allclose(d["ci_high"], d["estimate"] + z * d["se"], rtol=1e-9)


def test_event_study_bands_are_non_negative(sample_result):
    res, _ = sample_result
    ev = res.get_plot_data("event_study")
    assert (ev["ci_low"] >= 0).all() and (ev["ci_low"] <= ev["mean"]).all()
    # where the Wald band stays above 0 it is untouched: mean -/+ z se
    z = 1.959963984540054
    inside = ev["mean"] - z * ev["se"] > 0
    assert inside.any() and (~inside).any()          # the sample has weeks of both kinds
    np.testing.assert_allclose(ev.loc[inside, "ci_low"], (ev["mean"] - z * ev["se"])[inside], rtol=1e-12)
    assert (ev.loc[~inside, "ci_low"] == 0).all()
    np.testing.assert_allclose(ev["ci_high"], ev["mean"] + z * ev["se"], rtol=1e-12)


def test_mde_is_at_five_percent_two_sided_and_80_percent_power(obs_sample):
    ds, smp, _ = obs_sample
    res = _fast(ds, smp, windows=(84,), quarter_n=(100, 200), level=0.9)   # the level does not enter the MDE
    r = res.metric("spending.mde")
    se = res.details["fits"][84]["matched"].se
    m = res.details["matched_table"]
    m = m[m["followup_84"]]
    n_c, n_k = int((m["contact"] == 1).sum()), int((m["contact"] == 0).sum())
    se_q = se * np.sqrt((1 / 100 + 1 / 200) / (1 / n_c + 1 / n_k))
    # Phi^-1(0.975) + Phi^-1(0.80) (R: qnorm(0.975) + qnorm(0.8))
    assert r["estimate"] == pytest.approx(np.expm1(-(1.959963984540054 + 0.8416212335729143) * se_q), rel=1e-12)
    assert r["n"] == 300 and "5% two-sided, 80% power" in r["method"]


def test_level_is_in_every_sentence(obs_sample):
    ds, smp, _ = obs_sample
    res = spending_effect(ds, smp, level=0.9, window=28, subgroups=False, event_weeks=None)
    assert res.settings["level"] == 0.9 and res.settings["window"] == 28
    assert "95%" not in res.text and res.text.count("90% CI") == 3     # naive, matched, placebo
    assert "in the 28 days after the index" in res.text
    r95 = _fast(ds, smp, window=28)
    a, b = res.metric("spending.matched_change"), r95.metric("spending.matched_change")
    assert a["estimate"] == pytest.approx(b["estimate"], rel=1e-12) and a["se"] == pytest.approx(b["se"], rel=1e-12)
    assert a["ci_high"] - a["ci_low"] < b["ci_high"] - b["ci_low"]


def test_window_without_follow_up_is_not_available(obs_sample):
    ds, smp, _ = obs_sample
    # data/sample ends 2025-12-31 and its first index is 2024-03-31: nobody has 700 days of follow-up
    res = _fast(ds, smp, windows=(84, 700))
    far = res.summary[res.summary["window"] == 700]
    assert len(far) == 11 and far["estimate"].isna().all() and far["ci_low"].isna().all()
    assert far["note"].str.startswith("not available: no matched contact has complete 700-day follow-up").all()
    assert res.summary.loc[res.summary["window"] == 84, "estimate"].notna().all()
    with pytest.raises(NotAvailableError, match="complete 700-day follow-up"):
        _fast(ds, smp, window=700, windows=(84, 700))


def test_one_cluster_rule_from_the_sample(obs_sample):
    """Errors are clustered as the sample says: customers with replacement (the default), matched sets without."""
    ds, smp, _ = obs_sample
    for s in (smp, smp.cohort.sample(replace=False)):
        res = _fast(ds, s, windows=(84,))
        m = res.details["matched_table"]
        m = m[m["followup_84"]]
        col = "customer_id" if s.replace else "subclass"
        assert s.cluster == col and res.settings["cluster"] == col
        direct = matched_ppml(m, "tl", 84, list(s.cohort.covariates), groups=m[col].to_numpy())
        assert res.metric("spending.matched_change")["se"] == pytest.approx(direct.se, rel=1e-12)
        assert ("matched set" in res.metric("spending.matched_change")["method"]) is (not s.replace)


def test_no_statsmodels_warning_escapes(obs_sample):
    from statsmodels.tools import sm_exceptions

    ds, smp, _ = obs_sample
    with warnings.catch_warnings():
        warnings.simplefilter("error", sm_exceptions.ModelWarning)
        warnings.simplefilter("error", RuntimeWarning)
        _fast(ds, smp)


def test_arguments_are_checked(obs_sample):
    ds, smp, _ = obs_sample
    with pytest.raises(ValueError, match="outcome must be one of"):
        spending_effect(ds, smp, outcome="ggr")
    with pytest.raises(InputError, match="non-negative outcome"):
        _fast(ds, smp, outcome="net_loss")
    with pytest.raises(InputError, match="not among the estimated windows"):
        _fast(ds, smp, window=42)
    with pytest.raises(TypeError, match="MatchedSample"):
        spending_effect(ds, smp.matching)


def test_another_seed_recovers_truth(simulated):
    path, truth = simulated(customers=6000, seed=11)
    ds = load(path)
    res = spending_effect(ds, None, windows=(84,), placebo=False, subgroups=False, event_weeks=None)
    s = res.summary.set_index("metric")
    true84 = truth["realised"]["realised_att_theoretical_loss"]["post_84d"]
    assert s.loc["spending.matched_change", "ci_low"] <= true84 <= s.loc["spending.matched_change", "ci_high"]
    assert s.loc["spending.naive_change", "estimate"] < true84 - 0.05


def test_event_study_from_the_cohort_series_is_the_same(obs_sample):
    """The event study of a matched set from its cohort's weekly series (no query of its own) equals its
    own query's, float for float, at a non-default level and weeks, for two matchings of one cohort."""
    ds, smp, _ = obs_sample
    for sample in (smp, smp.cohort.sample(caliper=0.05, ratio=2)):
        m = sample.table
        want = event_study(ds, m, -8, 20, level=0.8)
        got = event_study(ds, m, -8, 20, level=0.8, universe=sample.cohort.table)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert set(want["week"]) == set(range(-8, 21)) and want["mean"].gt(0).any()
    # a row outside the universe: its own query, the same figures
    got = event_study(ds, smp.table, -8, 20, level=0.8, universe=smp.cohort.table.iloc[:5])
    pd.testing.assert_frame_equal(got, event_study(ds, smp.table, -8, 20, level=0.8), check_exact=True)


def test_placebo_is_computed_once_per_cohort_and_settings(obs_sample):
    """A changed matching option does not change the placebo (it rematches with the design's own matching):
    the second estimate takes it from memory, with no pass over activity; an edited cohort table or other
    settings compute it again."""
    from carecall_eval.cohorts import windows

    ds, smp, _ = obs_sample
    cohort = smp.cohort
    kw = {"windows": (28,), "window": 28, "subgroups": False, "event_weeks": None, "level": 0.9}
    first = spending_effect(ds, cohort.sample(), **kw)
    with windows.query_log() as log:
        again = spending_effect(ds, cohort.sample(caliper=0.05), **kw)
    with windows.query_log() as without:
        spending_effect(ds, cohort.sample(caliper=0.05), **{**kw, "placebo": False})
    # the placebo ran no query: as many as an estimate without a placebo
    assert [q[:3] for q in log] == [q[:3] for q in without]
    pick = ["spending.placebo_change"]

    def placebo_rows(res):
        return res.summary[res.summary["metric"].isin(pick)].reset_index(drop=True)
    pd.testing.assert_frame_equal(placebo_rows(again), placebo_rows(first), check_exact=True)
    # other settings: computed again (a different level gives other limits)
    other = spending_effect(ds, cohort.sample(), **{**kw, "level": 0.8})
    assert placebo_rows(other)["ci_low"].iloc[0] > placebo_rows(first)["ci_low"].iloc[0]
    # an edited table: not the kept entry
    from carecall_eval.outcomes import spending as S

    n_before = sum(len(v) for v in S._PLACEBO_MEMO.values())
    edited = type(cohort)(table=cohort.table.copy(), flow=cohort.flow, design=cohort.design,
                          data_end=cohort.data_end)
    edited.table.loc[edited.table.index[:40], "tl_pre"] *= 3.0
    spending_effect(ds, edited.sample(), **kw)
    assert sum(len(v) for v in S._PLACEBO_MEMO.values()) == n_before + 1
    del edited
    import gc

    gc.collect()
    assert sum(len(v) for v in S._PLACEBO_MEMO.values()) == n_before     # gone with its cohort


def test_event_study_keeps_the_cohort_series_only_interactively(obs_sample):
    """Interactively the event study computes its cohort's weekly series (kept for another matching); in a
    batch run (a shared pass open: a report, evaluate) the matched set's own moments query, the same figures."""
    from carecall_eval.cohorts import windows

    ds, smp, _ = obs_sample
    kw = {"windows": (28,), "window": 28, "subgroups": False, "placebo": False, "event_weeks": (-4, 9)}
    with _no_cache(), windows.query_log() as alone:
        a = spending_effect(ds, smp, **kw)
    keys = smp.cohort.table[["customer_id", "index_date"]]
    with _no_cache(), windows.shared_pass(ds, keys, [(-84, -1)]), windows.query_log() as batch:
        b = spending_effect(ds, smp, **kw)
    assert "weekly_series" in {q[0] for q in alone} and "weekly_moments" not in {q[0] for q in alone}
    assert "weekly_moments" in {q[0] for q in batch} and "weekly_series" not in {q[0] for q in batch}
    pd.testing.assert_frame_equal(a.get_plot_data("event_study"), b.get_plot_data("event_study"), check_exact=True)


def _no_cache():
    from carecall_eval.cohorts import cache

    return cache.caching(False)


def test_the_event_study_thread_is_waited_for_and_its_error_raised():
    """`_beside` (the event study's query beside the subgroup fits): left only once the thread is done, also
    when the block raises; the thread's own error comes out of ``result()``; it sees the caller's cache switch."""
    import time

    from carecall_eval.cohorts import cache
    from carecall_eval.outcomes.spending import _beside

    done = []

    def slow():
        time.sleep(0.2)
        done.append(cache.enabled())
        return 7

    with pytest.raises(KeyError), cache.caching(False), _beside(slow):
        raise KeyError("the block failed")
    assert done == [False]              # waited for, in the caller's context

    def fails():
        raise InputError("no such week")

    with _beside(fails) as job:
        pass
    with pytest.raises(InputError, match="no such week"):
        job.result()
    with _beside(None) as nothing:
        assert nothing is None

    # stopped (Ctrl-C): the query is interrupted first, so leaving the block does not wait for it to end
    import threading

    stopped = threading.Event()

    def long_query():
        if not stopped.wait(30):
            raise AssertionError("not interrupted")
        raise InputError("interrupted")

    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt), _beside(long_query, interrupt=stopped.set) as job:
        time.sleep(0.05)
        raise KeyboardInterrupt
    assert time.perf_counter() - t0 < 10 and stopped.is_set()
    with pytest.raises(InputError, match="interrupted"):
        job.result()
