"""prepare_match/match_prepared equal match(); the self-check's positional plant_answers equals plant_answers."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from carecall_eval.matching import match
from carecall_eval.matching._inputs import build_covariates, expand
from carecall_eval.matching.api import match_prepared, prepare_match
from carecall_eval.trust.sms_plasmode import _plant_answers_by_position, plant_answers


def _data(n=600, seed=4):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.normal(40, 10, n), "loss": rng.gamma(2, 50, n),
                       "days": rng.integers(0, 30, n), "flag": rng.random(n) < 0.3,
                       "region": rng.choice(["north", "south", "east"], n),
                       "trigger": pd.Categorical(rng.choice(["a", "b"], n), categories=["b", "a", "z"])})
    df.index = rng.permutation(n) + 1000
    return df, rng


def test_build_covariates_equals_expand():
    df, _ = _data()
    cols = ["age", "region", "loss", "flag", "trigger", "days"]
    cov = build_covariates(df, "t", cols)
    x_model, m_names, _ = expand(df, cols, "covariates", drop_first=True)
    bal, b_names, b_source = expand(df, cols, "covariates", drop_first=False)
    assert np.array_equal(cov.model[:, 0], np.ones(len(df)))
    assert np.array_equal(cov.model[:, 1:], x_model) and cov.model_names == ("Intercept", *m_names)
    assert np.array_equal(cov.balance, bal) and cov.balance_names == tuple(b_names)
    assert cov.balance_source == tuple(b_source)


@pytest.mark.parametrize("opts", [dict(), dict(distance="logit", ratio=3, replace=True, caliper=0.2, exact="region"),
                                  dict(ratio=2, caliper=0.1, discard="both", exact=["region"]),
                                  dict(method="ipw", trim=0.95)])
def test_match_prepared_equals_match(opts):
    df, rng = _data()
    cols = ["age", "loss", "region", "flag", "days"]
    prep = prepare_match(df, "t", cols, **opts)
    for _ in range(3):
        treat = rng.random(len(df)) < 0.35
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = match(df.assign(t=treat.astype(int)), "t", cols, **opts)
            b = match_prepared(prep, treat)
        for attr in ("_weights", "_distance", "_discarded"):
            assert np.array_equal(getattr(a, attr), getattr(b, attr))
        assert (a._subclass is None) == (b._subclass is None)
        if a._subclass is not None:
            assert np.array_equal(a._subclass, b._subclass)
        if a.match_matrix is not None:
            assert np.array_equal(a.match_matrix, b.match_matrix)
        sa = {k: v for k, v in a.settings.items()}
        sb = {k: v for k, v in b.settings.items()}
        assert sa == sb
        pd.testing.assert_frame_equal(a.counts, b.counts)
        pd.testing.assert_frame_equal(a.balance(), b.balance(), check_exact=True)
        pd.testing.assert_frame_equal(a.matched_data().drop(columns="t"), b.matched_data(), check_exact=True)


def test_plant_answers_by_position():
    rng = np.random.default_rng(2)
    n = 300
    cases = pd.DataFrame({"case_id": [f"c{i}" for i in range(n)],
                          "opened_on": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 90, n), "D"),
                          "reached": False, "n_attempts": 0, "attempts_to_reach": pd.array([pd.NA] * n, "Int64"),
                          "reached_at": pd.NaT})
    k = rng.integers(1, 6, n)
    cid = np.repeat(np.arange(n), k)
    no = np.concatenate([np.arange(1, j + 1) for j in k])
    att = pd.DataFrame({"case_id": cases["case_id"].to_numpy()[cid], "attempt_no": no,
                        "attempted_at": cases["opened_on"].to_numpy()[cid] + pd.to_timedelta(no, "h").to_numpy(),
                        "answered": rng.random(len(no)) < 0.1})
    first = att[att["answered"]].groupby("case_id")["attempt_no"].min()
    stop = att["case_id"].map(first)
    att = att[stop.isna().to_numpy() | (att["attempt_no"] <= stop).to_numpy()].sample(frac=1, random_state=1)
    att = att.reset_index(drop=True)
    pos = pd.Series(np.arange(n), index=cases["case_id"])
    att_case = att["case_id"].map(pos).to_numpy()
    post = (cases["opened_on"] >= pd.Timestamp("2024-02-15")).to_numpy()
    for q in (0.0, 0.3, 0.9):
        flip = (att["attempt_no"].to_numpy() > 1) & ~att["answered"].to_numpy() & post[att_case] & (rng.random(len(att)) < q)
        c1, a1 = plant_answers(cases, att, post, flip)
        c2, a2 = _plant_answers_by_position(cases, att, att_case, post, flip)
        pd.testing.assert_frame_equal(c1, c2, check_exact=True)
        pd.testing.assert_frame_equal(a1, a2, check_exact=True)
