"""``CellDesign.hessian``'s cross-tabulations by groups of blocks (tables of two groups, a group's own table, and
pairs of blocks tabulated on their own) against the dense ``[X, Z]' W [X, Z]``, for several groupings; and the
random-intercept logit's Newton with a reused Hessian against the dense Newton."""
from __future__ import annotations

import numpy as np
import pytest

from carecall_eval.outcomes.programme import pooling


def _design(n_cases=400, J=7, seed=3):
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 4, n_cases)
    case = np.repeat(np.arange(n_cases), per)
    n = len(case)
    cov = np.column_stack([rng.normal(size=n_cases), rng.random(n_cases)])[case]
    hour = rng.integers(0, 5, n)
    day = rng.integers(0, 4, n)
    trig = rng.integers(0, 3, n_cases)[case]
    late = (rng.random(n) < 0.3).astype(float)
    X = np.column_stack([np.ones(n), *(hour == h for h in range(1, 5)), *(day == d for d in range(1, 4)),
                         *(trig == k for k in (1, 2)), late, cov]).astype(float)
    g = rng.integers(0, J, n)
    eta = -0.3 + 0.2 * hour / 4 + 0.4 * late + cov @ np.array([0.3, -0.5]) + rng.normal(0, 0.3, J)[g]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return y, X, g, J


@pytest.mark.parametrize("codes", [2, 6, 30, 200, 1 << 10, 1 << 14])
def test_hessian_by_tables_equals_the_dense_product(monkeypatch, codes):
    monkeypatch.setattr(pooling, "_GROUP_CODES", codes)
    y, X, g, J = _design()
    cells = pooling.CellDesign(y, X, g, J)
    XZ = np.hstack([X, (g[:, None] == np.arange(J)).astype(float)])[cells.rows]
    w = np.random.default_rng(2).random(len(y))
    H, d = cells.hessian(w)
    np.testing.assert_allclose(H, (XZ * w[:, None]).T @ XZ, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(d, np.bincount(g[cells.rows], weights=w, minlength=J), rtol=1e-12)


def test_groupings_cover_every_path(monkeypatch):
    seen = set()
    for codes in (2, 6, 30, 200, 1 << 10, 1 << 14):
        monkeypatch.setattr(pooling, "_GROUP_CODES", codes)
        cells = pooling.CellDesign(*_design())
        seen.add(("pairs", bool(cells._pairs)))
        seen.add(("groups", len(cells._groups) > 1))
        seen.add(("cross", any(len([grp for grp in cells._groups if grp[0] in axes]) == 2
                               for _, axes, _ in cells._tables)))
    assert {("pairs", True), ("groups", True), ("cross", True), ("groups", False)} <= seen


@pytest.mark.parametrize("reuse", [0.0, 1e-4])
def test_glmm_logit_with_a_reused_hessian_equals_the_dense_newton(monkeypatch, reuse):
    from test_programme_fast_paths import _dense_glmm

    monkeypatch.setattr(pooling, "_REUSE_ETA", reuse)
    y, X, g, J = _design(n_cases=800)
    fit = pooling.glmm_logit(y, X, g, n_groups=J)
    mean, sd, tau, beta = _dense_glmm(y, X, g, J)
    np.testing.assert_allclose(fit.effect, mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fit.sd, sd, rtol=1e-9)
    np.testing.assert_allclose(fit.tau, tau, rtol=1e-9)
    np.testing.assert_allclose(fit.beta, beta, rtol=1e-8, atol=1e-11)
