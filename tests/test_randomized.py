"""Randomized studies: ITT by arm, the effect of being reached, per protocol, by-arm outcomes and the CONSORT flow.

Known truth: the simulator's matched-set randomized study (``trial="matched-sets"``) records the realised ITT
of each arm and the effect of being reached among the call arm's compliers, from its potential outcomes.
The array estimators are checked against hand computations and Fieller's interval against a brute-force
search of its defining inequality.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import carecall_eval as ce
from carecall_eval._validation import z_quantile
from carecall_eval.errors import InputError, NotAvailableError
from carecall_eval.outcomes.randomized import randomized_effects
from carecall_eval.trials import estimators as est

#: a small study that is still large enough to test: 4,000 customers, the top 30% of the eligible
TRIAL = {"customers": 4000, "seed": 11, "trial": "matched-sets", "trial_share": 0.3}


@pytest.fixture(scope="module")
def trial(simulated):
    path, truth = simulated(**TRIAL)
    ds = ce.load(path)
    yield ds, truth["realised"]["trial"], randomized_effects(ds)
    ds.close()


def _row(res, metric, group, window):
    return res.metric(metric, group, window=window)


@pytest.mark.parametrize("window", [84, 365])
def test_itt_and_effect_of_being_reached_cover_the_truth(trial, window):
    _, truth, res = trial
    for arm in ("call", "letter"):
        r = _row(res, "spending.rct_itt_change", arm, window)
        true = truth["itt"][arm][f"{window}d"]
        assert r["ci_low"] <= true <= r["ci_high"], (arm, window, r[["estimate", "ci_low", "ci_high"]], true)
    c = _row(res, "spending.rct_cace_change", "call", window)
    true = truth["effect_of_being_reached"][f"{window}d"]
    assert c["ci_low"] <= true <= c["ci_high"], (window, c[["estimate", "ci_low", "ci_high"]], true)
    # the complier effect is the ITT scaled up by reach (here about 45%): larger in size, same sign
    itt = _row(res, "spending.rct_itt_change", "call", window)
    assert abs(c["estimate"]) > abs(itt["estimate"]) and np.sign(c["estimate"]) == np.sign(itt["estimate"])


def test_the_study_is_as_simulated(trial):
    ds, truth, res = trial
    n = res.summary[res.summary["metric"] == "trial.n_allocated"].set_index("group")["n"].to_dict()
    assert n == {a: d["n"] for a, d in truth["arms"].items()}
    assert res.metric("trial.reach", "call")["estimate"] == pytest.approx(truth["reach_call_arm"], abs=1e-12)
    assert res.settings["blocks"] == "cluster" and res.settings["cluster"] == "block"
    # matched sets of three: one member of each arm
    t = res.details["table"]
    assert (t.groupby("block")["group"].nunique() == t.groupby("block").size()).all()
    assert set(res.summary["window"].dropna().astype(int)) == {28, 84, 365}


def test_per_protocol_is_labelled_not_randomized_everywhere(trial):
    _, _, res = trial
    pp = res.summary[res.summary["metric"] == "spending.rct_pp_change"]
    assert len(pp) == 3
    assert pp["method"].str.contains("not randomized").all() and pp["note"].eq("not randomized").all()
    assert "Per protocol (not randomized" in res.text
    from carecall_eval.narrative.randomized import PER_PROTOCOL_LABEL

    assert "not randomized" in PER_PROTOCOL_LABEL


@pytest.mark.parametrize("level", [0.5, 0.9, 0.99])
def test_intervals_follow_the_level(trial, level):
    ds, _, res95 = trial
    res = randomized_effects(ds, level=level, outcomes=False)
    z = z_quantile(level)
    for w in (28, 84, 365):
        itt = _row(res, "spending.rct_itt_change", "call", w)
        lr = math.log1p(itt["estimate"])
        assert itt["ci_low"] == pytest.approx(math.expm1(lr - z * itt["se"]), rel=1e-12)
        assert itt["ci_high"] == pytest.approx(math.expm1(lr + z * itt["se"]), rel=1e-12)
        ref = _row(res95, "spending.rct_itt_change", "call", w)
        assert itt["estimate"] == pytest.approx(ref["estimate"], rel=1e-12) and itt["se"] == pytest.approx(ref["se"])
        # Fieller's bounds are exactly where the defining inequality holds with equality, at this level
        f = res.details["fieller"][w]
        c = _row(res, "spending.rct_cace_change", "call", w)
        for r in (1 + c["ci_low"], 1 + c["ci_high"]):
            lhs = (f["a"] - r * f["b"]) ** 2
            rhs = z * z * (f["vaa"] - 2 * r * f["vab"] + r * r * f["vbb"])
            assert lhs == pytest.approx(rhs, rel=1e-9)
        wider = (c["ci_high"] - c["ci_low"]) < (_row(res95, "spending.rct_cace_change", "call", w)["ci_high"]
                                                 - _row(res95, "spending.rct_cace_change", "call", w)["ci_low"])
        assert wider == (level < 0.95)
    assert "95%" not in res.text


def test_by_arm_outcomes_are_share_differences(trial):
    _, _, res = trial
    s = res.summary
    for metric in ("retention.rct_account_12m", "retention.rct_active_12m", "actions.rct_any_28d",
                   "actions.rct_limit_set_28d"):
        rows = s[s["metric"] == metric].set_index("group")
        assert {"call", "letter", "control", "call-control", "letter-control"} <= set(rows.index), metric
        for arm in ("call", "letter"):
            assert rows.loc[f"{arm}-control", "estimate"] == pytest.approx(
                rows.loc[arm, "estimate"] - rows.loc["control", "estimate"], abs=1e-12)
            assert rows.loc[f"{arm}-control", "se"] > 0
    # the call arm takes more actions within 28 days (pauses and self-exclusions agreed on a call)
    a = s[(s["metric"] == "actions.rct_any_28d") & (s["group"] == "call-control")].iloc[0]
    assert a["estimate"] > 0


def test_consort_flow_and_figure(trial):
    import matplotlib

    matplotlib.use("Agg")
    from carecall_eval.plotting import consort_plot

    _, truth, res = trial
    c = res.get_plot_data("consort")
    alloc = c[c["stage"] == "allocated"].set_index("arm")["n"].to_dict()
    assert alloc == {a: d["n"] for a, d in truth["arms"].items()}
    call = c[c["arm"] == "call"].set_index("stage")["n"]
    assert call["reached"] + call["not reached"] == alloc["call"] - call["excluded"]
    ax = consort_plot(res)
    texts = [t.get_text() for t in ax.texts]
    assert f"Randomized: {sum(alloc.values()):,}" in texts
    assert any("12 months" in t for t in texts)


def test_blocks_modes(trial):
    ds, _, res = trial
    none = randomized_effects(ds, blocks="none", outcomes=False)
    assert none.settings["cluster"] == "customer_id"
    with pytest.raises(InputError, match="matched sets are analysed with blocks='cluster'"):
        randomized_effects(ds, blocks="fixed", outcomes=False)
    a, b = _row(res, "spending.rct_itt_change", "call", 84), _row(none, "spending.rct_itt_change", "call", 84)
    assert a["estimate"] == pytest.approx(b["estimate"], rel=1e-12)   # same point estimate, other clusters
    assert a["se"] != pytest.approx(b["se"], rel=1e-6)
    assert "matched set" in a["method"] and "by customer" in b["method"]


def test_simple_rct_without_blocks(sample):
    ds, truth = sample
    res = randomized_effects(ds, outcomes=False)
    assert res.settings["blocks"] == "none"
    r = res.metric("spending.rct_itt_change", "call", window=84)
    assert r["ci_low"] <= truth["rct"]["call"]["realised_effect_post_84d"] <= r["ci_high"]


def test_wrong_samples_and_missing_arms(sample, simulated):
    ds, _ = sample
    with pytest.raises(TypeError, match="randomized design"):
        randomized_effects(ds, ce.build_cohort(ds))
    path, _ = simulated(customers=600, seed=3, rct_end_day=100)   # no randomized period: no arms
    d2 = ce.load(path)
    with pytest.raises(NotAvailableError, match="no control arm"):
        randomized_effects(d2)
    d2.close()


# ----------------------------------------------------------------------------- the array estimators
def _toy(seed=0, n=300):
    rng = np.random.default_rng(seed)
    z = rng.permutation(np.repeat([0, 1, 2], n // 3))
    x = rng.normal(size=n)
    reached = (z == 1) & (rng.random(n) < 0.5)
    y = rng.gamma(1.0, np.exp(3 + 0.5 * x)) * np.where(reached, 0.8, 1.0)
    return y, x[:, None], z, reached


def test_itt_without_covariates_is_the_ratio_of_means_with_the_textbook_se():
    y, _, z, _ = _toy()
    X = np.zeros((len(y), 0))
    r = est.itt_ratio(y, X, z == 1, z == 0, np.arange(len(y)), 0.95)
    m1, m0 = y[z == 1].mean(), y[z == 0].mean()
    assert r["estimate"] == pytest.approx(m1 / m0 - 1, rel=1e-12)
    n1, n0, n = (z == 1).sum(), (z == 0).sum(), len(y)
    # HC: var(log m1) = sum((y - m1)^2) / (n1 m1)^2, clusters of one with the factor n / (n - 1)
    v = (((y[z == 1] - m1) ** 2).sum() / (n1 * m1) ** 2 + ((y[z == 0] - m0) ** 2).sum() / (n0 * m0) ** 2) * n / (n - 1)
    assert r["se"] == pytest.approx(math.sqrt(v), rel=1e-10)


def test_complier_ratio_without_covariates_is_the_wald_ratio():
    y, _, z, reached = _toy(1)
    X = np.zeros((len(y), 0))
    r = est.complier_ratio(y, X, z == 1, z == 0, reached, np.arange(len(y)), 0.95)
    m1, m0 = y[z == 1].mean(), y[z == 0].mean()
    nu = (y * ~reached)[z == 1].mean()
    assert r["estimate"] == pytest.approx((m1 - nu) / (m0 - nu) - 1, rel=1e-12)
    # the same as the Wald estimator on the difference scale divided by the compliers' control mean
    pi = reached[z == 1].mean()
    assert r["reach"] == pytest.approx(pi)
    wald = (m1 - m0) / pi
    assert r["estimate"] == pytest.approx(wald / ((m0 - nu) / pi), rel=1e-12)
    with pytest.raises(ValueError, match="one-sided"):
        est.complier_ratio(y, X, z == 1, z == 0, reached | (z == 0), np.arange(len(y)), 0.95)


def test_standardized_mean_with_covariates_recovers_the_marginal_mean():
    """With a misspecified working model, the standardized arm mean is still the marginal mean (randomization)."""
    rng = np.random.default_rng(5)
    n = 200_000
    x = rng.normal(size=n)
    y = rng.poisson(np.exp(1 + 0.8 * x + 0.15 * x ** 2))          # the working model has no x^2
    arm = rng.random(n) < 0.5
    s = est.standardized_mean(y, x[:, None], arm)
    truth = math.exp(1 + 0.8 ** 2 / (2 * 0.7)) / math.sqrt(0.7)    # E exp(1 + 0.8x + 0.15x^2), x ~ N(0, 1)
    assert s.value == pytest.approx(truth, rel=0.02)
    assert abs(s.phi.sum()) < 1e-6 * s.value


def test_fieller_against_brute_force():
    cases = [(2.0, 4.0, 0.01, 0.04, 0.0), (1.0, 1.2, 0.05, 0.08, 0.03), (0.5, 0.9, 0.02, 0.05, -0.01)]
    grid = np.linspace(-1, 3, 400_001)
    for a, b, vaa, vbb, vab in cases:
        lo, hi = est.fieller(a, b, vaa, vbb, vab, 0.95)
        z2 = z_quantile(0.95) ** 2
        inside = grid[(a - grid * b) ** 2 <= z2 * (vaa - 2 * grid * vab + grid ** 2 * vbb)]
        assert lo == pytest.approx(inside.min(), abs=2e-5) and hi == pytest.approx(inside.max(), abs=2e-5)
    assert all(math.isnan(v) for v in est.fieller(1.0, 0.1, 0.1, 0.1, 0.0, 0.95))   # unbounded set


def test_share_difference_clusters():
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0], float)
    arm = np.array([1, 0, 1, 0, 1, 0, 1, 0], bool)
    pairs = np.repeat(np.arange(4), 2)
    r = est.share_difference(y, arm, ~arm, pairs, 0.95)
    assert r["estimate"] == pytest.approx(0.75 - 0.25)
    # by hand: contributions (y - p)/n per arm, summed within pairs, squared, times G/(G-1)
    phi = np.where(arm, (y - 0.75) / 4, -(y - 0.25) / 4)
    s = np.bincount(pairs, phi)
    assert r["se"] == pytest.approx(math.sqrt((s ** 2).sum() * 4 / 3), rel=1e-12)


def test_contract_block_column(tmp_path, trial):
    """Data with the optional block column are valid; a block on a case without an arm is not."""
    from carecall_eval.contract import validate

    ds, _, _ = trial
    assert "block" in ds.table("call_cases").columns
    assert "block" not in ce.load("data/sample").table("call_cases").columns     # and data/sample stays valid
    src = ds.path
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    cases = pd.read_parquet(bad / "call_cases.parquet")
    i = cases.index[cases["arm"].isna()][0]
    cases.loc[i, "block"] = "S99999"
    cases.to_parquet(bad / "call_cases.parquet", index=False)
    rep = validate(bad)
    assert not rep.ok
    p = rep.problems
    assert list(p[["table", "column", "rule"]].itertuples(index=False, name=None)) == [
        ("call_cases", "block", "block_needs_arm")]
