"""The programme analyses (issue 16) recover the simulator's programme truths within their intervals.

Two small simulated operators carry the truths (``truth.json``: ``true_effects.programme`` and
``realised.programme``): PROGRAMME (answer rates by hour and weekday, an effect that grows with baseline
spending and shrinks with the days to contact, callers who differ in reach, outcomes and effect, repeat cases
and a second call that adds to the first) and FADING (an effect on stakes with a 60-day half-life).  Every
simulation is seeded, so each test is deterministic; the tolerances are the estimators' own intervals.
"""
from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE
from scipy import stats

import carecall_eval as ce
from carecall_eval.outcomes.programme import pooling
from carecall_eval.outcomes.registry import ESTIMATORS
from carecall_eval.simulate import SimulationParams
from carecall_eval.simulate import programme as sim_programme

HOURS = {9: -0.8, 10: -0.4, 11: -0.3, 12: -0.2, 13: -0.2, 14: -0.1, 15: 0.0, 16: 0.1, 17: 0.3, 18: 0.9, 19: 0.4}
PROGRAMME = dict(customers=5000, seed=16,
                 answer_hour_log_odds=tuple(HOURS.get(h, 0.0) for h in range(24)),
                 answer_weekday_log_odds=(0.1, 0.7, 0.2, 0.1, 0.0, -0.6, -0.2),
                 call_effect=0.8, call_effect_spend_slope=-0.15, call_effect_delay_slope=0.04,
                 caller_answer_sd=0.4, caller_effect_sd=0.15, caller_action_sd=0.5,
                 case_gap_days=150, second_call_effect=0.7)
FADING = dict(customers=4000, seed=27, call_effect=0.7, call_effect_half_life=60.0)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
NAMES = ("timing", "speed", "heterogeneity", "durability", "callers", "repeat")


def _covers(row, truth) -> bool:
    return bool(row["ci_low"] <= truth <= row["ci_high"])


@pytest.fixture(scope="module")
def prog(simulated):
    path, truth = simulated(**PROGRAMME)
    ds = ce.load(path)
    yield ds, truth, ce.build_cohort(ds).sample()
    ds.close()


@pytest.fixture(scope="module")
def fading(simulated):
    path, truth = simulated(**FADING)
    ds = ce.load(path)
    yield ds, truth, ce.build_cohort(ds).sample()
    ds.close()


@pytest.fixture(scope="module")
def on_sample(sample):
    ds, _ = sample
    return ds, ce.build_cohort(ds).sample()


_cache: dict = {}


def _run(name, ds, sample=None, **kw):
    key = (name, id(ds), tuple(sorted(kw.items())))
    if key not in _cache:
        fn = ESTIMATORS[name].func
        _cache[key] = fn(ds, **kw) if ESTIMATORS[name].sample is None else fn(ds, sample, **kw)
    return _cache[key]


# ----------------------------------------------------------------------------- simulator

def test_the_default_simulator_reproduces_the_sample_byte_for_byte(simulated):
    """The programme knobs at their defaults leave the data (and truth.json) exactly as before."""
    path, truth = simulated(customers=4000, seed=20261122)
    def digest(p):
        return hashlib.sha256(p.read_bytes()).hexdigest()

    files = lambda d: {f.name: digest(f) for f in sorted(d.iterdir()) if not f.name.startswith(".")}  # noqa: E731
    assert files(SAMPLE) == files(path)
    assert "programme" not in truth["realised"] and not set(sim_programme.KNOBS) & set(truth["params"])
    assert not sim_programme.active(SimulationParams())


def test_default_answer_terms_are_the_old_ones():
    p = SimulationParams()
    for hour in range(24):
        assert sim_programme.hour_log_odds(p, hour) == 0.20 * (17 <= hour <= 19)
    for d in range(7):
        assert sim_programme.weekday_log_odds(p, d) == -0.25 * (d >= 5)
    assert sim_programme.call_multiplier(p, 9.5, 3, None) is None


def test_programme_truths_are_recorded(prog):
    _, truth, _ = prog
    te, pr = truth["true_effects"]["programme"], truth["realised"]["programme"]
    assert te["answer_hour_log_odds"][18] == 0.9 and te["answer_weekday_log_odds"][5] == -0.6
    eff = pr["by_spend_tertile"]["effects"]
    assert eff[0] > eff[1] > eff[2]                     # the effect grows with baseline spending
    callers = pr["by_caller"]
    assert len(callers) == 12
    assert abs(sum(c["answer_log_odds"] for c in callers.values())) < 1e-9   # centred over callers


# ----------------------------------------------------------------------------- when to call

