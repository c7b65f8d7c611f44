"""The array paths of the matched PPML give the pandas paths' numbers exactly.

``matched_ppml`` and ``_subgroups`` build their designs from arrays made once (``spending._Design``)
instead of ``pandas.get_dummies`` per fit; these tests rebuild the designs the pandas way (as the code
did before) and ask for the same columns, names, memory layout and bitwise the same estimates.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from carecall_eval.outcomes import spending as sp


def _table(n=3000, seed=0, categorical=False):
    rng = np.random.default_rng(seed)
    t = pd.DataFrame({
        "customer_id": rng.integers(0, n // 2, n).astype(str),
        "subclass": rng.integers(0, n // 3, n).astype(float),
        "contact": rng.integers(0, 2, n),
        "weights": rng.uniform(0.5, 2.0, n),
        "age": rng.uniform(18, 80, n),
        "x_float": rng.normal(size=n),
        "x_int": rng.integers(0, 5, n),
        "x_zero": np.zeros(n),                          # constant: dropped
        "gender": rng.choice(["F", "M", "U"], n, p=[0.3, 0.65, 0.05]),
        "trigger": rng.choice(["a", "b", "c", "d"], n, p=[0.7, 0.2, 0.08, 0.02]),
        "share_casino": rng.uniform(0, 1, n),
        "share_sports": rng.uniform(0, 1, n),
    })
    t.loc[rng.random(n) < 0.05, "gender"] = None         # missing: no dummy
    t.loc[t.index[:50], ["share_casino", "share_sports"]] = 0.0   # main product "none"
    if categorical:
        t["trigger"] = pd.Categorical(t["trigger"], categories=["z", "a", "b", "c", "d"])
    t["tl_post84"] = rng.poisson(np.exp(1 + 0.3 * t["x_float"] - 0.1 * t["contact"])) * 1.5
    return t


COVS = ["age", "x_float", "x_int", "x_zero", "gender", "trigger", "share_casino"]


def _pandas_design(m, covariates, term="contact"):
    """The design as the pandas path builds it (get_dummies, std filters, ppml's column selection)."""
    X = sp._ppml_covariates(m, covariates)
    X.insert(0, "contact", m["contact"].to_numpy(float))
    names = ["const", *(str(c) for c in X.columns)]
    Xa = np.empty((len(m), X.shape[1] + 1))
    Xa[:, 0] = 1.0
    Xa[:, 1:] = X.to_numpy(dtype=float)
    keep = [i for i, c in enumerate(names) if c in ("const", term) or np.std(Xa[:, i]) != 0]
    return Xa[:, keep], [names[i] for i in keep]


def _pandas_matched_ppml(m, covariates, groups, start=None):
    X = sp._ppml_covariates(m, covariates)
    X.insert(0, "contact", m["contact"].to_numpy(float))
    return sp.ppml(m["tl_post84"].to_numpy(float), X, term="contact", weights=m["weights"].to_numpy(float),
                   groups=groups, start=start)


def _same(a: sp.RatioEstimate, b: sp.RatioEstimate):
    assert (a.coef, a.se, a.estimate, a.ci_low, a.ci_high, a.converged) == \
        (b.coef, b.se, b.estimate, b.ci_low, b.ci_high, b.converged)
    pd.testing.assert_series_equal(a.params, b.params, check_exact=True)


@pytest.mark.parametrize("categorical", [False, True])
def test_design_matches_get_dummies_on_subsets(categorical):
    t = _table(categorical=categorical)
    design = sp._Design(t, COVS)
    assert design.ok
    rng = np.random.default_rng(1)
    subsets = [None, np.flatnonzero(t["trigger"] == "d"), np.flatnonzero(t["gender"] == "U"),
               np.sort(rng.choice(len(t), 200, replace=False)), np.flatnonzero(t["trigger"] == "a")]
    for rows in subsets:
        for covs in (COVS, [c for c in COVS if c != "trigger"]):
            Xa, names = design.take(rows, covs)
            ref, ref_names = _pandas_design(t if rows is None else t.iloc[rows], covs)
            assert names == ref_names
            assert Xa.shape == ref.shape and Xa.strides == ref.strides    # the same layout: the same BLAS calls
            np.testing.assert_array_equal(Xa, ref)


def test_design_refuses_what_it_cannot_promise():
    t = _table()
    t["x_const"] = 0.1                                  # a constant whose mean may not be exact
    assert sp._Design(t, [*COVS, "x_const"]).take(None, [*COVS, "x_const"]) is None
    t["x_bool"] = t["x_int"] > 2                        # a dtype get_dummies leaves alone
    assert not sp._Design(t, [*COVS, "x_bool"]).ok
    t["x_mixed"] = np.where(t["x_int"] > 2, np.array("a", dtype=object), np.array(1, dtype=object))     # levels that are not all text
    assert not sp._Design(t, [*COVS, "x_mixed"]).ok
    t["x_nan"] = np.where(t["x_int"] > 2, np.nan, 1.0)
    assert not sp._Design(t, [*COVS, "x_nan"]).ok
    # and matched_ppml still answers, by the pandas path
    e = sp.matched_ppml(t, "tl", 84, [*COVS, "x_const"], groups=t["customer_id"].to_numpy())
    _same(e, _pandas_matched_ppml(t, [*COVS, "x_const"], t["customer_id"].to_numpy()))


@pytest.mark.parametrize("categorical", [False, True])
def test_matched_ppml_bitwise(categorical):
    t = _table(categorical=categorical)
    g = t["customer_id"].to_numpy()
    e = sp.matched_ppml(t, "tl", 84, COVS, groups=g)
    _same(e, _pandas_matched_ppml(t, COVS, g))
    _same(sp.matched_ppml(t, "tl", 84, COVS, groups=None), _pandas_matched_ppml(t, COVS, None))
    start = e.params
    sub = t[t["gender"] == "F"]
    _same(sp.matched_ppml(sub, "tl", 84, COVS, groups=sub["customer_id"].to_numpy(), start=start),
          _pandas_matched_ppml(sub, COVS, sub["customer_id"].to_numpy(), start=start))


def test_subgroup_columns_main_product_as_idxmax():
    t = _table()
    d = sp.subgroup_columns(t)
    shares = t[["share_casino", "share_sports"]]
    ref = np.where(shares.max(axis=1) > 0, shares.idxmax(axis=1).str.replace("share_", "", regex=False), "none")
    np.testing.assert_array_equal(d["main_product"].to_numpy(), ref)
    t.loc[t.index[60:70], "share_sports"] = np.nan      # missing shares: idxmax itself
    d = sp.subgroup_columns(t)
    shares = t[["share_casino", "share_sports"]]
    ref = np.where(shares.max(axis=1) > 0, shares.idxmax(axis=1).str.replace("share_", "", regex=False), "none")
    np.testing.assert_array_equal(d["main_product"].to_numpy(), ref)


class _Rule:
    """A sample's cluster rule (MatchedSample.cluster_ids) without a sample."""

    def __init__(self, cluster):
        self.cluster = cluster

    def __call__(self, frame):
        col = "customer_id" if self.cluster == "customer_id" or frame["subclass"].isna().any() else "subclass"
        return frame[col].to_numpy()


def _pandas_subgroups(m, covariates, cluster_ids, sets=None, by=sp.SUBGROUP_BY, start=None):
    """_subgroups as it was: a DataFrame and get_dummies per subgroup."""
    src = sets if sets is not None else m
    d = sp.subgroup_columns(src)
    d["_unit"] = pd.factorize(d["customer_id"])[0]
    by_cols = [b for b in by if b in d.columns]
    if sets is not None:
        treated = d[d["contact"] == 1].drop_duplicates("subclass").set_index("subclass")[by_cols]
        for b in by_cols:
            d[b] = d["subclass"].map(treated[b]).to_numpy()
    rows = []
    for b in by_cols:
        for lvl, g in d.groupby(b):
            if g["contact"].sum() < 20 or (g["contact"] == 0).sum() < 20:
                continue
            covs = [c for c in covariates if c != b]
            e = _pandas_matched_ppml(g, covs, cluster_ids(g), start=start)
            if not e.converged:
                continue
            rows.append({"by": b, "level": lvl, "estimate": e.estimate, "se": e.se, "ci_low": e.ci_low,
                         "ci_high": e.ci_high, "n": int(g["_unit"].nunique())})
    return pd.DataFrame(rows, columns=["by", "level", "estimate", "se", "ci_low", "ci_high", "n"])


@pytest.mark.parametrize("cluster", ["customer_id", "subclass"])
@pytest.mark.parametrize("with_sets", [False, True])
def test_subgroups_bitwise(cluster, with_sets):
    t = _table(n=4000, seed=3)
    if cluster == "subclass":
        t.loc[t.index[:5], "subclass"] = np.nan          # one subgroup falls back to customers
    rule = _Rule(cluster)
    sets = t if with_sets else None
    start = sp.matched_ppml(t, "tl", 84, COVS, groups=rule(t)).params
    for st in (None, start):
        got = sp._subgroups(t, "tl", 84, COVS, 0.95, rule, sets, start=st)
        ref = _pandas_subgroups(t, COVS, rule, sets, start=st)
        assert len(got) > 5
        pd.testing.assert_frame_equal(got, ref, check_exact=True)
