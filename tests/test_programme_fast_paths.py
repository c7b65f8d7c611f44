"""The programme models' fast paths against the slow exact computations they replace.

* ``pooling.glmm_logit`` takes its products over cells and profiles (:class:`pooling.CellDesign`); the
  reference here is the dense Newton on ``[X, Z]`` it replaced, run on the same simulated design (factors,
  continuous case covariates shared by a case's rows, groups): the same estimates to 1e-9.
* ``pooling.lmm`` fits the REML criterion from the groups' sufficient statistics; statsmodels ``MixedLM``'s
  own profile likelihood is the reference: the same criterion (to a constant) at every variance ratio, the
  same GLS fixed effects at a given ratio, and the fitted ratio is its maximum (statsmodels' optimiser can
  stop short of it, near the boundary in particular: there it differs).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from carecall_eval.outcomes.programme import pooling


def _dense_glmm(y, X, g, J, grid_size=31, tau_max=3.0):
    """The dense Newton of the random-intercept logit, row by row (the code glmm_logit used before)."""
    n, p = X.shape
    Z = (g[:, None] == np.arange(J)).astype(float)
    XZ = np.hstack([X, Z])
    grid = np.linspace(tau_max / (grid_size - 1) / 10, tau_max, grid_size)
    theta = np.zeros(p + J)
    out = []
    for tau in grid:
        pen = np.r_[np.full(p, 1e-8), np.full(J, 1.0 / tau ** 2)]

        def obj(th, pen=pen):
            eta = XZ @ th
            return float(np.sum(y * eta - np.logaddexp(0, eta)) - 0.5 * np.sum(pen * th ** 2))

        f = obj(theta)
        for _ in range(100):
            mu = 1 / (1 + np.exp(-(XZ @ theta)))
            step = np.linalg.solve((XZ * (mu * (1 - mu))[:, None]).T @ XZ + np.diag(pen),
                                   XZ.T @ (y - mu) - pen * theta)
            t = 1.0
            while t > 1e-4:
                f_new = obj(theta + t * step)
                if f_new >= f - 1e-12:
                    break
                t /= 2
            theta, f = theta + t * step, f_new
            if np.max(np.abs(t * step)) < 1e-8:
                break
        eta = XZ @ theta
        mu = 1 / (1 + np.exp(-eta))
        w = mu * (1 - mu)
        H = (XZ * w[:, None]).T @ XZ + np.diag(pen)
        u = theta[p:]
        d = np.bincount(g, weights=w, minlength=J)
        ll = float(np.sum(y * eta - np.logaddexp(0, eta)))
        out.append((ll - 0.5 * np.sum(u ** 2) / tau ** 2 - 0.5 * np.sum(np.log1p(tau ** 2 * d)),
                    u.copy(), np.sqrt(np.diag(np.linalg.inv(H))[p:]), theta[:p].copy()))
    logl = np.array([o[0] for o in out])
    wt = np.exp(logl - logl.max())
    wt /= wt.sum()
    means, sds = np.array([o[1] for o in out]), np.array([o[2] for o in out])
    mean = wt @ means
    sd = np.sqrt(np.maximum(wt @ (sds ** 2 + means ** 2) - mean ** 2, 0))
    return mean, sd, float(wt @ grid), out[int(np.argmax(logl))][3]


@pytest.fixture(scope="module")
def attempts():
    """Attempts of cases: factor dummies per attempt, case covariates shared by a case's attempts, callers."""
    rng = np.random.default_rng(18)
    n_cases, J = 1500, 9
    per = rng.integers(1, 5, n_cases)
    case = np.repeat(np.arange(n_cases), per)
    n = len(case)
    cov = np.column_stack([rng.normal(size=n_cases), rng.random(n_cases), rng.integers(2, 8, n_cases) / 10])[case]
    hour = rng.integers(0, 6, n)
    trig = rng.integers(0, 3, n_cases)[case]
    late = (rng.random(n) < 0.3).astype(float)
    X = np.column_stack([np.ones(n), *(hour == h for h in range(1, 6)), *(trig == k for k in (1, 2)), late, cov])
    g = rng.integers(0, J, n)
    u = rng.normal(0, 0.4, J)
    eta = -0.4 + 0.3 * (hour - 2.5) / 2.5 + 0.5 * late + cov @ np.array([0.3, -0.5, 0.8]) + u[g]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return y, X.astype(float), g, J, case


def test_glmm_logit_over_cells_equals_the_dense_newton(attempts):
    y, X, g, J, case = attempts
    cells = pooling.CellDesign(y, X, g, J)
    assert cells.m < len(y) and cells.K < len(y)          # both groupings do group rows
    fit = pooling.glmm_logit(y, X, g, n_groups=J)
    mean, sd, tau, beta = _dense_glmm(y, X, g, J)
    np.testing.assert_allclose(fit.effect, mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fit.sd, sd, rtol=1e-9)
    np.testing.assert_allclose(fit.tau, tau, rtol=1e-9)
    np.testing.assert_allclose(fit.beta, beta, rtol=1e-8, atol=1e-11)