def test_timing_recovers_the_hour_and_weekday_profile(prog):
    ds, truth, _ = prog
    r = _run("timing", ds)
    te = truth["true_effects"]["programme"]
    H, W = np.array(te["answer_hour_log_odds"]), np.array(te["answer_weekday_log_odds"])
    ref = r.settings["reference"]
    s = r.summary
    rows = []
    for _, x in s[s["metric"] == "timing.hour_log_odds"].iterrows():
        if x["group"] != f"{int(ref['hour']):02d}h":
            rows.append((x["estimate"], x["se"], H[int(x["group"][:2])] - H[int(ref["hour"])], x))
    for _, x in s[s["metric"] == "timing.weekday_log_odds"].iterrows():
        if x["group"] != ref["weekday"]:
            rows.append((x["estimate"], x["se"], W[WEEKDAYS.index(x["group"])] - W[WEEKDAYS.index(ref["weekday"])], x))
    # joint: the deviations from the truth are consistent with the coefficients' covariance
    fit, terms = r.details["model"], r.details["terms"]
    idx = [terms.index(n) for n in terms if n.startswith(("hour_cat[", "weekday["))]
    b = np.asarray(fit.params)[idx]
    truth_b = np.array([H[int(n[9:11])] - H[int(ref["hour"])] if n.startswith("hour_cat[")
                        else W[WEEKDAYS.index(n[8:11])] - W[WEEKDAYS.index(ref["weekday"])] for n in
                        (terms[i] for i in idx)])
    V = np.asarray(fit.cov_params())[np.ix_(idx, idx)]
    chi2 = float((b - truth_b) @ np.linalg.solve(V, b - truth_b))
    assert stats.chi2.sf(chi2, len(idx)) > 0.01, chi2
    covered = sum(_covers(x, t) for _, _, t, x in rows)
    assert covered >= len(rows) - 2, covered
    # the true best and worst slots are found
    truth_slot = {(d, h): H[h] + W[WEEKDAYS.index(d)] for d in WEEKDAYS for h in HOURS}
    best, worst = r.metric("timing.best_slot"), r.metric("timing.worst_slot")
    assert (best["weekday"], int(best["hour"])) == max(truth_slot, key=truth_slot.get)
    assert (worst["weekday"], int(worst["hour"])) == min(truth_slot, key=truth_slot.get)
    assert r.metric("timing.hour_test")["estimate"] < 1e-6


def test_timing_standardised_rate_is_the_mean_prediction(prog):
    """A slot's rate is the mean predicted probability of every modelled attempt moved into the slot."""
    ds, _, _ = prog
    r = _run("timing", ds)
    fit, terms, a, levels = (r.details[k] for k in ("model", "terms", "attempts", "levels"))
    from carecall_eval.outcomes.programme.timing import design_matrix

    moved = a.assign(hour_cat="18", weekday="Tue")
    X, names, _ = design_matrix(moved, r.details["categorical"], r.details["continuous"], levels=levels)
    X = X[:, [names.index(t) for t in terms]]
    p = 1 / (1 + np.exp(-(X @ np.asarray(fit.params))))
    assert r.metric("timing.answer_rate", "Tue 18h")["estimate"] == pytest.approx(p.mean(), rel=1e-12)


def test_sms_timing_against_the_tables(sample):
    """The simulator sends the SMS 5 minutes after the missed attempt; the window share counts by hand."""
    ds, _ = sample
    r = _run("timing", ds)
    assert r.metric("timing.sms_delay_median_min")["estimate"] == 5.0
    att = ds.table("call_attempts").sort_values(["case_id", "attempted_at"])
    sms = ds.table("sms")
    sms = sms[sms["kind"] == "missed_call_followup"].groupby("case_id")["sent_at"].min()
    ans = att[att["answered"]].groupby("case_id")["attempted_at"].min()
    cases = ds.table("call_cases")
    phone = cases[(cases["channel"] == "phone") & (cases["arm"].isna() | (cases["arm"] == "call"))]["case_id"]
    sms = sms[sms.index.isin(phone)]
    lag = (ans.reindex(sms.index) - sms).dt.total_seconds() / 3600
    within = ((lag > 0) & (lag <= ds.config.sms_window_hours)).sum()
    row = r.metric("timing.reached_within_window_after_sms")
    assert int(row["n"]) == len(sms) and row["estimate"] == pytest.approx(within / len(sms), abs=1e-12)
    med = r.metric("timing.sms_to_answer_median_h")
    assert med["estimate"] == pytest.approx(float(np.median(lag[lag > 0])), abs=1e-9)


# ----------------------------------------------------------------------------- how fast

