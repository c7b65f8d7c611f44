"""Tests for carecall_eval.matching: hand-built cases with known answers,
a brute-force check of the greedy matcher, validation, and the result object.

MatchIt reference fixtures are checked in test_matching_against_R.py.
"""
from __future__ import annotations

import html
import json
import time

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from carecall_eval import SUMMARY_COLUMNS, Result
from carecall_eval.errors import CarecallWarning, ConvergenceWarning, DataWarning, SmallSampleWarning
from carecall_eval.matching import (
    att_ipw_weights,
    balance_table,
    cem_subclass,
    coarsen,
    effective_sample_size,
    greedy_nearest,
    match,
)
from carecall_eval.plotting import love_plot


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def units(treated, controls):
    """Distances and treatment flags with treated rows first."""
    d = np.array(list(treated) + list(controls), dtype=float)
    t = np.array([True] * len(treated) + [False] * len(controls))
    return d, t


def matched_values(d, t, mm):
    """{treated distance: [control distances by round]} from a match matrix."""
    t_rows = np.flatnonzero(t)
    return {float(d[r]): [float(d[c]) for c in row if c >= 0] for r, row in zip(t_rows, mm)}


def frame_1d(treated_x, control_x):
    """A DataFrame whose logit propensity score is linear in x (increasing when the
    treated units have the larger x, which the tests that depend on it check)."""
    x = list(treated_x) + list(control_x)
    return pd.DataFrame({"x": x, "treat": [1] * len(treated_x) + [0] * len(control_x)},
                        index=[f"u{i}" for i in range(len(x))])


def brute_force_greedy(d, t, *, ratio=1, replace=False, caliper=np.inf, order="largest", exact=None):
    """O(n_t x n_c) greedy matching with the documented tie rule (reference for tests).

    Units are sorted by (stratum, distance, row).  A treated unit takes the
    free control nearest in distance; on equal distance a control sorted
    before it ("left") beats one after it, the left one nearest in the sort
    order first, then the right one nearest in the sort order.
    """
    n = len(d)
    ex = np.zeros(n, dtype=int) if exact is None else np.asarray(exact)
    sort_pos = np.empty(n, dtype=int)
    sort_pos[np.lexsort((np.arange(n), d, ex))] = np.arange(n)
    t_rows = np.flatnonzero(t)
    c_rows = np.flatnonzero(~t)
    dt = d[t_rows]
    seq = {"largest": np.argsort(-dt, kind="stable"), "smallest": np.argsort(dt, kind="stable"),
           "data": np.arange(len(t_rows))}[order]
    out = np.full((len(t_rows), ratio), -1)
    used = set()
    for r in range(ratio):
        for i in seq:
            row = t_rows[i]
            best = None
            for c in c_rows:
                if ex[c] != ex[row] or (not replace and c in used) or c in out[i]:
                    continue
                dist = abs(d[c] - d[row])
                if dist > caliper:
                    continue
                left = sort_pos[c] < sort_pos[row]
                key = (dist, 0, -sort_pos[c]) if left else (dist, 1, sort_pos[c])
                if best is None or key < best[0]:
                    best = (key, c)
            if best is not None:
                out[i, r] = best[1]
                used.add(best[1])
    return out


# ---------------------------------------------------------------------------
# greedy matcher: exact answers on hand-built cases
# ---------------------------------------------------------------------------
def test_caliper_drops_exactly_the_unit_without_a_near_control():
    d, t = units([1.0, 2.25, 3.0], [1.05, 2.3, 9.0])
    no_cal = matched_values(d, t, greedy_nearest(d, t))
    # largest first: 3.0 takes 2.3, then 2.25 takes 1.05, and 1.0 is left with 9.0
    assert no_cal == {1.0: [9.0], 2.25: [1.05], 3.0: [2.3]}
    cal = matched_values(d, t, greedy_nearest(d, t, caliper=0.2))
    # within 0.2: 3.0 has no control (nearest 2.3 is 0.7 away) and is dropped
    assert cal == {1.0: [1.05], 2.25: [2.3], 3.0: []}


def test_caliper_boundary_is_inclusive():
    d, t = units([1.0], [1.5])
    assert greedy_nearest(d, t, caliper=0.5).tolist() == [[1]]
    assert greedy_nearest(d, t, caliper=0.4999).tolist() == [[-1]]


