"""Heterogeneity and partial pooling, one implementation each for the programme analyses.

:func:`random_effects`
    Cochran's Q, I^2 and the DerSimonian-Laird between-group variance of a set
    of estimates with standard errors (statsmodels' ``combine_effects``, with
    tau^2 truncated at zero as in :mod:`carecall_eval.compare.meta`): the
    heterogeneity test.
:func:`normal_pooling`
    Partial pooling of estimates with standard errors (normal random effects):
    each group's effect averaged over the between-group sd ``tau`` with a
    uniform prior on ``tau`` and a flat one on the mean (Gelman 2006), so that
    the groups' intervals carry the uncertainty about how much groups differ
    (empirical Bayes at the single best ``tau`` gives zero-width intervals when
    ``tau`` is estimated at 0).
:func:`glmm_logit`
    The same for a random-intercept logistic model with fixed effects (case mix):
    at each ``tau`` the conditional modes and the Laplace approximation of the
    marginal likelihood (lme4's ``glmer`` with ``nAGQ = 1``).
:func:`lmm`
    A random-intercept linear model: fixed effects from statsmodels ``MixedLM``
    (REML), the groups' mean residuals pooled by :func:`normal_pooling`.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats
from threadpoolctl import threadpool_limits

__all__ = ["RandomEffects", "random_effects", "GroupEffects", "normal_pooling", "glmm_logit", "lmm", "one_blas_thread"]


def one_blas_thread(func):
    """Run ``func`` with one BLAS thread (as :func:`carecall_eval.evaluate` does): the small dense products of
    these models are faster so on a busy machine, and their sums do not depend on the thread count."""
    @functools.wraps(func)
    def run(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return func(*args, **kwargs)
    return run


@dataclass(frozen=True)
class RandomEffects:
    """A random-effects fit of ``k`` estimates."""

    mu: float          # pooled mean (random-effects weights)
    mu_se: float
    tau2: float        # between-group variance (DerSimonian-Laird, truncated at 0)
    q: float           # Cochran's Q
    df: int
    q_p: float         # p-value of Q against chi-square(df): small = the groups differ
    i2: float          # share of the variation beyond chance, max(0, (Q - df) / Q)
    k: int


def random_effects(y, se) -> RandomEffects:
    """Cochran's Q test and the DerSimonian-Laird random-effects fit of estimates ``y`` with errors ``se``.

    Examples
    --------
    >>> r = random_effects([0.0, 0.1, 0.4], [0.1, 0.1, 0.1])
    >>> round(r.q, 3), r.df, round(r.i2, 3)
    (8.667, 2, 0.769)
    """
    from statsmodels.stats.meta_analysis import combine_effects

    y = np.asarray(y, dtype=float)
    se = np.asarray(se, dtype=float)
    k = len(y)
    if k < 2:
        raise ValueError(f"random_effects needs at least two estimates, got {k}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(se)) and np.all(se > 0)):
        raise ValueError("random_effects: every estimate needs a finite value and a positive standard error")
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        # statsmodels takes the square root of a negative untruncated DL tau^2 (truncated below)
        warnings.filterwarnings("ignore", message="invalid value encountered in sqrt", category=RuntimeWarning)
        res = combine_effects(y, se ** 2, method_re="dl")
    q = float(res.q)
    tau2 = max(0.0, float(res.tau2))
    w = 1.0 / (se ** 2 + tau2)
    mu = float(np.sum(w * y) / w.sum())
    return RandomEffects(mu=mu, mu_se=float(np.sqrt(1 / w.sum())), tau2=tau2, q=q, df=k - 1,
                         q_p=float(stats.chi2.sf(q, k - 1)), i2=max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0, k=k)


@dataclass(frozen=True)
class GroupEffects:
    """Partially pooled group effects: posterior mean and sd of each group's deviation, and the between-group sd."""

    effect: np.ndarray      # posterior means (log-odds for the logit, outcome units otherwise); 0 = the average
    sd: np.ndarray          # posterior standard deviations (over tau)
    tau: float              # posterior mean of the between-group sd
    tau_ci: tuple           # equal-tailed credible interval of tau at the requested level
    mu: float               # the average group (normal pooling: the pooled mean; logit and LMM: 0)
    n: np.ndarray           # rows per group
    method: str
    beta: np.ndarray | None = None    # fixed effects (logit: at the posterior mode of tau)


def _mixture(grid, logl, means, sds, level):
    """Mix per-tau posteriors with weights proportional to the marginal likelihood (uniform prior on tau)."""
    w = np.exp(logl - np.max(logl))
    w = w / w.sum()
    mean = w @ means
    var = w @ (sds ** 2 + means ** 2) - mean ** 2
    cdf = np.cumsum(w)
    a = (1 - level) / 2
    lo = float(grid[min(np.searchsorted(cdf, a), len(grid) - 1)])
    hi = float(grid[min(np.searchsorted(cdf, 1 - a), len(grid) - 1)])
    return mean, np.sqrt(np.maximum(var, 0.0)), float(w @ grid), (lo, hi), w


