"""Spending estimators: PPML against a hand-written sandwich, E-values, and recovery of simulated truth."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from carecall_eval.cohorts import build_cohort
from carecall_eval.contract import load
from carecall_eval.outcomes.spending import (decomposition, evalue, key_figures, naive_change, ppml,
                                             spending_effect)
from carecall_eval.simulate import simulate

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


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
def sample_result():
    ds = load(SAMPLE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cohort = build_cohort(ds)
        res = spending_effect(ds, cohort)
    truth = json.loads((SAMPLE / "truth.json").read_text())["realised"]
    return res, truth


def test_sample_matched_covers_truth_and_naive_does_not(sample_result):
    res, truth = sample_result
    true84 = truth["realised_att_theoretical_loss"]["post_84d"]
    s = res.summary[res.summary["window"] == 84].set_index("metric")
    assert s.loc["spending.matched_change", "ci_low"] <= true84 <= s.loc["spending.matched_change", "ci_high"]
    # the naive figure overstates the effect: regression to the mean is in it
    assert s.loc["spending.naive_change", "estimate"] < true84 - 0.08
    assert s.loc["spending.placebo_change", "ci_low"] <= 0 <= s.loc["spending.placebo_change", "ci_high"]
    assert "regression to the mean" in res.text


def test_sample_result_has_every_metric_and_plot_data(sample_result):
    res, _ = sample_result
    ids = set(res.summary["metric"])
    for mid in ("spending.naive_change", "spending.matched_change", "spending.matched_diff",
                "spending.did_change", "spending.post_only_change", "spending.placebo_change",
                "spending.share_reduced", "spending.mde", "spending.evalue", "spending.subgroup_change"):
        assert mid in ids
    ev = res.get_plot_data("event_study")
    assert set(ev["group"]) == {"contact", "comparison"}
    assert ev["week"].min() == -26 and ev["week"].max() == 52
    # event study and the window totals agree on the pre-index level (weeks -12..-1 = days -84..-1)
    pre = ev[(ev["week"] < 0) & (ev["week"] >= -12) & (ev["group"] == "contact")]["mean"].sum()
    mt = res.details["matched_table"]
    c = mt[mt["contact"] == 1]
    assert pre == pytest.approx(np.average(c["tl_pre"], weights=c["weights"]), rel=1e-9)


def test_another_seed_recovers_truth(tmp_path):
    truth = simulate(tmp_path / "d", customers=6000, seed=11)
    ds = load(tmp_path / "d")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = spending_effect(ds, build_cohort(ds), windows=(84,), placebo=False, subgroups=False,
                              event_weeks=None)
    s = res.summary.set_index("metric")
    true84 = truth["realised"]["realised_att_theoretical_loss"]["post_84d"]
    assert s.loc["spending.matched_change", "ci_low"] <= true84 <= s.loc["spending.matched_change", "ci_high"]
    assert s.loc["spending.naive_change", "estimate"] < true84 - 0.05