def test_replacement_reuses_a_control_and_weights_count_reuse():
    df = frame_1d([1.0, 1.1, 3.0], [1.05, 2.9, 8.0])
    res = match(df, "treat", ["x"], distance="logit", replace=True)
    pairs = res.pairs()
    assert pairs.set_index("treated")["control"].to_dict() == {"u0": "u3", "u1": "u3", "u2": "u4"}
    w = res.weights
    # raw control weights 2 (u3, used twice) and 1 (u4), scaled to sum to 2 controls
    assert w["u3"] == pytest.approx(4 / 3) and w["u4"] == pytest.approx(2 / 3) and w["u5"] == 0
    assert (w[["u0", "u1", "u2"]] == 1).all()
    assert res.subclass.isna().all()  # undefined with replacement
    sets = res.matched_data(form="sets")
    assert list(sets.index).count("u3") == 2
    assert len(res.matched_data()) == 5


def test_without_replacement_a_control_is_used_once():
    df = frame_1d([1.0, 1.1, 3.0], [1.05, 2.9, -3.0])
    res = match(df, "treat", ["x"], distance="logit")
    assert res.coef["x"] > 0  # so "largest score first" is "largest x first"
    pairs = res.pairs()
    assert pairs["control"].is_unique
    # largest first: 3.0 -> 2.9, 1.1 -> 1.05, then 1.0 gets the only control left
    assert pairs.set_index("treated")["control"].to_dict() == {"u0": "u5", "u1": "u3", "u2": "u4"}


@pytest.mark.filterwarnings("ignore:fewer eligible control units")
def test_exact_matching_never_crosses_strata():
    # the nearest control of each treated unit is in the other stratum:
    # 1.0 (stratum 0) must skip 1.01 (stratum 1) for 2.01; 2.0 (stratum 1) takes 1.01
    d, t = units([1.0, 2.0], [1.01, 2.01, 5.0, 7.0])
    ex = np.array([0, 1, 1, 0, 0, 1])
    assert matched_values(d, t, greedy_nearest(d, t)) == {1.0: [1.01], 2.0: [2.01]}
    assert matched_values(d, t, greedy_nearest(d, t, exact=ex)) == {1.0: [2.01], 2.0: [1.01]}
    rng = np.random.default_rng(3)
    n = 600
    d = rng.random(n)
    t = rng.random(n) < 0.3
    ex = rng.integers(0, 4, n)
    for kw in ({}, {"replace": True, "ratio": 2}, {"ratio": 3, "caliper": 0.05}):
        mm = greedy_nearest(d, t, exact=ex, **kw)
        t_rows = np.flatnonzero(t)
        for s in range(mm.shape[1]):
            ok = mm[:, s] >= 0
            assert (ex[mm[ok, s]] == ex[t_rows[ok]]).all()


def test_exact_through_match_keeps_strata():
    rng = np.random.default_rng(5)
    n = 400
    df = pd.DataFrame({"x": rng.normal(size=n), "trigger": rng.choice(["loss", "time", "deposit"], n)})
    df["treat"] = (rng.random(n) < 1 / (1 + np.exp(-(df.x - 1)))).astype(int)
    res = match(df, "treat", ["x", "trigger"], exact="trigger", caliper=0.5)
    p = res.pairs()
    assert (df.loc[p.treated, "trigger"].to_numpy() == df.loc[p.control, "trigger"].to_numpy()).all()


def test_ratio_two_gives_two_controls_each_assigned_in_rounds():
    d, t = units([1.0, 2.0], [0.92, 1.1, 1.95, 2.2, 5.0])
    mm = greedy_nearest(d, t, ratio=2)
    assert matched_values(d, t, mm) == {1.0: [0.92, 1.1], 2.0: [1.95, 2.2]}
    # rounds: every treated unit gets its first control before any gets a second
    d, t = units([1.0, 1.2], [1.1, 1.15, 3.0, 3.1])
    assert matched_values(d, t, greedy_nearest(d, t, ratio=2)) == {1.0: [1.1, 3.1], 1.2: [1.15, 3.0]}
    res = match(frame_1d([1.0, 2.0], [0.92, 1.1, 1.95, 2.2, -2.0]), "treat", ["x"], distance="logit", ratio=2)
    assert res.counts.loc["matched"].to_dict() == {"control": 4, "treated": 2}
    assert (res.matched_data().groupby("subclass").size() == 3).all()
    assert (res.weights[res.weights > 0] == 1).all()