def normal_pooling(y, se, *, level: float = 0.95, grid_size: int = 400) -> GroupEffects:
    """Partially pooled estimates: normal random effects averaged over the between-group sd.

    ``y_j ~ N(theta_j, se_j^2)``, ``theta_j ~ N(mu, tau^2)``, flat prior on ``mu``, uniform on ``tau``
    (over a grid up to five times the larger of the spread of ``y`` and the typical ``se``).  Returns
    each ``theta_j``'s posterior mean and sd (the pooled mean ``mu`` included in ``effect``).

    Examples
    --------
    >>> r = normal_pooling([0.0, 0.0, 0.0], [0.1, 0.1, 0.1])
    >>> [round(float(x), 6) for x in r.effect]
    [0.0, 0.0, 0.0]
    """
    y = np.asarray(y, dtype=float)
    se = np.asarray(se, dtype=float)
    if len(y) < 2 or not (np.all(np.isfinite(y)) and np.all(np.isfinite(se)) and np.all(se > 0)):
        raise ValueError("normal_pooling needs at least two finite estimates with positive standard errors")
    top = 5 * max(float(np.std(y)), float(np.median(se)))
    grid = np.linspace(0.0, top, grid_size)
    logl, means, sds, mus = [], [], [], []
    for tau in grid:
        v = se ** 2 + tau ** 2
        w = 1 / v
        mu = float(np.sum(w * y) / w.sum())
        v_mu = 1 / w.sum()
        logl.append(-0.5 * np.sum(np.log(v)) - 0.5 * np.log(w.sum()) - 0.5 * np.sum(w * (y - mu) ** 2))
        b = tau ** 2 / v
        means.append(mu + b * (y - mu))
        sds.append(np.sqrt(b * se ** 2 + (1 - b) ** 2 * v_mu))
        mus.append(mu)
    mean, sd, tau, tau_ci, wt = _mixture(grid, np.array(logl), np.array(means), np.array(sds), level)
    return GroupEffects(effect=mean, sd=sd, tau=tau, tau_ci=tau_ci, mu=float(wt @ np.array(mus)),
                        n=np.ones(len(y), int), method="normal random effects, uniform prior on the between-group "
                                                       "sd, flat prior on the mean")


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


def _penalized_mode(y, X, g, J, tau2, start):
    """Newton-Raphson (with step halving) for the mode of (beta, u) given tau2.

    The design is ``[X, Z]`` with ``Z`` the one-hot matrix of the groups ``g``; it is never built: its
    products are group sums (``np.bincount``), so a step costs O(n p^2) rather than O(n (p + J)^2).
    Returns (theta, hessian, loglik, weights).  A ridge of 1e-8 on the fixed effects keeps the Hessian
    invertible when a factor level separates (every call of one trigger answered, say); it moves no
    estimate that is identified.
    """
    p = X.shape[1]
    theta = start.copy()
    pen = np.r_[np.full(p, 1e-8), np.full(J, 1.0 / tau2)]

    def eta_of(th):
        return X @ th[:p] + th[p:][g]

    def objective(th):
        eta = eta_of(th)
        return float(np.sum(y * eta - np.logaddexp(0, eta)) - 0.5 * np.sum(pen * th ** 2))

    def hessian(w):
        Xw = X * w[:, None]
        H = np.empty((p + J, p + J))
        H[:p, :p] = Xw.T @ X
        xz = np.stack([np.bincount(g, weights=Xw[:, j], minlength=J) for j in range(p)])
        H[:p, p:] = xz
        H[p:, :p] = xz.T
        H[p:, p:] = np.diag(np.bincount(g, weights=w, minlength=J))
        return H + np.diag(pen)

    f = objective(theta)
    for _ in range(100):
        eta = eta_of(theta)
        mu = _expit(eta)
        w = mu * (1 - mu)
        r = y - mu
        grad = np.r_[X.T @ r, np.bincount(g, weights=r, minlength=J)] - pen * theta
        step = np.linalg.solve(hessian(w), grad)
        t = 1.0
        while t > 1e-4:
            f_new = objective(theta + t * step)
            if f_new >= f - 1e-12:
                break
            t /= 2
        theta = theta + t * step
        f = f_new
        if np.max(np.abs(t * step)) < 1e-8:
            break
    eta = eta_of(theta)
    mu = _expit(eta)
    w = mu * (1 - mu)
    ll = float(np.sum(y * eta - np.logaddexp(0, eta)))
    return theta, hessian(w), ll, w


