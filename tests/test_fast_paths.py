"""The faster paths of issue 18 give the numbers of the plain ones they replace.

* ``Predictor.effect_se`` (linear-predictor steps) equals ``delta_se`` over ``Predictor.effects``;
* ``recompute_covariates(post=(w,))`` (a shorter pass) gives the same covariates and pre/post totals
  as the full recomputation.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE

from carecall_eval.outcomes.reach.answer_model import Predictor, delta_se


def test_effect_se_equals_the_generic_delta_method():
    rng = np.random.default_rng(3)
    n_cases, K, p = 400, 4, 7
    rows = n_cases * K * 2
    X_with = rng.normal(size=(rows, p))
    X_without = X_with.copy()
    X_without[:, 1] = 0.0                                     # the policy term switched off
    cell = np.repeat(np.arange(n_cases * K), 2)
    weight = np.tile([0.4, 0.6], n_cases * K)
    q = rng.uniform(0.5, 1.0, size=(n_cases, K))
    q[:, 0] = 1.0
    pred = Predictor(X_with, X_without, weight, cell, q, n_cases, K)
    beta = rng.normal(scale=0.3, size=p)
    A = rng.normal(size=(p, p))
    cov = A @ A.T / 50
    fast = pred.effect_se(beta, cov)
    slow = delta_se(lambda b: pred.effects(b)[0], beta, cov)
    assert fast == pytest.approx(slow, rel=1e-9)
    assert fast > 0


def test_shorter_placebo_pass_gives_the_same_covariates():
    from carecall_eval.cohorts import build_cohort
    from carecall_eval.cohorts.build import recompute_covariates
    from carecall_eval.contract import load

    with load(SAMPLE, validate=False) as ds:
        cohort = build_cohort(ds, cache=False)
        t = cohort.table.copy()
        t["index_date"] = t["index_date"] - pd.Timedelta(days=84)
        t = t[t["index_date"] - pd.Timedelta(days=84) >= pd.Timestamp(ds.data_start)]
        full = recompute_covariates(ds, t, cohort.design)
        short = recompute_covariates(ds, t, cohort.design, post=(28,))
    assert "tl_post365" in full.columns and "tl_post365" not in short.columns
    same = [c for c in short.columns]
    pd.testing.assert_frame_equal(short[same], full[same], check_exact=True)
    assert set(cohort.covariates) <= set(same)