def test_matching_order_changes_the_pairs():
    d, t = units([1.0, 1.2], [1.1, 5.0])
    assert matched_values(d, t, greedy_nearest(d, t, order="largest")) == {1.0: [5.0], 1.2: [1.1]}
    assert matched_values(d, t, greedy_nearest(d, t, order="smallest")) == {1.0: [1.1], 1.2: [5.0]}
    assert matched_values(d, t, greedy_nearest(d, t, order="data")) == {1.0: [1.1], 1.2: [5.0]}
    d2, t2 = units([1.2, 1.0], [1.1, 5.0])
    assert matched_values(d2, t2, greedy_nearest(d2, t2, order="data")) == {1.0: [5.0], 1.2: [1.1]}


def test_random_order_is_reproducible_with_a_seed():
    rng = np.random.default_rng(11)
    d, t = rng.random(300), rng.random(300) < 0.4
    a = greedy_nearest(d, t, order="random", rng=np.random.default_rng(7))
    b = greedy_nearest(d, t, order="random", rng=np.random.default_rng(7))
    assert (a == b).all()


def test_tie_rule_prefers_the_lower_neighbour_then_row_order():
    # equidistant controls below and above: the lower one wins (as MatchIt)
    d, t = units([0.5], [0.75, 0.25])
    assert greedy_nearest(d, t).tolist() == [[2]]
    # identical distances: the control in the earliest row after the treated unit...
    d = np.array([0.5, 0.5, 0.5])
    t = np.array([True, False, False])
    assert greedy_nearest(d, t).tolist() == [[1]]
    # ...but one in an earlier row sorts before it and is its left neighbour
    t = np.array([False, True, False])
    assert greedy_nearest(d, t).tolist() == [[0]]


def test_discard_drops_units_outside_common_support():
    df = frame_1d([1.0, 2.0, 10.0], [0.0, 1.1, 2.1, 3.0])
    res = match(df, "treat", ["x"], distance="logit", discard="treated")
    assert res.coef["x"] > 0
    assert res.discarded[res.discarded].index.tolist() == ["u2"]
    assert res.counts.loc["discarded"].to_dict() == {"control": 0, "treated": 1}
    res = match(df, "treat", ["x"], distance="logit", discard="control")
    assert res.discarded[res.discarded].index.tolist() == ["u3"]
    res = match(df, "treat", ["x"], distance="logit", discard="both")
    assert sorted(res.discarded[res.discarded].index) == ["u2", "u3"]


@pytest.mark.filterwarnings("ignore:fewer eligible control units")
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kw", [
    {}, {"ratio": 2}, {"ratio": 3, "caliper": 0.05}, {"replace": True}, {"replace": True, "ratio": 2},
    {"order": "smallest", "caliper": 0.02}, {"order": "data"}, {"exact": True, "ratio": 2},
])
def test_greedy_equals_brute_force(seed, kw):
    """The sorted/union-find matcher equals the O(n_t n_c) greedy definition, ties included."""
    rng = np.random.default_rng(seed)
    n = 160
    kw = dict(kw)
    d = np.round(rng.beta(2, 3, n), 2)            # rounding makes many exact ties
    t = rng.random(n) < 0.3
    exact = rng.integers(0, 3, n) if kw.pop("exact", False) else None
    fast = greedy_nearest(d, t, exact=exact, **kw)
    ref = brute_force_greedy(d, t, exact=exact, caliper=kw.pop("caliper", np.inf), **kw)
    assert (fast == ref).all()


def test_results_do_not_depend_on_row_order():
    rng = np.random.default_rng(21)
    n = 500
    df = pd.DataFrame({"age": rng.normal(45, 12, n), "loss": rng.gamma(2, 100, n),
                       "trigger": rng.choice(["loss", "time"], n)}, index=[f"c{i}" for i in range(n)])
    df["treat"] = rng.random(n) < 1 / (1 + np.exp(-(-1.5 + 0.03 * (df.age - 45) + 0.003 * (df.loss - 200))))
    perm = df.sample(frac=1.0, random_state=4)
    for kw in ({"caliper": 0.2}, {"ratio": 2, "exact": "trigger"}, {"replace": True, "ratio": 2}):
        a = match(df, "treat", ["age", "loss", "trigger"], **kw)
        b = match(perm, "treat", ["age", "loss", "trigger"], **kw)
        pa = set(zip(a.pairs().treated, a.pairs()["round"], a.pairs().control))
        pb = set(zip(b.pairs().treated, b.pairs()["round"], b.pairs().control))
        assert pa == pb
        pd.testing.assert_series_equal(a.weights.sort_index(), b.weights.sort_index(), rtol=1e-12)