def glmm_logit(y, X, groups, *, n_groups: int | None = None, level: float = 0.95, tau_max: float = 3.0,
               grid_size: int = 31) -> GroupEffects:
    """Random-intercept logistic regression, the group effects averaged over the between-group sd.

    Parameters
    ----------
    y : array-like of 0/1
    X : array-like
        Fixed-effect design with a constant column and linearly independent columns.
    groups : array-like of int
        Group codes ``0 .. J-1`` of the rows.
    level : float
        Level of the credible interval of ``tau``.
    tau_max, grid_size : float, int
        Grid of the between-group sd (log-odds), uniform prior over it.

    Notes
    -----
    At each ``tau`` the mode of ``(beta, u)`` maximises ``loglik - |u|^2 / (2 tau^2)``; the Laplace
    approximation of the marginal log-likelihood is that maximum minus ``sum_j log(1 + tau^2 d_j) / 2``,
    ``d_j`` the group's sum of ``p (1 - p)`` at the mode; each ``u_j``'s conditional sd comes from the
    inverse penalised Hessian (the fixed effects' uncertainty included).  The per-``tau`` results are
    averaged with weights proportional to the approximate marginal likelihood.  A group with few rows
    is pulled towards 0 (the average group) in proportion to its imprecision.
    """
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    g = np.asarray(groups, dtype=int)
    J = int(n_groups if n_groups is not None else g.max() + 1)
    n, p = X.shape
    grid = np.linspace(tau_max / (grid_size - 1) / 10, tau_max, grid_size)
    theta = np.zeros(p + J)
    logl, means, sds, betas = [], [], [], []
    # one BLAS thread: small dense products are faster so, and the sums do not depend on the thread count
    with threadpool_limits(limits=1, user_api="blas"):
        for tau in grid:
            theta, H, ll, w = _penalized_mode(y, X, g, J, tau ** 2, theta)
            u = theta[p:]
            d = np.bincount(g, weights=w, minlength=J)
            logl.append(ll - 0.5 * np.sum(u ** 2) / tau ** 2 - 0.5 * np.sum(np.log1p(tau ** 2 * d)))
            cov = np.linalg.inv(H)
            means.append(u.copy())
            sds.append(np.sqrt(np.diag(cov)[p:]))
            betas.append(theta[:p].copy())
    ll_grid = np.array(logl)
    mean, sd, tau, tau_ci, _ = _mixture(grid, ll_grid, np.array(means), np.array(sds), level)
    return GroupEffects(effect=mean, sd=sd, tau=tau, tau_ci=tau_ci, mu=0.0, n=np.bincount(g, minlength=J),
                        method="random-intercept logit (Laplace approximation), uniform prior on the "
                               "between-caller sd", beta=betas[int(np.argmax(ll_grid))])


def lmm(y, X, groups, *, n_groups: int | None = None, level: float = 0.95) -> GroupEffects:
    """Random-intercept linear model: fixed effects by REML (statsmodels ``MixedLM``), group effects pooled.

    The groups' mean residuals ``r_j`` (se ``sigma / sqrt(n_j)``) are pooled by :func:`normal_pooling`,
    so the effects are deviations from the average group in the outcome's units.
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning as SmConvergenceWarning
    from statsmodels.tools.sm_exceptions import SingularMatrixWarning

    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    g = np.asarray(groups, dtype=int)
    J = int(n_groups if n_groups is not None else g.max() + 1)
    with warnings.catch_warnings():
        # a variance on the boundary (no variation between groups) is an answer, not a failure: only the fixed
        # effects are taken from this fit, and the groups' variation is pooled below
        warnings.filterwarnings("ignore", category=SmConvergenceWarning)
        warnings.filterwarnings("ignore", category=SingularMatrixWarning)
        warnings.filterwarnings("ignore", message="The MLE may be on the boundary", category=UserWarning)
        fit = sm.MixedLM(y, X, groups=g).fit(reml=True)
    beta = np.asarray(fit.fe_params)
    r = y - X @ beta
    n = np.bincount(g, minlength=J)
    have = n > 0
    rj = np.bincount(g, weights=r, minlength=J)[have] / n[have]
    sigma = float(np.sqrt(fit.scale))
    pooled = normal_pooling(rj, sigma / np.sqrt(n[have]), level=level)
    eff, sd = np.zeros(J), np.full(J, np.nan)
    eff[have], sd[have] = pooled.effect - pooled.mu, pooled.sd
    return GroupEffects(effect=eff, sd=sd, tau=pooled.tau, tau_ci=pooled.tau_ci, mu=0.0, n=n, beta=beta,
                        method="random-intercept linear model (fixed effects by REML), group means pooled with a "
                               "uniform prior on the between-caller sd")