def test_cell_design_products_equal_the_dense_ones(attempts):
    y, X, g, J, case = attempts
    cells = pooling.CellDesign(y, X, g, J)
    XZ = np.hstack([X, (g[:, None] == np.arange(J)).astype(float)])
    rng = np.random.default_rng(1)
    theta = rng.normal(0, 0.3, XZ.shape[1])
    eta, yeta = cells.eta(theta)
    ref = XZ[cells.rows] @ theta
    np.testing.assert_allclose(eta, ref, rtol=1e-12, atol=1e-12)
    assert yeta == pytest.approx(float(y[cells.rows] @ ref), rel=1e-12)
    w = rng.random(len(y))
    np.testing.assert_allclose(cells.gradient(w), XZ[cells.rows].T @ w, rtol=1e-12, atol=1e-10)
    H, d = cells.hessian(w)
    np.testing.assert_allclose(H, (XZ[cells.rows] * w[:, None]).T @ XZ[cells.rows], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(d, np.bincount(g[cells.rows], weights=w, minlength=J), rtol=1e-12)


def _sm_profile(y, X, g):
    import statsmodels.api as sm
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    m = sm.MixedLM(y, X, groups=g)
    m.reml, m.cov_pen, m.fe_pen, m._freepat, m._cov_sing = True, None, None, None, 0
    p = X.shape[1]

    def loglike(gam):
        return m.loglike(MixedLMParams.from_components(np.zeros(p), cov_re=np.array([[gam]])), profile_fe=True)

    def fe(gam):
        return m.get_fe_params(np.array([[gam]]), np.zeros(0))[0]
    return m, loglike, fe


@pytest.mark.parametrize("tau", [0.4, 0.0])
def test_lmm_reml_is_statsmodels_criterion_at_its_maximum(tau):
    """REML against statsmodels' own profile likelihood: ``-2 loglike`` differs from our criterion by a
    constant, the GLS fixed effects agree at a given ratio, and our ratio is the likelihood's maximum."""
    rng = np.random.default_rng(5)
    J = 12
    g = np.repeat(np.arange(J), rng.integers(60, 240, J))
    n = len(g)
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.random(n) < 0.3])
    y = X @ np.array([5.6, 0.2, -0.3]) + rng.normal(0, tau, J)[g] + rng.normal(0, 0.55, n)
    _, loglike, fe = _sm_profile(y, X, g)
    gam, beta, scale, _ = pooling._reml_ratio(y, X, g, J)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for probe in (1e-4, 0.05, 0.5, 2.0):
            np.testing.assert_allclose(pooling._reml_ratio(y, X, g, J, at=probe)[1], fe(probe), rtol=1e-10)
        ours = [pooling._reml_ratio(y, X, g, J, at=x)[3] for x in (1e-4, 0.05, 0.5, 2.0)]
        theirs = [-2 * loglike(x) for x in (1e-4, 0.05, 0.5, 2.0)]
        np.testing.assert_allclose(np.diff(ours), np.diff(theirs), rtol=1e-9)
        if tau > 0:
            assert gam > 0
            for step in (1 + 1e-3, 1 - 1e-3):
                assert loglike(gam * step) < loglike(gam)
        else:
            # no variation between groups: the maximum is on the boundary, where the fit is least squares
            assert gam == 0.0
            assert loglike(1e-9) > loglike(1e-3)
            np.testing.assert_allclose(beta, np.linalg.lstsq(X, y, rcond=None)[0], rtol=1e-10)
            resid = y - X @ beta
            assert scale == pytest.approx(resid @ resid / (n - X.shape[1]), rel=1e-12)


def test_attempt_logit_equals_statsmodels_with_cluster_errors(attempts):
    """The answer model's fast Newton and CRV1 sandwich against statsmodels ``Logit(...).fit(cov_type="cluster")``."""
    import statsmodels.api as sm

    from carecall_eval.outcomes.programme.timing import fit_attempt_logit

    y, X, g, J, case = attempts
    X = np.column_stack([X, *(g == j for j in range(1, J))]).astype(float)     # callers as fixed effects
    names = [f"x{j}" for j in range(X.shape[1])]
    fit, keep = fit_attempt_logit(y, X, names, case, "test")
    assert list(keep) == list(range(X.shape[1])) and fit.converged
    ref = sm.Logit(y, X).fit(disp=0, cov_type="cluster", cov_kwds={"groups": case})
    np.testing.assert_allclose(fit.params, ref.params, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fit.cov_params(), ref.cov_params(), rtol=1e-8, atol=1e-14)


def test_the_shared_attempt_table_is_left_as_built(sample):
    """Timing and callers read the cached attempt table without copying it; neither writes into it."""
    import carecall_eval as ce
    from carecall_eval.outcomes.programme import timing
    from carecall_eval.outcomes.registry import ESTIMATORS

    ds, _ = sample
    before = timing.attempt_table(ds)
    ESTIMATORS["timing"].func(ds)
    ESTIMATORS["callers"].func(ds, ce.build_cohort(ds).sample())
    after = timing.attempt_table(ds)
    assert list(after.columns) == list(before.columns)
    pd.testing.assert_frame_equal(after, before)
    assert timing._cached_attempt_table(ds) is timing._cached_attempt_table(ds)