def test_large_problem_is_not_quadratic():
    """50k treated x 1M controls: a treated x control comparison would need 5e10 steps."""
    rng = np.random.default_rng(0)
    n1, n0 = 50_000, 1_000_000
    d = np.concatenate([rng.beta(3, 2, n1), rng.beta(2, 3, n0)])
    t = np.zeros(n1 + n0, dtype=bool)
    t[:n1] = True
    start = time.perf_counter()
    mm = greedy_nearest(d, t, caliper=0.01)
    elapsed = time.perf_counter() - start
    assert (mm[:, 0] >= 0).mean() > 0.99
    assert len(np.unique(mm[mm >= 0])) == (mm >= 0).sum()
    assert elapsed < 20, f"greedy matching took {elapsed:.1f} s"


# ---------------------------------------------------------------------------
# inverse-probability weights and CEM
# ---------------------------------------------------------------------------
def test_ipw_weights_are_odds_normalised():
    ps = np.array([0.6, 0.5, 0.2, 0.5, 0.8])
    t = np.array([True, True, False, False, False])
    w, cap = att_ipw_weights(ps, t)
    odds = np.array([0.25, 1.0, 4.0])
    assert cap is None
    np.testing.assert_allclose(w, [1, 1, *(odds * 3 / odds.sum())], rtol=1e-14)
    w, cap = att_ipw_weights(ps, t, trim=0.5)  # cap at the median control odds (1.0)
    assert cap == 1.0
    np.testing.assert_allclose(w[2:], np.array([0.25, 1.0, 1.0]) * 3 / 2.25, rtol=1e-14)


def test_ipw_through_match_uses_the_fitted_scores():
    rng = np.random.default_rng(8)
    n = 300
    df = pd.DataFrame({"x": rng.normal(size=n)})
    df["treat"] = rng.random(n) < 1 / (1 + np.exp(-(df.x - 0.5)))
    res = match(df, "treat", ["x"], method="ipw")
    ps = res.propensity.ps
    c = ~df.treat.to_numpy()
    odds = ps[c] / (1 - ps[c])
    np.testing.assert_allclose(res.weights[c], odds * c.sum() / odds.sum(), rtol=1e-12)
    assert (res.weights[~c] == 1).all()
    assert res.counts.loc["matched"].sum() == n
    assert res.ess.loc["matched", "control"] == pytest.approx(odds.sum() ** 2 / (odds ** 2).sum())
    assert "effective sample size" in res.text


def test_coarsen_bins():
    x = np.arange(10.0)
    # Sturges: ceil(log2(10) + 1) = 5 equal-width bins on [0, 9]
    assert coarsen(x).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert coarsen(x, [2.5, 6]).tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 3]
    assert coarsen(x, 0).tolist() == list(range(10))
    assert coarsen(x, "q2").tolist() == [1] * 5 + [2] * 5
    with pytest.raises(ValueError, match="cutpoints"):
        coarsen(x, "sturge")


def test_cem_on_known_strata():
    df = pd.DataFrame({
        "x": [1, 2, 11, 12, 13, 25, 3, 14, 26],
        "g": ["a", "a", "a", "b", "b", "a", "b", "b", "a"],
        "treat": [1, 0, 1, 0, 0, 1, 1, 1, 0],
    }, index=list("ABCDEFGHI"))
    # bins by cut points 10, 20: x<10 -> 1, 10-20 -> 2, >=20 -> 3
    # strata: (1,a): A t, B c | (2,a): C t | (2,b): D c, E c, H t | (3,a): F t, I c | (1,b): G t
    sub = cem_subclass(df, ["x", "g"], df.treat.to_numpy() == 1, {"x": [10, 20]})
    # kept strata numbered by their first control row: B -> 1, D -> 2, I -> 3
    assert dict(zip(df.index, sub)) == {"A": 1, "B": 1, "C": -1, "D": 2, "E": 2, "F": 3, "G": -1, "H": 2, "I": 3}
    res = match(df, "treat", ["x", "g"], method="cem", cutpoints={"x": [10, 20]})
    w = res.weights
    # control weights n_t/n_c per stratum: B 1, D,E 1/2, I 1; scaled to sum to 4 controls
    np.testing.assert_allclose(w[["B", "D", "E", "I"]], np.array([1, 0.5, 0.5, 1]) * 4 / 3)
    assert w["C"] == 0 and w["G"] == 0
    assert res.counts.loc["matched"].to_dict() == {"control": 4, "treated": 3}
    assert res.counts.loc["unmatched"].to_dict() == {"control": 0, "treated": 2}