def test_speed_recovers_the_simulator_protocol(prog):
    ds, _, sample = prog
    r = _run("speed", ds, sample)
    # cases open 0-3 days after their trigger, uniformly: mean 1.5; the first attempt is on the opening day
    assert _covers(r.metric("speed.trigger_to_opening_mean_days", "all"), 1.5)
    assert r.metric("speed.opening_to_first_attempt_mean_days", "all")["estimate"] == 0.0


def test_speed_effect_by_days_to_contact_recovers_its_truth(prog):
    ds, truth, sample = prog
    r = _run("speed", ds, sample)
    per_day = truth["realised"]["programme"]["by_days_to_contact"]
    edges = [0, *r.settings["bands"], 10**6]
    done = 0
    for lab, lo, hi in zip(r.settings["band_labels"], edges[:-1], edges[1:]):
        row = r.metric("speed.effect_by_days_to_contact", lab)
        a = sum(v["actual"] for d, v in per_day.items() if lo <= int(d) < hi)
        b = sum(v["base"] for d, v in per_day.items() if lo <= int(d) < hi)
        if pd.isna(row["estimate"]) or b == 0:
            continue
        assert _covers(row, a / b - 1), (lab, row[["estimate", "ci_low", "ci_high"]].tolist(), a / b - 1)
        done += 1
    assert done >= 3


# ----------------------------------------------------------------------------- who benefits

def test_heterogeneity_recovers_the_effect_by_baseline_spending(prog):
    ds, truth, sample = prog
    tert = truth["realised"]["programme"]["by_spend_tertile"]
    r = _run("heterogeneity", ds, sample, spend_cuts=tuple(tert["cuts"]))
    for level, effect in zip(("low", "middle", "high"), tert["effects"]):
        row = r.metric("heterogeneity.change", f"baseline_spend={level}")
        assert _covers(row, effect), (level, row[["estimate", "ci_low", "ci_high"]].tolist(), effect)
    assert "subgroup estimates were made" in r.text


def test_heterogeneity_q_test_by_hand(on_sample):
    ds, sample = on_sample
    r = _run("heterogeneity", ds, sample)
    s = r.summary
    for dim in r.settings["by"]:
        sub = s[(s["metric"] == "heterogeneity.change") & (s["by"] == dim) & s["estimate"].notna()]
        q = r.metric("heterogeneity.q_test", dim)
        if len(sub) < 2:
            assert pd.isna(q["estimate"])
            continue
        y, w = np.log1p(sub["estimate"].to_numpy()), 1 / sub["se"].to_numpy() ** 2
        Q = float(np.sum(w * (y - np.sum(w * y) / w.sum()) ** 2))
        assert q["q"] == pytest.approx(Q, rel=1e-9)
        assert q["estimate"] == pytest.approx(stats.chi2.sf(Q, len(sub) - 1), rel=1e-9)
    assert r.settings["n_comparisons"] == int(s[(s["metric"] == "heterogeneity.change")]["estimate"].notna().sum())


def test_heterogeneity_overall_is_the_headline_and_reuses_the_subgroup_rule(on_sample):
    ds, sample = on_sample
    r = _run("heterogeneity", ds, sample)
    sp = ce.spending_effect(ds, sample, placebo=False, subgroups=True, event_weeks=None)
    head = sp.metric("spending.matched_change", "difference", window=84)
    assert r.metric("heterogeneity.overall_change", "all")["estimate"] == pytest.approx(head["estimate"], rel=1e-12)
    # the dimensions the spending module has give the spending module's numbers
    for _, row in sp.summary[sp.summary["metric"] == "spending.subgroup_change"].iterrows():
        mine = r.metric("heterogeneity.change", row["group"])
        assert mine["estimate"] == pytest.approx(row["estimate"], rel=1e-12)
        assert mine["ci_high"] == pytest.approx(row["ci_high"], rel=1e-12)


# ----------------------------------------------------------------------------- does it last

def test_durability_windows_equal_the_spending_rows(on_sample):
    ds, sample = on_sample
    r = _run("durability", ds, sample)
    sp = ce.spending_effect(ds, sample, placebo=False, subgroups=False, event_weeks=None)
    for w in (28, 84, 365):
        a = r.metric("durability.matched_change", "difference", window=w)
        b = sp.metric("spending.matched_change", "difference", window=w)
        for col in ("estimate", "se", "ci_low", "ci_high"):
            assert a[col] == pytest.approx(b[col], rel=1e-12)
        assert int(a["n"]) == int(b["n"])
    common = r.summary[r.summary["metric"] == "durability.matched_change_common"]
    assert (common["n"] == common["n"].iloc[0]).all()


