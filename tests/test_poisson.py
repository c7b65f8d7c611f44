"""The fast PPML path (outcomes/poisson.py) against statsmodels' GLM Poisson itself.

Reference: ``statsmodels.api.GLM(y, X, family=Poisson(), var_weights=w, exposure=e).fit(method="newton",
cov_type="cluster" | "HC0")``, run in the test on the same simulated data.  statsmodels' Newton stops at a
relative parameter change of 1e-8, so coefficients and standard errors are compared at rtol 1e-7.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from carecall_eval.outcomes.poisson import poisson_newton
from carecall_eval.outcomes.spending import _statsmodels_ppml, ppml


def _data(seed, n=3000, clusters=True, exposure=True, weights=True):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"contact": rng.integers(0, 2, n).astype(float), "x": rng.normal(size=n),
                      "band": rng.integers(0, 4, n).astype(float)})
    X = pd.concat([X, pd.get_dummies(X.pop("band"), prefix="b", drop_first=True, dtype=float)], axis=1)
    ex = rng.choice([28.0, 84.0], n) if exposure else None
    mu = np.exp(-1 + 0.4 * X["x"] - 0.2 * X["contact"]) * (1 if ex is None else ex)
    y = rng.poisson(mu) * rng.gamma(2.0, 5.0, n)          # zeros and a long tail, as spending has
    w = rng.uniform(0.2, 3.0, n) if weights else np.ones(n)
    g = rng.integers(0, n // 3, n) if clusters else None
    return y, X, w, ex, g


@pytest.mark.parametrize("seed,clusters,exposure,weights", [
    (1, True, True, True), (2, False, True, True), (3, True, False, True), (4, False, False, False),
    (5, True, True, False)])
def test_newton_path_matches_statsmodels(seed, clusters, exposure, weights):
    y, X, w, ex, g = _data(seed, clusters=clusters, exposure=exposure, weights=weights)
    Xc = pd.concat([pd.Series(1.0, index=X.index, name="const"), X], axis=1)
    codes = None if g is None else pd.factorize(pd.Series(g))[0]
    start = np.zeros(Xc.shape[1])
    start[0] = np.log(np.average(y / (1.0 if ex is None else ex), weights=w))
    fast = poisson_newton(y, Xc.to_numpy(), weights=w, offset=None if ex is None else np.log(ex), start=start,
                          codes=codes)
    assert fast is not None
    ref, converged = _statsmodels_ppml(y, Xc, w, ex, codes, start)
    assert converged
    np.testing.assert_allclose(fast[0], ref.params.to_numpy(), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(np.sqrt(np.diag(fast[1])), ref.bse.to_numpy(), rtol=1e-7)
    # and ppml reports that coefficient, its se and the interval at a non-default level
    r = ppml(y, X, term="contact", weights=w, groups=g, exposure=ex, level=0.8)
    assert r.coef == pytest.approx(ref.params["contact"], rel=1e-7)
    assert r.se == pytest.approx(ref.bse["contact"], rel=1e-7)
    z = 1.2815515655446004          # scipy.stats.norm.ppf(0.9)
    assert r.ci_low == pytest.approx(np.expm1(ref.params["contact"] - z * ref.bse["contact"]), rel=1e-6)


def test_a_singular_design_is_left_to_statsmodels():
    y, X, w, ex, g = _data(7)
    X["x_again"] = X["x"] * 2.0                                   # collinear: the Hessian is singular
    Xc = np.column_stack([np.ones(len(y)), X.to_numpy()])
    assert poisson_newton(y, Xc, weights=w, offset=np.log(ex), start=np.zeros(Xc.shape[1]),
                          codes=pd.factorize(pd.Series(g))[0]) is None


def test_a_constant_regressor_is_dropped_and_a_poor_start_still_converges():
    y, X, w, ex, g = _data(8)
    X["flat"] = 3.0
    r = ppml(y, X, term="contact", weights=w, groups=g, exposure=ex)
    assert "flat" not in r.params.index and r.converged
    Xc = np.column_stack([np.ones(len(y)), X.drop(columns="flat").to_numpy()])
    far = poisson_newton(y, Xc, weights=w, offset=np.log(ex), start=np.full(Xc.shape[1], 3.0),
                         codes=pd.factorize(pd.Series(g))[0])
    assert far is not None
    np.testing.assert_allclose(far[0], r.params.to_numpy(), rtol=1e-8, atol=1e-10)


def test_the_saturated_closed_form_is_the_ppml_maximum():
    from carecall_eval.outcomes.spending import saturated_start

    y, X, w, ex, g = _data(9)
    post = (np.random.default_rng(9).random(len(y)) < 0.5).astype(float)
    D = pd.DataFrame({"contact": X["contact"], "post": post, "contact_x_post": X["contact"] * post})
    fit = ppml(y, D, term="contact_x_post", weights=w, groups=g, exposure=ex)          # from the default start
    closed = saturated_start(y, D["contact"], D["post"], w, ex)
    np.testing.assert_allclose([closed[c] for c in fit.params.index], fit.params.to_numpy(), rtol=1e-8, atol=1e-10)
    one = ppml(y, X[["contact"]], term="contact", weights=w, groups=g)
    closed = saturated_start(y, X["contact"], weights=w)
    np.testing.assert_allclose([closed["const"], closed["contact"]], one.params.to_numpy(), rtol=1e-8, atol=1e-10)
    # started there, ppml lands on the same maximum
    again = ppml(y, D, term="contact_x_post", weights=w, groups=g, exposure=ex,
                 start=saturated_start(y, D["contact"], D["post"], w, ex))
    assert again.coef == pytest.approx(fit.coef, rel=1e-9) and again.se == pytest.approx(fit.se, rel=1e-9)


@pytest.mark.parametrize("clusters", [True, False])
def test_two_group_wls_matches_statsmodels(clusters):
    import statsmodels.api as sm

    from carecall_eval.outcomes.poisson import two_group_wls

    y, X, w, ex, g = _data(10, clusters=clusters)
    t = X["contact"].to_numpy()
    codes = None if g is None else pd.factorize(pd.Series(g))[0]
    b, se = two_group_wls(y, t, w, codes)
    model = sm.WLS(y, sm.add_constant(pd.DataFrame({"contact": t})), weights=w)
    ref = model.fit(cov_type="cluster", cov_kwds={"groups": codes}) if clusters else model.fit(cov_type="HC1")
    assert b == pytest.approx(ref.params["contact"], rel=1e-10)
    assert se == pytest.approx(ref.bse["contact"], rel=1e-10)
