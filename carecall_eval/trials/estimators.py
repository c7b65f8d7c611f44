"""Estimators of a randomized trial, on arrays: covariate-standardized arm means and what is built from them.

Everything here is one idea, applied several times.  The mean outcome an arm
would have if everyone randomized had been assigned to it, ``mu_a``, is
estimated by *standardization*: a Poisson working model of the outcome on
baseline covariates is fitted within the arm, and its predictions are averaged
over every randomized unit.  With a log link and an intercept this is
consistent whatever the working model gets wrong (the arms are randomized, so
the covariates have the same distribution in every arm), and the covariates
(pre-window spending) remove much of the noise of heavy-tailed spending.
Each estimate comes with its per-unit influence contributions ``phi`` (so that
``estimate - truth ~ sum(phi)``), and every standard error is the cluster sum of
those contributions: clusters are the matched sets or randomization blocks when
the data carry them, else customers.

* **ITT** (intention to treat): ``mu_arm / mu_control - 1``, interval on the
  log scale (delta method).
* **Effect of being reached** (complier average causal effect, CACE): with
  assignment to the call arm as the instrument for being reached, and no one in
  control reached (one-sided non-compliance), ``E[Y(1) | C] / E[Y(0) | C] - 1 =
  (mu_call - nu) / (mu_control - nu) - 1``, where ``nu`` is the standardized
  mean of ``Y * (1 - reached)`` in the call arm: the never-reached customers'
  outcome, which the exclusion restriction makes the same in both arms.  This
  is the Wald (ratio) estimator on the ratio scale, and the same as
  multiplicative IV-Poisson GMM with assignment as the instrument (Mullahy
  1997).  Its interval is Fieller's (exact for a ratio of two jointly normal
  estimates: it stays right when reach is low and the denominator uncertain)
  or the delta method on the log scale.
* **Per protocol**: reached members of the call arm (standardized over everyone)
  against control.  Who answers differs from who does not, so this is *not
  randomized*; it is kept only because operators quote it.
* **Shares** (retention, actions): arm shares and their differences against
  control, the same cluster-robust contributions, Wald intervals.

References: Rosenblum & van der Laan (2010), "Simple, efficient estimators of
treatment effects in randomized trials using generalized linear models to
leverage baseline variables", Int J Biostat 6(1); Angrist, Imbens & Rubin
(1996), JASA 91; Fieller (1954), JRSS B 16; Mullahy (1997), REStat 79.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validation import z_quantile

__all__ = ["Standardized", "standardized_mean", "cluster_cov", "log_ratio", "itt_ratio", "complier_ratio",
           "fieller", "fieller_contains", "share_difference", "poisson_fit"]


def poisson_fit(y: np.ndarray, X: np.ndarray, *, maxiter: int = 100, tol: float = 1e-10):
    """Poisson maximum (pseudo-)likelihood by Newton's method with step halving.

    ``X`` includes the constant.  Columns that are constant (other than the
    first) or linearly dependent on earlier ones are dropped.  Returns
    ``(beta, kept)``: coefficients of the kept columns and their indices.
    """
    from scipy.linalg import qr

    y = np.asarray(y, float)
    X = np.asarray(X, float)
    varying = [0] + [j for j in range(1, X.shape[1]) if np.ptp(X[:, j]) > 0]
    Xv = X[:, varying]
    if Xv.shape[1] > 1:       # linearly independent columns, the constant first (pivoted QR on the rest)
        Z = Xv[:, 1:] - Xv[:, 1:].mean(axis=0)
        _, R, piv = qr(Z, mode="economic", pivoting=True)
        d = np.abs(np.diag(R))
        rank = int((d > d[0] * 1e-10).sum()) if len(d) and d[0] > 0 else 0
        kept = [varying[0]] + sorted(varying[1 + j] for j in piv[:rank])
    else:
        kept = varying
    Xk = X[:, kept]
    beta = np.zeros(len(kept))
    beta[0] = math.log(max(float(y.mean()), 1e-300))

    def loglik(b):
        eta = Xk @ b
        return float(y @ eta - np.exp(eta).sum())

    ll = loglik(beta)
    for _ in range(maxiter):
        mu = np.exp(Xk @ beta)
        grad = Xk.T @ (y - mu)
        H = (Xk * mu[:, None]).T @ Xk
        step = np.linalg.lstsq(H, grad, rcond=None)[0]
        t = 1.0
        while True:
            new = beta + t * step
            ll_new = loglik(new)
            if np.isfinite(ll_new) and ll_new >= ll - 1e-12 * abs(ll):
                break
            t /= 2
            if t < 1e-8:
                new, ll_new = beta, ll
                break
        converged = abs(ll_new - ll) <= tol * (abs(ll) + 1.0)
        beta, ll = new, ll_new
        if converged:
            break
    return beta, np.array(kept)


@dataclass(frozen=True)
class Standardized:
    """A standardized mean and its per-unit influence contributions (``value - truth ~ phi.sum()``)."""

    value: float
    phi: np.ndarray


def standardized_mean(y: np.ndarray, X: np.ndarray, fit: np.ndarray) -> Standardized:
    """Mean over all units of a Poisson working model's predictions, the model fitted where ``fit`` is True.

    Parameters
    ----------
    y : array (n,)
        Non-negative outcome (read only where ``fit``).
    X : array (n, p)
        Baseline covariates *without* the constant.
    fit : bool array (n,)
        The units the model is fitted on (one arm, or the reached part of it).

    Notes
    -----
    With ``e_i = exp(x_i' beta)``, ``q = mean(e)``, ``H = sum_fit e_i x_i x_i'``
    and ``g = mean(e_i x_i)``, the contribution of unit ``i`` is
    ``(e_i - q) / n + 1[fit] g' H^{-1} x_i (y_i - e_i)`` (the linearization of
    the stacked estimating equations).  Without covariates it reduces to
    ``(y_i - ybar) / n_fit`` in the fitted arm and 0 elsewhere.
    """
    y = np.asarray(y, float)
    fit = np.asarray(fit, bool)
    n = len(y)
    Xc = np.column_stack([np.ones(n), np.asarray(X, float).reshape(n, -1)])
    if not fit.any() or float(y[fit].sum()) <= 0:
        return Standardized(float("nan"), np.full(n, np.nan))
    beta, kept = poisson_fit(y[fit], Xc[fit])
    Xk = Xc[:, kept]
    e = np.exp(Xk @ beta)
    q = float(e.mean())
    H = (Xk[fit] * e[fit, None]).T @ Xk[fit]
    g = (Xk * e[:, None]).mean(axis=0)
    a = np.linalg.lstsq(H, g, rcond=None)[0]
    phi = (e - q) / n
    phi[fit] += (Xk[fit] @ a) * (y[fit] - e[fit])
    return Standardized(q, phi)


def cluster_cov(phis: list[np.ndarray], clusters: np.ndarray) -> np.ndarray:
    """Covariance matrix of estimates from their contributions, summed within clusters (factor G/(G-1))."""
    P = np.column_stack(phis)
    _, inv = np.unique(np.asarray(clusters), return_inverse=True)
    G = int(inv.max()) + 1
    S = np.zeros((G, P.shape[1]))
    np.add.at(S, inv, P)
    return S.T @ S * (G / (G - 1) if G > 1 else np.nan)


def log_ratio(num: Standardized, den: Standardized, clusters, level: float) -> dict:
    """``num / den - 1`` with an interval from the log scale (delta method)."""
    if not (num.value > 0 and den.value > 0):
        return _missing()
    phi = num.phi / num.value - den.phi / den.value
    se = float(math.sqrt(cluster_cov([phi], clusters)[0, 0]))
    lr = math.log(num.value / den.value)
    z = z_quantile(level)
    return {"estimate": math.expm1(lr), "se": se, "ci_low": math.expm1(lr - z * se),
            "ci_high": math.expm1(lr + z * se)}


def _missing() -> dict:
    return {"estimate": float("nan"), "se": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}


def itt_ratio(y, X, arm: np.ndarray, control: np.ndarray, clusters, level: float) -> dict:
    """Intention to treat: standardized mean of the arm over that of control, minus one."""
    return log_ratio(standardized_mean(y, X, arm), standardized_mean(y, X, control), clusters, level)


def fieller(a: float, b: float, vaa: float, vbb: float, vab: float, level: float) -> tuple[float, float]:
    """Fieller's interval for ``a / b`` from (co)variances of ``a`` and ``b``; (nan, nan) when it is unbounded.

    The set of ``r`` with ``(a - r b)^2 <= z^2 var(a - r b)`` is a bounded
    interval exactly when ``b`` is significantly different from zero
    (``b^2 > z^2 var(b)``).

    >>> lo, hi = fieller(2.0, 4.0, 0.01, 0.04, 0.0, 0.95)
    >>> round(lo, 4), round(hi, 4)
    (0.435, 0.5746)
    """
    z2 = z_quantile(level) ** 2
    A = b * b - z2 * vbb
    B = a * b - z2 * vab
    C = a * a - z2 * vaa
    if A <= 0:
        return float("nan"), float("nan")
    disc = max(B * B - A * C, 0.0)
    r = math.sqrt(disc)
    return (B - r) / A, (B + r) / A


def complier_ratio(y, X, call: np.ndarray, control: np.ndarray, reached: np.ndarray, clusters, level: float,
                   interval: str = "fieller") -> dict:
    """Effect of being reached (CACE) on the ratio scale, with assignment as the instrument.

    ``reached`` must be False for everyone outside the call arm (one-sided
    non-compliance: nobody in control can be reached).  Returns the estimate
    (``ratio - 1``), ``se`` of the log ratio (delta method), the interval
    (``interval="fieller"`` or ``"delta"``), the share reached ``reach`` and
    the compliers' share of the call arm's outcome.
    """
    call, control, reached = (np.asarray(v, bool) for v in (call, control, reached))
    if (reached & ~call).any():
        raise ValueError("complier_ratio: reached customers outside the call arm (one-sided non-compliance "
                         "is assumed: nobody in control can be reached)")
    y = np.asarray(y, float)
    mu1 = standardized_mean(y, X, call)
    mu0 = standardized_mean(y, X, control)
    nu = standardized_mean(y * (~reached), X, call)
    if not np.isfinite(nu.value):           # everyone in the call arm reached, or no spending among the others
        nu = Standardized(0.0, np.zeros(len(y)))
    a, b = mu1.value - nu.value, mu0.value - nu.value
    out = {"reach": float(reached[call].mean()) if call.any() else float("nan")}
    if not (np.isfinite(a) and np.isfinite(b) and a > 0 and b > 0):
        return {**_missing(), **out}
    pa, pb = mu1.phi - nu.phi, mu0.phi - nu.phi
    V = cluster_cov([pa, pb], clusters)
    vaa, vbb, vab = float(V[0, 0]), float(V[1, 1]), float(V[0, 1])
    se = math.sqrt(max(vaa / a ** 2 + vbb / b ** 2 - 2 * vab / (a * b), 0.0))
    r = a / b
    if interval == "fieller":
        lo, hi = fieller(a, b, vaa, vbb, vab, level)
    elif interval == "delta":
        z = z_quantile(level)
        lo, hi = r * math.exp(-z * se), r * math.exp(z * se)
    else:
        raise ValueError(f"interval must be one of ['fieller', 'delta'], got {interval!r}")
    return {"estimate": r - 1, "se": se, "ci_low": lo - 1, "ci_high": hi - 1, **out,
            "fieller": {"a": a, "b": b, "vaa": vaa, "vbb": vbb, "vab": vab}}


def fieller_contains(f: dict, ratio: float, level: float) -> bool:
    """Whether Fieller's confidence set (bounded or not) for ``a / b`` contains ``ratio``.

    ``f`` holds ``a, b, vaa, vbb, vab`` (the ``fieller`` entry of :func:`complier_ratio`).
    """
    z2 = z_quantile(level) ** 2
    r = ratio
    return (f["a"] - r * f["b"]) ** 2 <= z2 * (f["vaa"] - 2 * r * f["vab"] + r * r * f["vbb"])


def share_difference(y, arm: np.ndarray, control: np.ndarray, clusters, level: float) -> dict:
    """Difference of two arms' shares (or means) with a cluster-robust Wald interval."""
    y = np.asarray(y, float)
    arm, control = np.asarray(arm, bool), np.asarray(control, bool)
    if not arm.any() or not control.any():
        return _missing()
    p1, p0 = float(y[arm].mean()), float(y[control].mean())
    phi = np.zeros(len(y))
    phi[arm] = (y[arm] - p1) / arm.sum()
    phi[control] = -(y[control] - p0) / control.sum()
    keep = arm | control
    se = float(math.sqrt(cluster_cov([phi[keep]], np.asarray(clusters)[keep])[0, 0]))
    z = z_quantile(level)
    d = p1 - p0
    return {"estimate": d, "se": se, "ci_low": d - z * se, "ci_high": d + z * se}
