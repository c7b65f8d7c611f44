"""carecall_eval.matching against R's MatchIt 4.5.1 (fixtures in tests/results/).

The data (``matchit_data.csv``, 300 units, 89 treated) come from
``tests/results/make_matchit_data.py``; the fixtures from
``Rscript tests/results/matchit_reference.R``, whose header explains how each
case was produced.  The R call of every case is in ``matchit_cases.csv`` and
in the test ids below.  In short::

    d <- read.csv("tests/results/matchit_data.csv"); rownames(d) <- d$id
    f5 <- treat ~ age + income + tenure + married + region
    matchit(f5, data = d, method = "nearest", distance = "glm", caliper = 0.2)   # etc.

Pairs of the 1-D nearest-neighbour cases come from MatchIt's general matcher
``nn_matchC`` run with matchit()'s own order, caliper and discards, because
MatchIt 4.5.1's fast 1-D matcher ignores calipers and picks the lower
neighbour on this platform (MatchIt issue #163, fixed in 4.5.4).

Tolerances: R's ``glm`` stops when the relative change in deviance is below
1e-8, after which Newton's quadratic convergence leaves scores within ~1e-9
of the MLE, and the CSVs keep 15 significant digits; so propensity scores
are compared to 1e-8 (logits to 1e-7), coefficients to a relative 1e-6.
Pairs, subclasses and counts must be identical.  Balance statistics are
computed from the same pairs and must agree to a relative 1e-7.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from carecall_eval.matching import match

RESULTS = Path(__file__).parent / "results"
F5 = ["age", "income", "tenure", "married", "region"]

# case -> (covariates, keyword arguments of match())
CASES = {
    "nearest": (F5, {}),
    "caliper": (F5, {"caliper": 0.2}),
    "ratio2": (F5, {"ratio": 2}),
    "ratio3_cal": (F5, {"ratio": 3, "caliper": 0.1}),
    "replace": (F5, {"replace": True}),
    "replace_ratio2": (F5, {"replace": True, "ratio": 2}),
    "replace_cal": (F5, {"replace": True, "caliper": 0.05}),
    "logit_caliper": (F5, {"distance": "logit", "caliper": 0.25}),
    "exact_trigger": (F5 + ["trigger"], {"exact": "trigger", "caliper": 0.2}),
    "smallest": (F5, {"order": "smallest"}),
    "data_order": (F5, {"order": "data", "caliper": 0.1}),
    "discard_both": (F5, {"discard": "both", "caliper": 0.2}),
    "discard_ctrl": (F5, {"discard": "control"}),
    "mahvars": (F5, {"mahalanobis": ["age", "income", "tenure"], "caliper": 0.25}),
    "cem": (["age", "married", "region"], {"method": "cem"}),
}
NEAREST = [c for c in CASES if c != "cem"]


def _read(name):
    return pd.read_csv(RESULTS / name)


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(RESULTS / "matchit_data.csv", index_col="id")


@pytest.fixture(scope="module")
def ref():
    return {n: _read(f"matchit_{n}.csv") for n in ("cases", "pairs", "units", "balance", "counts", "coef")}


@pytest.fixture(scope="module")
def results(data):
    import warnings

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. "not all treated units get 3 matches"
        for case, (covs, kw) in CASES.items():
            out[case] = match(data, "treat", covs, **kw)
    return out


def r_name(term: str) -> str:
    """MatchIt's name for one of our terms: region[south] -> regionsouth."""
    return term.replace("[", "").replace("]", "")


def test_fixture_cases_are_the_ones_tested(ref):
    assert list(ref["cases"]["case"]) == list(CASES)


@pytest.mark.parametrize("case", NEAREST)
def test_pairs_against_R(case, results, ref):
    """Identical (treated, round, control) triples: no ties occur in these data."""
    mine = results[case].pairs()
    r = ref["pairs"][ref["pairs"].case == case]
    assert set(zip(mine.treated, mine["round"], mine.control)) == set(zip(r.treated_id, r.slot, r.control_id))


@pytest.mark.parametrize("case", list(CASES))
def test_weights_subclass_and_discards_against_R(case, results, ref):
    res = results[case]
    u = ref["units"][ref["units"].case == case].set_index("id")
    np.testing.assert_allclose(res.weights.loc[u.index], u.weights, rtol=1e-12, atol=1e-12)
    assert (res.discarded.loc[u.index].to_numpy() == u.discarded.to_numpy()).all()
    mine = res.subclass.loc[u.index]
    if u.subclass.isna().all():
        assert mine.isna().all()
    else:
        # same sets; MatchIt numbers them in the lexical order of row names
        part = lambda s: {frozenset(g.index) for _, g in s.dropna().groupby(s.dropna())}  # noqa: E731
        assert part(mine) == part(u.subclass)


@pytest.mark.parametrize("case", NEAREST)
def test_propensity_scores_against_R(case, results, ref):
    res = results[case]
    u = ref["units"][ref["units"].case == case].set_index("id")
    tol = 1e-7 if CASES[case][1].get("distance") == "logit" else 1e-8
    np.testing.assert_allclose(res.distance.loc[u.index], u.distance, rtol=0, atol=tol)
    cf = ref["coef"][ref["coef"].case == case].set_index("term")["estimate"]
    mine = res.coef.rename(lambda t: "(Intercept)" if t == "Intercept" else r_name(t))
    np.testing.assert_allclose(mine.loc[cf.index], cf, rtol=1e-6)


@pytest.mark.parametrize("case", [c for c in NEAREST if c in ("caliper", "ratio3_cal", "replace_cal",
                                                              "logit_caliper", "exact_trigger", "data_order",
                                                              "discard_both", "mahvars")])
def test_caliper_width_against_R(case, results, ref):
    """std caliper = caliper x SD (n - 1) of the distance over all non-discarded units."""
    r = ref["cases"].set_index("case").loc[case, "caliper"]
    assert results[case].settings["caliper_distance_units"] == pytest.approx(r, rel=1e-7)


@pytest.mark.parametrize("case", list(CASES))
def test_counts_against_R(case, results, ref):
    res = results[case]
    r = ref["counts"][ref["counts"].case == case].set_index("row")
    rows = (("all", "All"), ("matched", "Matched"), ("unmatched", "Unmatched"), ("discarded", "Discarded"))
    for ours, theirs in rows:
        assert res.counts.loc[ours, "control"] == r.loc[theirs, "control"]
        assert res.counts.loc[ours, "treated"] == r.loc[theirs, "treated"]
    np.testing.assert_allclose(res.ess.loc["matched"].to_numpy(float),
                               r.loc["Matched (ESS)", ["control", "treated"]].astype(float), rtol=1e-10)


@pytest.mark.parametrize("case", list(CASES))
def test_balance_table_against_R(case, results, ref):
    """summary.matchit(): means, SMD (treated SD), variance ratio, eCDF mean/max, before and after."""
    tab = results[case].balance().rename(index=r_name)
    r = ref["balance"][ref["balance"].case == case]
    stats = ["mean_treated", "mean_control", "smd", "var_ratio", "ecdf_mean", "ecdf_max"]
    for sample, suffix in (("all", "before"), ("matched", "after")):
        theirs = r[r["sample"] == sample].set_index("term")[stats]
        assert list(theirs.index) == list(tab.index)
        ours = tab[[f"{s}_{suffix}" for s in stats]].set_axis(stats, axis=1)
        np.testing.assert_allclose(ours.to_numpy(float), theirs.to_numpy(float), rtol=1e-7, atol=1e-10)