def test_durability_recovers_a_fading_effect(fading):
    ds, truth, sample = fading
    r = _run("durability", ds, sample)
    real = truth["realised"]["realised_att_theoretical_loss"]
    for w in (28, 84, 365):
        assert _covers(r.metric("durability.matched_change", "difference", window=w), real[f"post_{w}d"]), w
    assert real["post_84d"] < real["post_365d"] < 0          # the truth fades ...
    e84 = r.metric("durability.matched_change", "difference", window=84)["estimate"]
    e365 = r.metric("durability.matched_change", "difference", window=365)["estimate"]
    assert e84 < e365                                         # ... and so does the estimate


# ----------------------------------------------------------------------------- callers

def _truth_by_pseudonym(r, by, key) -> pd.Series:
    return pd.Series({pseud: by[agent][key] for agent, pseud in r.details["pseudonyms"].items()}).sort_index()


def test_callers_recover_their_effects_on_answering_and_outcomes(prog):
    """Each caller's effect on the log-odds (against the average caller) is covered by its interval."""
    ds, truth, sample = prog
    r = _run("callers", ds, sample)
    by = truth["realised"]["programme"]["by_caller"]
    s = r.summary
    for metric, key, need in (("callers.answer_log_odds", "answer_log_odds", 11),
                              ("callers.action_log_odds", "action_log_odds", 10)):
        d = s[s["metric"] == metric].set_index("group").sort_index()
        t = _truth_by_pseudonym(r, by, key)
        assert sum(_covers(d.loc[g], t[g]) for g in d.index) >= need, metric
    ans = s[s["metric"] == "callers.answer_log_odds"].set_index("group")["estimate"].sort_index()
    assert np.corrcoef(ans, _truth_by_pseudonym(r, by, "answer_log_odds"))[0, 1] > 0.9
    for measure, key in (("answer", "answer_log_odds"), ("action", "action_log_odds")):
        true_sd = float(np.std([c[key] for c in by.values()]))
        assert _covers(r.metric(f"callers.{measure}_sd", "between_callers"), true_sd), measure


def test_callers_spending_pooling_beats_the_callers_own_estimates(prog):
    """A caller's own matched estimate rests on a few hundred customers; pooled, it is closer to the truth.

    The callers' estimates share the error of the overall effect (the pooled mean), so their intervals
    miss together when it misses: coverage is checked loosely, the gain from pooling strictly.
    """
    ds, truth, sample = prog
    r = _run("callers", ds, sample)
    by = truth["realised"]["programme"]["by_caller"]
    s = r.summary
    t = np.log1p(_truth_by_pseudonym(r, by, "realised_effect"))
    pooled = s[s["metric"] == "callers.spending_change"].set_index("group").sort_index()
    own = s[s["metric"] == "callers.spending_change_own"].set_index("group").sort_index()
    err_pooled = float(np.mean((np.log1p(pooled["estimate"]) - t) ** 2))
    err_own = float(np.mean((np.log1p(own["estimate"]) - t) ** 2))
    assert err_pooled < err_own / 2, (err_pooled, err_own)
    assert sum(_covers(pooled.loc[g], np.expm1(t[g])) for g in pooled.index) >= 9
    true_sd = float(np.std([c["stake_log_multiplier"] for c in by.values()]))
    assert _covers(r.metric("callers.spending_sd", "between_callers"), true_sd)


def test_callers_show_pseudonyms_only_and_stay_out_of_evaluate(prog):
    ds, _, sample = prog
    r = _run("callers", ds, sample)
    agents = set(ds.table("call_attempts")["agent_id"].dropna())
    text = r.to_json() + r.get_plot_data("caterpillar").to_csv()
    assert not set(re.findall(r"[A-Za-z0-9_]+", text)) & agents
    assert set(r.summary["group"]) <= {*r.details["pseudonyms"].values(), "between_callers"}
    for name in NAMES:
        assert ESTIMATORS[name].in_evaluate is False      # the report runs them; a bundle never sees callers


def test_pooling_shrinks_small_groups_more():
    rng = np.random.default_rng(3)
    n_per = np.array([12, 40, 200, 400] * 3)
    g = np.repeat(np.arange(len(n_per)), n_per)
    u = rng.normal(0, 0.5, len(n_per))
    X = np.ones((len(g), 1))
    y = (rng.random(len(g)) < 1 / (1 + np.exp(-(-0.5 + u[g])))).astype(float)
    fit = pooling.glmm_logit(y, X, g)
    raw = np.array([np.log((y[g == j].sum() + 0.5) / (n_per[j] - y[g == j].sum() + 0.5)) for j in range(len(n_per))])
    raw_dev = np.abs(raw - raw.mean())
    shrink = 1 - np.abs(fit.effect) / np.maximum(raw_dev, 1e-9)
    assert shrink[n_per == 12].mean() > shrink[n_per == 400].mean()
    assert fit.sd[n_per == 12].mean() > fit.sd[n_per == 400].mean()
    z = stats.norm.ppf(0.975)
    assert np.sum(np.abs(fit.effect - (u - u.mean())) <= z * fit.sd) >= 10