# ---------------------------------------------------------------------------
# balance statistics against hand computation
# ---------------------------------------------------------------------------
def test_balance_table_hand_computed():
    x = np.array([1.0, 3.0, 2.0, 4.0, 6.0])
    b = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    t = np.array([True, True, False, False, False])
    w = np.array([1.0, 1.0, 0.0, 1.0, 1.0])
    tab = balance_table(np.column_stack([x, b]), ["x", "b"], t, w)
    sx = np.sqrt(2.0)  # treated SD of x: sd(1, 3)
    r = tab.loc["x"]
    assert r.mean_treated_before == 2 and r.mean_control_before == 4
    assert r.smd_before == pytest.approx(-2 / sx, rel=1e-14)
    assert r.var_ratio_before == pytest.approx(2 / 4, rel=1e-14)
    # eCDFs at 1,2,3,4,6: F_t = .5,.5,1,1,1 and F_c = 0,1/3,1/3,2/3,1
    assert r.ecdf_max_before == pytest.approx(2 / 3) and r.ecdf_mean_before == pytest.approx(
        (0.5 + 1 / 6 + 2 / 3 + 1 / 3 + 0) / 5)
    # after: controls 4 and 6 only; the SMD keeps the full-sample treated SD
    assert r.mean_control_after == 5
    assert r.smd_after == pytest.approx(-3 / sx, rel=1e-14)
    assert r.var_ratio_after == pytest.approx(1.0)
    # F_c after = 0,0,0,.5,1 -> |diff| = .5,.5,1,.5,0
    assert r.ecdf_mean_after == pytest.approx(0.5) and r.ecdf_max_after == pytest.approx(1.0)
    r = tab.loc["b"]
    # binary: SD sqrt(p(1 - p)) with p = 1/2 among treated; no variance ratio
    assert bool(r.binary)
    assert r.smd_before == pytest.approx((0.5 - 2 / 3) / 0.5)
    assert np.isnan(r.var_ratio_before)
    assert r.ecdf_max_before == pytest.approx(1 / 6) and r.ecdf_mean_before == pytest.approx(1 / 6)
    assert r.smd_after == 0.0 and r.ecdf_max_after == 0.0


def test_weighted_balance_and_ess():
    x = np.array([0.0, 2.0, 1.0, 3.0])
    t = np.array([True, True, False, False])
    w = np.array([1.0, 1.0, 3.0, 1.0])
    r = balance_table(x[:, None], ["x"], t, w).loc["x"]
    assert r.mean_control_after == pytest.approx((3 * 1 + 1 * 3) / 4)
    # reliability-weighted variance: w=(.75,.25), m=1.5: sum w (x-m)^2 = .75; 1 - sum w^2 = .375
    assert r.var_ratio_after == pytest.approx(2.0 / (0.75 / 0.375))
    assert effective_sample_size(w[2:]) == pytest.approx(16 / 10)


def test_balance_covers_every_level_and_verdict_names_imbalanced_terms():
    rng = np.random.default_rng(2)
    n = 600
    df = pd.DataFrame({"age": rng.normal(40, 10, n), "region": rng.choice(["n", "s", "w"], n)})
    df["treat"] = rng.random(n) < 1 / (1 + np.exp(-(-1 + 0.08 * (df.age - 40) + 1.2 * (df.region == "s"))))
    res = match(df, "treat", ["age", "region"])
    tab = res.balance()
    assert list(tab.index) == ["distance", "age", "region[n]", "region[s]", "region[w]"]
    assert (tab.loc["age":, "smd_before"].abs() >= 0.1).any()
    bad = res.imbalanced()
    assert set(bad.index) == set(tab.index[(tab.smd_after.abs() >= 0.1)]) - {"distance"}
    for term in bad.index:
        assert term in res.text
    if len(bad) == 0:
        assert "all have |SMD| < 0.1" in res.text


# ---------------------------------------------------------------------------
# validation at the door
# ---------------------------------------------------------------------------
@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    n = 80
    df = pd.DataFrame({"age": rng.normal(40, 10, n), "loss": rng.gamma(2, 10, n),
                       "trigger": rng.choice(["loss", "time"], n)})
    df["treat"] = (rng.random(n) < 0.35).astype(int)
    return df


def test_caller_data_not_mutated(small):
    before = small.copy(deep=True)
    for kw in ({}, {"replace": True, "ratio": 2}, {"method": "cem"}, {"method": "ipw", "trim": 0.9}):
        res = match(small, "treat", ["age", "loss", "trigger"], **kw)
        res.matched_data()
        res.balance()
    pd.testing.assert_frame_equal(small, before)


