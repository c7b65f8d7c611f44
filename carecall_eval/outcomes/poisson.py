"""Fast paths of the toolkit's robust fits, with statsmodels' sandwiches: weighted Poisson pseudo-likelihood
by Newton's method, and the two-group weighted difference in means (:func:`two_group_wls`).

:func:`carecall_eval.outcomes.spending.ppml` is the one PPML of the toolkit; this is its fast path.  A
statsmodels ``GLM(family=Poisson(), var_weights=w, exposure=e).fit(method="newton", cov_type=...)`` spends
most of its time outside the arithmetic (design copies, wrappers, a generic numerical path for the
robust covariance).  Here the same maximum is found on the analytic score and Hessian of the canonical
link, and the covariance is statsmodels' own formula:

* ``cov_type="cluster"``: ``c * H^-1 (sum_g s_g s_g') H^-1`` with ``s_g`` the cluster sums of the unit
  scores ``w_i (y_i - mu_i) x_i`` and statsmodels' small-sample factor
  ``c = G / (G - 1) * (n - 1) / (n - k)``;
* ``cov_type="HC0"``: the same without clusters or factor.

``tests/test_poisson.py`` checks estimates and standard errors against statsmodels itself.  Anything
this path cannot settle (a singular Hessian, no convergence, a non-finite value) returns None and
``ppml`` falls back to statsmodels.
"""
from __future__ import annotations

import numpy as np

__all__ = ["poisson_newton", "two_group_wls"]

#: Newton stops once a step moved no coefficient by more than this.  Convergence is quadratic here, so the
#: error left after such a step is of the order of its square (about 1e-14; statsmodels stops at a relative
#: change of 1e-8).
TOL = 1e-7
MAX_ITER = 100


def _cluster_sums(scores: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-cluster column sums of ``scores`` (rows x k) for integer cluster codes 0..n_groups-1."""
    cols = np.asfortranarray(scores)          # each column contiguous: bincount reads it in one sweep
    out = np.empty((n_groups, scores.shape[1]))
    for j in range(scores.shape[1]):          # over the k columns, not the rows
        out[:, j] = np.bincount(codes, weights=cols[:, j], minlength=n_groups)
    return out


#: Rows per block of :func:`_xtwx`: small enough for a block of the design to stay in the CPU cache.
BLOCK_ROWS = 8192


def _xtwx(X: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """X' diag(wm) X for non-negative ``wm``: (sqrt(wm) X)'(sqrt(wm) X) summed over blocks of rows.

    Each block is one symmetric rank-k update, and no n x k temporary is built (at a million rows that
    array is paged in afresh at every Newton step).
    """
    n, k = X.shape
    out = np.zeros((k, k))
    sw = np.sqrt(wm)
    for i in range(0, n, BLOCK_ROWS):            # over blocks of rows (n / 8192 of them), not over rows
        B = X[i:i + BLOCK_ROWS] * sw[i:i + BLOCK_ROWS, None]
        out += B.T @ B
    return out


def poisson_newton(y: np.ndarray, X: np.ndarray, *, weights: np.ndarray, offset: np.ndarray | None,
                   start: np.ndarray, codes: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """Maximise the weighted Poisson pseudo-likelihood; return ``(params, cov)`` or None.

    Parameters
    ----------
    y, X, weights : ndarray
        Outcome (n), design with its constant (n x k), ``var_weights`` (n).
    offset : ndarray or None
        Log exposure (n).
    start : ndarray
        Starting coefficients (k).
    codes : ndarray of int, optional
        Cluster codes 0..G-1 (``pandas.factorize``) for the cluster sandwich; None gives HC0.
    """
    n, k = X.shape
    if np.any(weights < 0):
        return None
    beta = np.asarray(start, float).copy()
    off = 0.0 if offset is None else offset

    def loglike(b):
        """The pseudo-log-likelihood at ``b`` and the fitted means there (the next step's, once accepted)."""
        eta = X @ b + off
        with np.errstate(over="ignore"):
            mu = np.exp(eta)
            return float(np.sum(weights * (y * eta - mu))), mu

    ll, mu = loglike(beta)
    converged = False
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(MAX_ITER):
            wm = weights * mu                  # mu = exp(X beta + off), kept from the accepted step
            score = X.T @ (weights * (y - mu))
            hess = _xtwx(X, wm)
            if not (np.all(np.isfinite(score)) and np.all(np.isfinite(hess))):
                return None
            try:
                step = np.linalg.solve(hess, score)
            except np.linalg.LinAlgError:
                return None
            # step halving keeps the (concave) pseudo-likelihood rising from a poor start
            for _ in range(30):
                new = beta + step
                ll_new, mu_new = loglike(new)
                if np.isfinite(ll_new) and ll_new >= ll - 1e-12 * abs(ll):
                    break
                step = step / 2
            else:
                return None
            beta, ll, mu = new, ll_new, mu_new
            if np.max(np.abs(step)) < TOL:
                converged = True
                break
        if not converged:
            return None
        hess = _xtwx(X, weights * mu)
        try:
            bread = np.linalg.inv(hess)
        except np.linalg.LinAlgError:
            return None
        scores = X * (weights * (y - mu))[:, None]
        if codes is None:
            meat = scores.T @ scores
            factor = 1.0
        else:
            n_groups = int(codes.max()) + 1 if len(codes) else 0
            sums = _cluster_sums(scores, codes, n_groups)
            meat = sums.T @ sums
            factor = n_groups / (n_groups - 1) * (n - 1) / (n - k) if n_groups > 1 and n > k else np.nan
        cov = factor * bread @ meat @ bread
    if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(cov))):
        return None
    return beta, cov


def two_group_wls(y: np.ndarray, treat: np.ndarray, weights: np.ndarray, codes: np.ndarray | None
                  ) -> tuple[float, float]:
    """WLS of ``y`` on a constant and a 0/1 ``treat``: the difference in weighted means and its robust se.

    The same numbers as ``statsmodels.api.WLS(y, [1, treat], weights).fit(cov_type="cluster")`` (statsmodels'
    factor ``G / (G - 1) * (n - 1) / (n - 2)``) or, without ``codes``, ``cov_type="HC1"`` (``n / (n - 2)``):
    the fit is closed-form (the two weighted means) and the sandwich is built from the unit scores
    ``w_i x_i e_i``.  ``tests/test_poisson.py`` checks both against statsmodels.
    """
    n = len(y)
    t = treat.astype(bool)
    w1, w0 = weights[t].sum(), weights[~t].sum()
    m1, m0 = (weights[t] * y[t]).sum() / w1, (weights[~t] * y[~t]).sum() / w0
    resid = y - np.where(t, m1, m0)
    X = np.column_stack([np.ones(n), t.astype(float)])
    bread = np.linalg.inv(np.array([[w0 + w1, w1], [w1, w1]]))
    scores = X * (weights * resid)[:, None]
    if codes is None:
        meat = scores.T @ scores
        factor = n / (n - 2)
    else:
        n_groups = int(codes.max()) + 1
        sums = _cluster_sums(scores, codes, n_groups)
        meat = sums.T @ sums
        factor = n_groups / (n_groups - 1) * (n - 1) / (n - 2)
    cov = factor * bread @ meat @ bread
    return float(m1 - m0), float(np.sqrt(cov[1, 1]))