def test_normal_pooling_at_a_known_tau():
    """With equal standard errors every estimate is pulled towards the mean by the same factor."""
    y, se = np.array([-0.4, -0.1, 0.2, 0.5]), np.full(4, 0.2)
    r = pooling.normal_pooling(y, se)
    ratio = (r.effect - y.mean()) / (y - y.mean())
    assert np.allclose(ratio, ratio[0]) and 0 < ratio[0] < 1
    q = pooling.random_effects(y, se)
    w = 1 / se ** 2
    assert q.q == pytest.approx(float(np.sum(w * (y - y.mean()) ** 2)), rel=1e-12)


# ----------------------------------------------------------------------------- repeat contact

def test_repeat_says_plainly_when_there_is_nothing_to_estimate(on_sample):
    ds, sample = on_sample
    r = _run("repeat", ds, sample)
    row = r.metric("repeat.second_call_change", "difference")
    assert pd.isna(row["estimate"]) and "no customer reached before had a later case" in row["note"]
    assert "cannot be estimated from these data" in r.text
    assert r.metric("repeat.any_new_case_12m", "all_cases")["estimate"] == 0.0   # the sample's one-year rule


def test_repeat_recovers_the_second_call(prog):
    ds, truth, sample = prog
    r = _run("repeat", ds, sample)
    real = truth["realised"]["programme"]["second_call"]["realised_effect"]
    row = r.metric("repeat.second_call_change", "difference")
    assert _covers(row, real), (row[["estimate", "ci_low", "ci_high"]].tolist(), real)
    # another case within a year, counted by hand over the first phone cases followed that long
    cases = ds.table("call_cases")
    phone = cases[cases["channel"] == "phone"].sort_values(["opened_on", "case_id"])
    first = phone.drop_duplicates("customer_id")
    first = first[first["opened_on"] + pd.Timedelta(days=364) <= pd.Timestamp(ds.data_end)]
    later = cases.merge(first[["customer_id", "opened_on"]], on="customer_id", suffixes=("", "_first"))
    d = (later["opened_on"] - later["opened_on_first"]).dt.days
    k = later.loc[(d >= 1) & (d <= 365), "customer_id"].nunique()
    row = r.metric("repeat.any_new_case_12m", "all_cases")
    assert int(row["n"]) == len(first) and row["estimate"] == pytest.approx(k / len(first), abs=1e-12)


# ----------------------------------------------------------------------------- plots

def test_plots_draw_the_plot_data(prog):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from carecall_eval import plotting

    ds, _, sample = prog
    res = {n: _run(n, ds, sample) for n in ("timing", "speed", "heterogeneity", "durability", "callers")}
    ax = plotting.answer_heatmap(res["timing"])
    assert len(ax.get_yticklabels()) == 7
    plotting.sms_timing_plot(res["timing"])
    ax = plotting.speed_plot(res["speed"])
    assert len(ax.get_yticklabels()) == res["speed"].get_plot_data("distribution")["quarter"].nunique()
    ax = plotting.heterogeneity_plot(res["heterogeneity"])
    assert "baseline spend" in [t.get_text() for t in ax.get_yticklabels()]
    plotting.durability_plot(res["durability"])
    ax = plotting.caterpillar_plot(res["callers"], measure="answer")
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(i) for i in range(1, 13)]
    plt.close("all")


def test_repeat_later_cases_equal_those_of_the_whole_cohort(prog):
    """The cohort of later cases is built on the customers with a second case only; its rows are those the
    cohort of every case gives them (build_cohort decides each row from the row's own customer)."""
    from carecall_eval.outcomes.programme.repeat import _CasesOf

    ds, _, sample = prog
    r = _run("repeat", ds, sample)
    design = sample.design.replace(prior_contact_days=1, one_index_per_customer=False, study_start=None,
                                   study_end=None)
    sub = r.details["later_cases"]
    assert len(sub) >= 40
    full = ce.build_cohort(ds, design).table
    mine = ce.build_cohort(_CasesOf(ds, sub["customer_id"].unique()), design).table
    whole = full[full["customer_id"].isin(sub["customer_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine.reset_index(drop=True), whole, check_exact=True)