@pytest.mark.parametrize("kw, message", [
    ({"method": "near"}, r"method='near' is not supported; choose one of \{'nearest', 'cem', 'ipw'\}"),
    ({"method": "Nearest"}, "method='Nearest' is not supported"),
    ({"distance": "glm"}, "distance='glm' is not supported"),
    ({"order": "large"}, "order='large' is not supported"),
    ({"discard": "all"}, "discard='all' is not supported"),
    ({"ratio": 0}, "ratio must be an integer >= 1"),
    ({"ratio": 1.5}, "ratio must be an integer >= 1"),
    ({"ratio": True}, "ratio must be an integer >= 1"),
    ({"caliper": -0.2}, "caliper must be > 0"),
    ({"caliper": float("nan")}, "caliper must be > 0"),
    ({"replace": "yes"}, "replace must be True or False"),
    ({"method": "cem", "caliper": 0.2}, "method='cem' does not use caliper=0.2"),
    ({"method": "ipw", "ratio": 2}, "method='ipw' does not use ratio=2"),
    ({"trim": 0.9}, "method='nearest' does not use trim=0.9"),
    ({"method": "ipw", "trim": 1.5}, r"trim must be in \(0, 1.0\)"),
    ({"exact": "triger"}, r"exact: column\(s\) not in data: 'triger' \(did you mean 'trigger'\?\)"),
    ({"seed": "abc"}, "seed must be an int"),
])
def test_bad_options_raise_value_error(small, kw, message):
    with pytest.raises(ValueError, match=message):
        match(small, "treat", ["age", "loss"], **kw)


def test_bad_data_messages_name_column_and_rows(small):
    df = small.copy()
    df.loc[[3, 17], "age"] = np.nan
    df.loc[5, "loss"] = np.inf
    with pytest.raises(ValueError, match=r"covariates with missing or non-finite values: 'age': 2 rows "
                                         r"\(index 3, 17\); 'loss': 1 row \(index 5\)"):
        match(df, "treat", ["age", "loss"])
    df = small.copy()
    df.loc[[4, 9], "treat"] = 2
    with pytest.raises(ValueError, match=r"treatment column 'treat' must be 0/1 or boolean; 2 rows \(index 4, 9\)"):
        match(df, "treat", ["age"])
    with pytest.raises(ValueError, match=r"covariates: column\(s\) not in data: 'agee' \(did you mean 'age'\?\)"):
        match(small, "treat", ["agee"])
    with pytest.raises(ValueError, match="must not include the treatment"):
        match(small, "treat", ["age", "treat"])
    with pytest.raises(ValueError, match="no treated units"):
        match(small.assign(treat=0), "treat", ["age"])
    with pytest.raises(ValueError, match="duplicated labels"):
        match(pd.concat([small, small]), "treat", ["age"])
    with pytest.raises(ValueError, match="left-hand side 'y'"):
        match(small, "treat", "y ~ age")
    with pytest.raises(ValueError, match="data must be a pandas DataFrame"):
        match(small.to_numpy(), "treat", ["age"])
    with pytest.raises(ValueError, match="No treated unit could be matched within the caliper"):
        match(small, "treat", ["age"], caliper=1e-9, std_caliper=False)


def test_boolean_treatment_and_formula_covariates(small):
    a = match(small, "treat", ["age", "loss", "trigger"])
    b = match(small.assign(treat=small.treat.astype(bool)), "treat", "age + loss + trigger")
    np.testing.assert_allclose(a.distance, b.distance, rtol=1e-10)
    assert sorted(a.balance().index) == sorted(b.balance().index)  # patsy puts factors first
    assert (a.pairs()[["treated", "control"]].to_numpy() == b.pairs()[["treated", "control"]].to_numpy()).all()
    c = match(small, "treat", "treat ~ age + np.log(loss) + C(trigger)")
    assert "np.log(loss)" in c.balance().index and "C(trigger)[time]" in c.balance().index
    assert c.settings["covariates"] == "age + np.log(loss) + C(trigger)"


def test_random_order_without_seed_warns(small):
    with pytest.warns(CarecallWarning, match="without a seed"):
        match(small, "treat", ["age"], order="random")


def test_too_few_controls_warns():
    df = frame_1d([1, 2, 3, 4], [1.5, 2.5, 3.5])
    with pytest.warns(SmallSampleWarning, match="fewer eligible control units"):
        res = match(df, "treat", ["x"], distance="logit")
    assert res.counts.loc["unmatched", "treated"] == 1
    assert "1 treated units were dropped" in res.text


