"""Call length, actions after the index and reception: against truth.json, scipy/statsmodels and hand counts."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import realised_truth
from scipy.stats import quantile_test
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from carecall_eval.cohorts import Cohort, MatchedSample, StudyDesign
from carecall_eval.contract import load
from carecall_eval.contract.base import TablesBase
from carecall_eval.errors import FollowupWarning
from carecall_eval.outcomes.actions import actions, reception
from carecall_eval.outcomes.calls import call_length, quantile_interval
from carecall_eval.simulate import simulate


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    path = tmp_path_factory.mktemp("calls") / "sim"
    simulate(path, customers=5000, seed=2027)
    ds = load(path)
    yield ds, realised_truth(path)
    ds.close()


@pytest.fixture(params=["sample", "sim"])
def data(request):
    return request.getfixturevalue(request.param)


# --------------------------------------------------------------------------- call length
def test_call_length_equals_truth(data):
    ds, truth = data
    res = call_length(ds)
    mean, median = res.metric("call_length.mean_s", "all"), res.metric("call_length.median_s", "all")
    assert mean["n"] == truth["n_answered_calls"]
    assert mean["estimate"] == pytest.approx(truth["call_length_mean_s"], rel=1e-12)
    assert median["estimate"] == truth["call_length_median_s"]
    assert mean["ci_low"] < mean["estimate"] < mean["ci_high"]
    assert median["ci_low"] <= median["estimate"] <= median["ci_high"]


@pytest.mark.parametrize("q", [0.25, 0.5, 0.75, 0.9])
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_quantile_interval_against_scipy(sample, q, level):
    """Reference: scipy.stats.quantile_test(x, q=..., p=q).confidence_interval(level), the exact
    order-statistic interval of an independent implementation."""
    ds, _ = sample
    att = ds.table("call_attempts")
    x = att.loc[att["answered"], "duration_s"].to_numpy()
    est, lo, hi = quantile_interval(x, q, level)
    ref = quantile_test(x, q=np.quantile(x, q), p=q).confidence_interval(confidence_level=level)
    assert (lo, hi) == (ref.low, ref.high)
    assert est == np.quantile(x, q)


def test_quantile_interval_small_samples():
    assert quantile_interval(np.arange(1.0, 101.0), 0.5) == (50.5, 40.0, 61.0)
    est, lo, hi = quantile_interval([5.0, 7.0, 9.0], 0.5)            # n = 3 is too few for a 95% interval
    assert est == 7.0 and np.isnan(lo) and np.isnan(hi)
    assert all(np.isnan(v) for v in quantile_interval([], 0.5))
    with pytest.raises(ValueError, match="q must be"):
        quantile_interval([1.0, 2.0], 1.0)


def test_call_length_groups_and_agents(sample):
    ds, _ = sample
    res = call_length(ds)
    groups = set(res.summary["group"])
    assert not any(g.startswith("agent") for g in groups)
    att = ds.table("call_attempts")
    assert not res.summary.astype(str).isin(att["agent_id"].dropna().unique()).any().any()
    ans = att[att["answered"]]
    q = ans.groupby(ans["attempted_at"].dt.to_period("Q").astype(str))["duration_s"]
    for quarter, d in q:
        row = res.metric("call_length.median_s", f"quarter={quarter}")
        assert row["estimate"] == d.median() and row["n"] == len(d)
    lim = res.metric("call_length.mean_s", "outcome=limit_set")
    assert lim["estimate"] == pytest.approx(ans.loc[ans["outcome"] == "limit_set", "duration_s"].mean(), rel=1e-12)
    with pytest.raises(ValueError, match="include_agents=True"):
        call_length(ds, by="agent")
    with pytest.raises(ValueError, match="by must be one of"):
        call_length(ds, by="weekday")
    own = call_length(ds, include_agents=True)
    agents = [g for g in own.summary["group"].unique() if g.startswith("agent=")]
    assert agents and all(g.startswith("agent=agent_") for g in agents)
    mapping = own.details["agent_pseudonyms"]
    first_real, first_pseudo = sorted(mapping.items())[0]
    row = own.metric("call_length.mean_s", f"agent={first_pseudo}")
    assert row["estimate"] == pytest.approx(ans.loc[ans["agent_id"] == first_real, "duration_s"].mean(), rel=1e-12)
    # trend: the simulator's call lengths do not drift, so the slope's interval covers 0
    tr = res.metric("call_length.trend_s_per_year")
    assert tr["ci_low"] <= 0 <= tr["ci_high"]
    hist = res.get_plot_data("histogram")
    assert hist["count"].sum() == len(ans)
    assert np.allclose(np.log(hist["bin_right"]) - np.log(hist["bin_left"]),
                       np.log(hist["bin_right"].iloc[0] / hist["bin_left"].iloc[0]))


def test_call_length_protocol_level_and_standard_errors(sample):
    """Level checked by the shared check, no sample, the text follows the level, and se where intervals use one:
    the mean's t interval (se = sd / sqrt(n), as scipy.stats.sem) and the trend's HC3 slope (written out here)."""
    from scipy.stats import norm, sem, t

    ds, _ = sample
    with pytest.raises(ValueError, match="level must be a number strictly between 0 and 1.*did you mean 0.95"):
        call_length(ds, level=95)
    with pytest.raises(TypeError, match="takes no sample"):
        call_length(ds, "quarter")
    res = call_length(ds, level=0.9)
    assert "90% CI" in res.text and "95%" not in res.text
    att = ds.table("call_attempts")
    ans = att[att["answered"]]
    x = ans["duration_s"].to_numpy(float)
    mean = res.metric("call_length.mean_s", "all")
    assert mean["se"] == pytest.approx(sem(x), rel=1e-12)
    half = t.ppf(0.95, len(x) - 1) * sem(x)
    assert (mean["ci_low"], mean["ci_high"]) == pytest.approx((x.mean() - half, x.mean() + half), rel=1e-12)
    years = ((ans["attempted_at"] - ans["attempted_at"].min()).dt.total_seconds() / (365.25 * 86400)).to_numpy()
    X = np.column_stack([np.ones_like(years), years])
    bread = np.linalg.inv(X.T @ X)
    beta = bread @ X.T @ x
    e = x - X @ beta
    h = np.einsum("ij,jk,ik->i", X, bread, X)
    hc3 = bread @ (X.T * (e / (1 - h)) ** 2) @ X @ bread
    tr = res.metric("call_length.trend_s_per_year", "all")
    assert tr["estimate"] == pytest.approx(beta[1], rel=1e-9)
    assert tr["se"] == pytest.approx(np.sqrt(hc3[1, 1]), rel=1e-9)
    z = norm.ppf(0.95)
    assert (tr["ci_low"], tr["ci_high"]) == pytest.approx((beta[1] - z * tr["se"], beta[1] + z * tr["se"]), rel=1e-9)
    # quantile intervals are exact order statistics: no standard error behind them
    assert np.isnan(res.metric("call_length.median_s", "all")["se"])


# --------------------------------------------------------------------------- reception
def test_reception_equals_truth(data):
    ds, truth = data
    res = reception(ds)
    for level, share in truth["reception_shares"].items():
        assert res.metric(f"reception.{level}")["estimate"] == pytest.approx(share, rel=1e-12)
    for outcome, share in truth["outcome_shares"].items():
        assert res.metric(f"call_outcome.{outcome}")["estimate"] == pytest.approx(share, rel=1e-12)
    pos = res.metric("reception.positive")
    ref = proportion_confint(round(pos["estimate"] * pos["n"]), pos["n"], method="wilson")
    assert (pos["ci_low"], pos["ci_high"]) == pytest.approx(ref, abs=1e-12)
    assert "received positively" in res.text


def test_reception_takes_no_sample(sample):
    ds, _ = sample
    with pytest.raises(TypeError, match="reads the call tables directly"):
        reception(ds, MatchedSample(_cohort(pd.DataFrame({"contact": [1]})), None))
    r90 = reception(ds, level=0.9)
    assert "90% CI" in r90.text and "95%" not in r90.text


# --------------------------------------------------------------------------- actions: hand-made data
class _StubDataset(TablesBase):
    """The two things actions() reads from a Dataset: rg_events and the data end."""

    path, tables = "stub", ("rg_events",)

    def __init__(self, rg: pd.DataFrame, data_end: str):
        self._rg = rg
        self._end = pd.Timestamp(data_end)

    @property
    def data_end(self):
        return self._end

    def table(self, name):
        assert name == "rg_events"
        return self._rg.copy()


class _StubMatching:
    """What a MatchedSample reads from a matching result: the matched rows and whether controls are reused."""

    match_matrix = None

    def __init__(self, matched: pd.DataFrame, replace: bool = False):
        self._matched, self.settings = matched, {"replace": replace}

    def matched_data(self, kind=None):
        return self._matched.copy()


def _cohort(table: pd.DataFrame) -> Cohort:
    return Cohort(table, pd.DataFrame(), StudyDesign(), pd.Timestamp("2025-03-31"))


def _unmatched(table: pd.DataFrame) -> MatchedSample:
    """Every cohort row once, unweighted."""
    return MatchedSample(_cohort(table), None)


def _matched(table: pd.DataFrame, matched: pd.DataFrame, replace: bool = False) -> MatchedSample:
    return MatchedSample(_cohort(table), _StubMatching(matched, replace))


@pytest.fixture
def tiny():
    cohort = pd.DataFrame({
        "customer_id": ["a", "b", "c", "d", "e", "f", "g", "h", "late"],
        "index_date": pd.to_datetime(["2025-01-01"] * 8 + ["2025-03-20"]),
        "group": ["contact"] * 4 + ["comparison"] * 4 + ["contact"],
        "contact": [1, 1, 1, 1, 0, 0, 0, 0, 1],
    }, index=pd.Index(range(10, 19), name="row_id"))
    rg = pd.DataFrame({
        "customer_id": ["a", "b", "b", "c", "d", "e", "f", "g", "late"],
        "occurred_on": pd.to_datetime(["2025-01-01", "2025-01-28", "2025-01-10", "2025-01-29", "2024-12-31",
                                       "2025-01-05", "2025-01-15", "2025-01-20", "2025-03-21"]),
        #  a: day 0 limit (in); b: day 27 lowered (in) + day 9 pause via call; c: day 28 (out); d: day -1 (out)
        "event": ["limit_set", "limit_lowered", "pause", "limit_set", "self_exclusion",
                  "limit_raised", "self_exclusion", "limit_set", "limit_set"],
        "via_call": [True, False, True, False, False, False, False, False, False],
    })
    return _StubDataset(rg, "2025-03-31"), cohort


def test_actions_counts_the_window_by_hand(tiny):
    ds, cohort = tiny
    with pytest.warns(FollowupWarning, match="1 rows have less than 28 days"):
        res = actions(ds, _unmatched(cohort))
    lim = res.summary[res.summary["metric"] == "actions.limit_set_28d"].set_index("group")
    assert lim.loc["contact", "estimate"] == 2 / 4          # a (day 0) and b (lowered, day 27)
    assert lim.loc["comparison", "estimate"] == 1 / 4       # g; e raised a limit, which does not count
    assert lim.loc["difference", "estimate"] == pytest.approx(0.25, abs=1e-15)
    ref = confint_proportions_2indep(2, 4, 1, 4, method="newcomb", compare="diff")
    assert (lim.loc["difference", "ci_low"], lim.loc["difference", "ci_high"]) == pytest.approx(ref, abs=1e-12)
    se = res.metric("actions.self_exclusion_28d", "comparison")
    assert se["estimate"] == 1 / 4 and se["n"] == 4         # f; d's is the day before the index
    assert res.metric("actions.pause_28d", "contact")["estimate"] == 1 / 4
    assert res.metric("actions.any_28d", "contact")["estimate"] == 2 / 4
    via = actions(ds, _unmatched(cohort.iloc[:8]), via_call=True)
    assert via.metric("actions.limit_set_28d", "contact")["estimate"] == 1 / 4
    assert via.metric("actions.limit_set_28d", "comparison")["estimate"] == 0
    assert "during a care call" in via.text
    short = actions(ds, _unmatched(cohort.iloc[:8]), days=10, level=0.9)
    assert short.metric("actions.limit_set_10d", "contact")["estimate"] == 1 / 4
    assert not short.summary["metric"].str.endswith("_28d").any() and short.settings["days"] == 10
    assert short.text.startswith("Within 10 days of the index") and "90% CI" in short.text and "95%" not in short.text
    ref = confint_proportions_2indep(1, 4, 0, 4, method="newcomb", compare="diff", alpha=0.1)   # g is day 19
    d = short.metric("actions.limit_set_10d", "difference")
    assert (d["ci_low"], d["ci_high"]) == pytest.approx(ref, abs=1e-12)


def test_actions_group_without_follow_up_is_not_available(tiny):
    """Only the 'late' contact (index 11 days before the data end) and nobody to compare at 28 days."""
    ds, cohort = tiny
    late = cohort.iloc[[0, 8]].assign(index_date=pd.to_datetime(["2025-03-25", "2025-03-20"]), contact=[0, 1])
    with pytest.warns(FollowupWarning, match="2 rows"):
        res = actions(ds, _unmatched(late))
    assert res.summary["estimate"].isna().all()
    assert res.summary["note"].str.startswith("not available: ").all()
    assert "not available" in res.text and "%" not in res.text


def test_actions_with_matching_weights(tiny):
    ds, cohort = tiny
    cohort = cohort.iloc[:8]
    matched = cohort.assign(weights=[1, 1, 1, 1, 2.0, 1.0, 0.5, 0.5], subclass=[1, 1, 2, 2, 1, 1, 2, 2])
    res = actions(ds, _matched(cohort, matched))
    comp = res.metric("actions.limit_set_28d", "comparison")
    assert comp["estimate"] == pytest.approx(0.5 / 4.0, abs=1e-15)       # only g (weight 0.5) of total weight 4
    assert comp["n_effective"] == pytest.approx(16 / (4 + 1 + 0.25 + 0.25), abs=1e-12)
    diff = res.metric("actions.limit_set_28d", "difference")
    assert diff["estimate"] == pytest.approx(0.5 - 0.125, abs=1e-12)
    assert "subclass" in diff["method"] and res.settings["cluster"] == "subclass"
    # the difference is a WLS coefficient: its se is the subclass-clustered (CR1) sandwich, by hand
    import statsmodels.api as sm

    y = np.array([1, 1, 0, 0, 0, 0, 1, 0], float)               # a, b; g in the comparison group
    X = sm.add_constant(np.array([1, 1, 1, 1, 0, 0, 0, 0], float))
    fit = sm.WLS(y, X, weights=matched["weights"].to_numpy()).fit(
        cov_type="cluster", cov_kwds={"groups": matched["subclass"].to_numpy()})
    assert diff["se"] == pytest.approx(float(fit.bse[1]), rel=1e-12)
    # a matched table holding only weights, indexed by cohort row_id, is joined to the cohort
    res2 = actions(ds, _matched(cohort, matched[["weights", "subclass"]]))
    pd.testing.assert_frame_equal(res.summary, res2.summary)
    with pytest.raises(ValueError, match="weights"):
        actions(ds, _matched(cohort, matched.drop(columns="weights")))
    # with replacement the one cluster rule clusters by customer
    rep = actions(ds, _matched(cohort, matched, replace=True))
    assert "clustered by customer" in rep.metric("actions.limit_set_28d", "difference")["method"]
    with pytest.raises(TypeError, match="MatchedSample"):
        actions(ds, matched)                                       # the old call: a table


def test_actions_on_sample_cohort(sample):
    from carecall_eval.cohorts import build_cohort

    ds, _ = sample
    cohort = build_cohort(ds)
    for smp in (MatchedSample(cohort, None), cohort.sample()):     # every cohort row once; the matched sample
        with pytest.warns(FollowupWarning, match="follow-up"):
            res = actions(ds, smp)
        for name in ("limit_set", "pause", "self_exclusion"):
            rows = res.summary[res.summary["metric"] == f"actions.{name}_28d"].set_index("group")
            assert rows.loc["difference", "estimate"] == pytest.approx(
                rows.loc["contact", "estimate"] - rows.loc["comparison", "estimate"], abs=1e-12)
            assert (rows["ci_low"] <= rows["estimate"]).all() and (rows["estimate"] <= rows["ci_high"]).all()
        # contacts who answered agreed pauses on the call: the simulator's calls lead to pauses, comparisons' do not
        assert res.metric("actions.pause_28d", "difference")["ci_low"] > 0
    # no comparison customer paused: the Wilson bounds are exactly [0, upper], never a hair above the share
    sh = res.get_plot_data("shares")
    assert ((sh["ci_low"] >= 0) & (sh["ci_low"] <= sh["share"]) & (sh["share"] <= sh["ci_high"])
            & (sh["ci_high"] <= 1)).all()
    assert sh.loc[(sh["action"] == "pause") & (sh["group"] == "comparison"), "ci_low"].iloc[0] == 0.0


# --------------------------------------------------------------------------- plots
def test_call_length_and_actions_plots(sample, tiny):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from carecall_eval.plotting import actions_plot, call_length_plot

    ds, _ = sample
    res = call_length(ds)
    ax = call_length_plot(res)
    assert ax.get_xscale() == "log"
    assert [p.get_height() for p in ax.patches] == pytest.approx(res.get_plot_data("histogram")["share"].tolist())
    ax = call_length_plot(res, kind="ecdf")
    assert ax.lines[0].get_ydata()[-1] == 1.0
    sds, cohort = tiny
    act = actions(sds, _unmatched(cohort.iloc[:8]))
    ax = actions_plot(act)
    shares = act.get_plot_data("shares")
    assert sorted(p.get_height() for p in ax.patches) == pytest.approx(sorted(shares["share"]))
    plt.close("all")