# ---------------------------------------------------------------------------
# the result object
# ---------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:fewer eligible control units")
def test_result_records_how_it_was_made(small):
    res = match(small, "treat", ["age", "loss", "trigger"], ratio=2, caliper=0.25, exact="trigger", seed=3)
    p = res.settings
    json.dumps(p)
    assert p["method"] == "nearest" and p["estimand"] == "ATT" and p["ratio"] == 2
    assert p["caliper"] == 0.25 and p["std_caliper"] is True and p["exact"] == ["trigger"]
    assert p["seed"] == 3 and p["package_version"]
    sd = np.std(res.propensity.ps, ddof=1)
    assert p["caliper_distance_units"] == pytest.approx(0.25 * sd, rel=1e-12)
    assert p["terms"] == ["age", "loss", "trigger[loss]", "trigger[time]"]
    assert set(res.coef.index) == {"Intercept", "age", "loss", "trigger[time]"}
    np.testing.assert_allclose(res.coef.to_numpy(), res.propensity.results.params.to_numpy())
    assert res.propensity.results.summary() is not None


@pytest.mark.filterwarnings("ignore:fewer eligible control units")
def test_matched_data_and_counts(small):
    res = match(small, "treat", ["age", "loss"], ratio=2)
    md = res.matched_data()
    assert md.index.isin(small.index).all() and md.index.is_unique
    assert list(md.columns[-3:]) == ["distance", "weights", "subclass"]
    assert (md.groupby("subclass").treat.sum() == 1).all()
    c = res.counts
    assert (c.loc[["matched", "unmatched", "discarded"]].sum() == c.loc["all"]).all()
    assert len(md) == c.loc["matched"].sum()
    assert md.weights[md.treat == 0].sum() == pytest.approx(c.loc["matched", "control"])
    with pytest.raises(ValueError, match="already have column"):
        res.matched_data(weights="age")
    renamed = res.matched_data(weights="w", subclass="s", distance="ps")
    assert {"w", "s", "ps"} <= set(renamed.columns)


def test_summary_text_and_shared_result(small):
    res = match(small, "treat", ["age", "loss", "trigger"], caliper=0.1)
    s = res.summary
    assert list(s.columns[:len(SUMMARY_COLUMNS)]) == SUMMARY_COLUMNS
    row = s[(s.metric == "n_matched") & (s.group == "treated")].iloc[0]
    assert row.estimate == res.counts.loc["matched", "treated"]
    assert f"kept {int(res.counts.loc['matched', 'treated'])} of {int(small.treat.sum())} treated" in res.text
    r = res.to_result()
    assert isinstance(r, Result) and r.name == "matching" and r.text == res.text
    assert set(r.get_plot_data("balance").columns) >= {"term", "smd_before", "smd_after"}


def test_propensity_warnings_are_the_projects_own(small):
    df = small.assign(age2=small.age * 2)
    with pytest.warns(DataWarning, match="collinear"):
        match(df, "treat", ["age", "age2", "loss"])
    sep = pd.DataFrame({"x": np.r_[np.arange(10.0), np.arange(10.0) + 20], "treat": [0] * 10 + [1] * 10})
    with pytest.warns(ConvergenceWarning):
        match(sep, "treat", ["x"], method="ipw")


def test_result_protocol(small):
    res = match(small, "treat", ["age", "loss", "trigger"], caliper=0.1)
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["name"] == "matching" and d["text"] == res.text and d["settings"]["method"] == "nearest"
    assert res.metric("n_matched", "treated")["estimate"] == res.counts.loc["matched", "treated"]
    assert html.escape(res.text) in res._repr_html_()
    assert repr(res).startswith("<MatchResult nearest-neighbour 1:1 without replacement")
    with pytest.raises(KeyError, match="no plot data 'x'"):
        res.get_plot_data("x")


def test_matching_defaults_declared_once():
    """match()'s signature and docstring, and MatchingSpec, all read matching.defaults."""
    import dataclasses
    import inspect
    import re

    from carecall_eval.cohorts.design import MatchingSpec
    from carecall_eval.matching.defaults import COHORT, MATCHIT

    sig = inspect.signature(match)
    documented = dict(re.findall(r"^    (\w+) : .*, default (.+)$", match.__doc__, flags=re.M))
    assert len(documented) >= 7
    for f in dataclasses.fields(MATCHIT):
        assert sig.parameters[f.name].default == getattr(MATCHIT, f.name)
        if f.name in documented:
            assert documented[f.name] == repr(getattr(MATCHIT, f.name)).replace("'", '"'), f.name
    spec = MatchingSpec()
    for f in dataclasses.fields(MatchingSpec):
        assert getattr(spec, f.name) == getattr(COHORT, f.name), f.name
    changed = {f.name for f in dataclasses.fields(MATCHIT) if getattr(MATCHIT, f.name) != getattr(COHORT, f.name)}
    assert changed == {"distance", "ratio", "replace", "caliper", "exact", "seed"}


def test_love_plot_draws_without_computing(small):
    import matplotlib.pyplot as plt

    res = match(small, "treat", ["age", "loss", "trigger"])
    fig, ax = plt.subplots()
    out = love_plot(res, ax=ax)
    assert out is ax
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["age", "loss", "trigger[loss]", "trigger[time]"]
    xs = ax.collections[1].get_offsets()[:, 0]
    np.testing.assert_allclose(np.sort(xs), np.sort(res.balance().drop(index="distance").smd_after.abs()))
    assert any(abs(line.get_xdata()[0] - 0.1) < 1e-12 for line in ax.get_lines())
    plt.close(fig)
    with pytest.raises(ValueError, match="smd_before"):
        love_plot(pd.DataFrame({"a": [1]}))


@pytest.mark.parametrize("module", [
    "carecall_eval.matching.api", "carecall_eval.matching.describe", "carecall_eval.matching.defaults",
    "carecall_eval.matching.nearest", "carecall_eval.matching.cem",
    "carecall_eval.matching.weighting", "carecall_eval.matching.balance",
    "carecall_eval.matching.propensity", "carecall_eval.plotting",
])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_fast_stable_argsort_equals_numpy():
    from carecall_eval.matching._sort import stable_argsort

    rng = np.random.default_rng(4)
    cases = [
        rng.random(70_000),
        np.round(rng.normal(size=70_000), 3),                       # many ties
        rng.integers(0, 2, 70_000).astype(float),                  # two huge tie runs
        np.concatenate([rng.random(30_000), rng.random(30_000) * 1e-300, -rng.random(30_000),
                        np.zeros(5), -np.zeros(5), [np.inf, -np.inf]]),
        1 + rng.integers(0, 1000, 70_000) * 2.0 ** -52,              # differ only in the lowest bits
    ]
    for x in cases:
        x = x[rng.permutation(len(x))]
        assert (stable_argsort(x) == np.argsort(x, kind="stable")).all()


@pytest.mark.filterwarnings("ignore:fewer eligible control units")
def test_greedy_with_fast_sort_equals_numpy_sort(monkeypatch):
    """On data big enough to take the packed-key sort, results equal those with numpy's argsort."""
    import carecall_eval.matching.nearest as nearest

    rng = np.random.default_rng(9)
    n = 60_000
    d = np.round(rng.beta(2, 5, n), 4)  # ties
    t = rng.random(n) < 0.2
    ex = rng.integers(0, 3, n)
    kws = [{}, {"ratio": 2, "caliper": 0.001}, {"exact": ex}, {"replace": True, "ratio": 2}]
    fast = [greedy_nearest(d, t, **kw) for kw in kws]
    monkeypatch.setattr(nearest, "stable_argsort", lambda x: np.argsort(x, kind="stable"))
    slow = [greedy_nearest(d, t, **kw) for kw in kws]
    for a, b in zip(fast, slow):
        assert (a == b).all()


def test_fast_stable_argsort_returns_sorted_values():
    from carecall_eval.matching._sort import stable_argsort

    x = 1 + np.random.default_rng(5).integers(0, 50, 80_000) * 2.0 ** -52
    perm, xs = stable_argsort(x, return_sorted=True)
    assert (xs == x[perm]).all() and (np.diff(xs) >= 0).all()


def test_text_explains_why_treated_units_were_dropped():
    df = frame_1d([1.0, 2.25, 3.0, 3.1], [1.05, 2.3, -4.0, -5.0])
    res = match(df, "treat", ["x"], distance="logit", caliper=0.1)  # 0.1 SD of x: only 1.0 and 2.25 match
    assert res.counts.loc["unmatched", "treated"] == 2
    assert "2 with no control within the caliper" in res.text
    df = pd.DataFrame({"g": ["a", "a", "b", "b", "c"], "treat": [1, 0, 1, 1, 0]})
    res = match(df, "treat", ["g"], method="cem")
    assert "2 in strata with no control unit" in res.text


def test_missing_exact_column_values_are_named(small):
    df = small.copy()
    df.loc[7, "trigger"] = None
    msg = r"exact: columns with missing or non-finite values: 'trigger': 1 row \(index 7\)"
    with pytest.raises(ValueError, match=msg):
        match(df, "treat", ["age"], exact="trigger")
