"""Propensity scores by logistic regression.

The maximum-likelihood fit is found by Newton-Raphson with the gradient and
Hessian accumulated over row chunks (no ``n x p`` temporaries, so millions
of rows fit in a second or two), and returned as a genuine statsmodels
:class:`~statsmodels.discrete.discrete_model.LogitResults` on a
:class:`~statsmodels.discrete.discrete_model.Logit` model, so researchers get
the usual ``summary()``, ``bse``, ``predict()`` and so on.  The estimates are
those of R's ``glm(family = binomial)`` (MatchIt's ``distance = "glm"``); the
MatchIt reference tests check them to 1e-6.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.special import expit

from ..errors import ConvergenceWarning, DataWarning

__all__ = ["PropensityFit", "fit_propensity", "aliased_columns"]

_CHUNK = 1 << 16
_WARM_START_ROWS = 200_000


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """threadpoolctl's controller, made once (finding the loaded libraries took ~5 ms a call)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def single_threaded_blas():
    """Run numpy's BLAS on one thread inside the block.

    The products here are ``(chunk x p)`` by ``p`` with p ~ 10: too small for
    BLAS threads to pay off, and on a busy 2-core machine spinning OpenBLAS
    threads make them 5-10x slower.  Uses threadpoolctl when installed,
    else OpenBLAS's own ``set_num_threads`` through ctypes (Linux), else
    nothing.
    """
    controller = _blas_controller()
    if controller is not None:
        with controller.limit(limits=1, user_api="blas"):
            yield
        return
    lib = get = set_ = None
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower() and "/" in line}
        numpy_libs = sorted(p for p in paths if "numpy" in p) or sorted(paths)
        if numpy_libs:
            lib = ctypes.CDLL(numpy_libs[0])
            for prefix, suffix in (("scipy_", "64_"), ("", "64_"), ("scipy_", ""), ("", "")):
                get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    break
            else:
                get = set_ = None
    except OSError:  # pragma: no cover - no /proc or library not loadable
        get = set_ = None
    if get is None:
        yield
        return
    before = get()
    set_(1)
    try:
        yield
    finally:
        set_(before)


@dataclass(frozen=True, eq=False)
class PropensityFit:
    """A fitted propensity model.

    Attributes
    ----------
    results : statsmodels.discrete.discrete_model.BinaryResultsWrapper
        The statsmodels results (``results.model`` is the ``Logit`` model).
    coef : pandas.Series
        Coefficients by design column (aliased columns are NaN, as in R).
    ps : numpy.ndarray
        Fitted propensity scores, one per row of the data.
    linear_predictor : numpy.ndarray
        The logit of ``ps`` (``X @ coef``).
    dropped : tuple of str
        Design columns left out because they were collinear with earlier ones.
    converged : bool
    iterations : int
    """

    results: Any
    coef: pd.Series
    ps: np.ndarray = field(repr=False)
    linear_predictor: np.ndarray = field(repr=False)
    dropped: tuple = ()
    converged: bool = True
    iterations: int = 0

    @property
    def model(self):
        """The statsmodels ``Logit`` model."""
        return self.results.model


def _aliased(X: np.ndarray) -> np.ndarray:
    """Columns that are (numerically) linear combinations of earlier columns.

    Works on the small ``p x p`` cross-product matrix, sequentially in column
    order as R's ``glm`` pivots, so the same columns are dropped.
    """
    p = X.shape[1]
    G = np.zeros((p, p))
    for s in range(0, X.shape[0], _CHUNK):
        Xc = X[s:s + _CHUNK]
        G += Xc.T @ Xc
    d = np.sqrt(np.diag(G))
    d[d == 0] = 1.0
    C = G / np.outer(d, d)
    keep: list[int] = []
    out = np.zeros(p, dtype=bool)
    for j in range(p):
        if C[j, j] < 1e-12:
            out[j] = True
            continue
        if keep:
            K = np.array(keep)
            sol = np.linalg.lstsq(C[np.ix_(K, K)], C[K, j], rcond=None)[0]
            resid = C[j, j] - C[j, K] @ sol
        else:
            resid = C[j, j]
        if resid < 1e-9 * C[j, j]:
            out[j] = True
        else:
            keep.append(j)
    return out


def _pass(X: np.ndarray, y: np.ndarray, beta: np.ndarray, need_hess: bool = True):
    """Log-likelihood, gradient and (negative) Hessian at ``beta``, chunk by chunk."""
    p = X.shape[1]
    g = np.zeros(p)
    H = np.zeros((p, p))
    ll = 0.0
    for s in range(0, X.shape[0], _CHUNK):
        Xc = X[s:s + _CHUNK]
        yc = y[s:s + _CHUNK]
        eta = Xc @ beta
        pr = expit(eta)
        ll += float(yc @ eta - np.logaddexp(0.0, eta).sum())
        g += Xc.T @ (yc - pr)
        if need_hess:
            w = pr * (1.0 - pr)
            H += (Xc * w[:, None]).T @ Xc
    return ll, g, H


def _newton(X: np.ndarray, y: np.ndarray, maxiter: int = 50, beta0: np.ndarray | None = None):
    p = X.shape[1]
    beta = np.zeros(p) if beta0 is None else np.asarray(beta0, dtype=float).copy()
    ll, g, H = _pass(X, y, beta)
    if not np.isfinite(ll):
        beta = np.zeros(p)
        ll, g, H = _pass(X, y, beta)
    converged = False
    it = 0
    for it in range(1, maxiter + 1):  # noqa: B007 (the count is returned)
        try:
            step = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(H, g, rcond=None)[0]
        new = beta + step
        if np.all(np.abs(step) <= 1e-10 * (1.0 + np.abs(new))):
            # converged: a further pass would change the Hessian and the
            # log-likelihood only in digits beyond double precision
            beta = new
            converged = True
            break
        ll_new, g_new, H_new = _pass(X, y, new)
        halvings = 0
        while (not np.isfinite(ll_new) or ll_new < ll - 1e-10 * (abs(ll) + 1)) and halvings < 30:
            step = step / 2
            new = beta + step
            ll_new, g_new, H_new = _pass(X, y, new)
            halvings += 1
        small_dev = abs(ll_new - ll) <= 1e-12 * (abs(ll_new) + 0.1)
        beta, ll, g, H = new, ll_new, g_new, H_new
        if small_dev and np.all(np.abs(step) <= 1e-6 * (1.0 + np.abs(beta))):
            converged = True
            break
    return beta, ll, H, it, converged


def _statsmodels_results(model, beta, H, ll, iterations, converged):
    """Wrap an MLE found here as statsmodels ``LogitResults`` (same object ``Logit.fit`` returns)."""
    from statsmodels.base.model import LikelihoodModelResults
    from statsmodels.discrete.discrete_model import BinaryResultsWrapper, LogitResults

    try:
        cov = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        cov = np.linalg.pinv(H)
    mle = LikelihoodModelResults(model, beta, normalized_cov_params=cov, scale=1.0)
    mle.mle_retvals = {"fopt": -ll / model.exog.shape[0], "iterations": iterations,
                       "converged": converged, "Hessian": -H}
    mle.mle_settings = {"optimizer": "newton", "start_params": np.zeros_like(beta), "maxiter": 50,
                        "full_output": True, "disp": False, "callback": None, "retall": False,
                        "tol": 1e-10, "chunked": True}
    res = BinaryResultsWrapper(LogitResults(model, mle))
    # touch the attributes every caller relies on, so an incompatible
    # statsmodels fails here (and falls back) rather than later
    res.params, res.bse  # noqa: B018
    return res


def aliased_columns(X: np.ndarray) -> np.ndarray:
    """Boolean mask of the design columns :func:`fit_propensity` leaves out as collinear (they depend on
    ``X`` only, so a caller fitting many treatments on one design finds them once and passes ``alias=``)."""
    with single_threaded_blas():
        return _aliased(np.asarray(X, dtype=float))


def fit_propensity(X: np.ndarray, treat: np.ndarray, names: Sequence[str], *,
                   alias: np.ndarray | None = None) -> PropensityFit:
    """Fit a logistic propensity model ``P(treat = 1 | X)``.

    Parameters
    ----------
    X : numpy.ndarray
        ``(n, p)`` design matrix whose first column is the intercept.
    treat : numpy.ndarray
        Boolean treatment indicator, length ``n``.
    names : sequence of str
        Column names of ``X``.
    alias : numpy.ndarray, optional
        :func:`aliased_columns` of ``X``, when already known (the same fit; only the pass finding them is
        saved).

    Returns
    -------
    PropensityFit
        Fitted scores, linear predictor, coefficients and the statsmodels
        results object.

    Warns
    -----
    carecall_eval.errors.DataWarning
        When design columns are collinear (they are dropped, as R's ``glm``
        drops aliased coefficients).
    carecall_eval.errors.ConvergenceWarning
        When the fit does not converge, or when fitted scores reach 0 or 1
        (perfect separation).

    Notes
    -----
    Newton-Raphson with step halving, started at zero (or, above 200,000
    rows, at the fit on a systematic subsample of 100,000 rows) and run on
    all rows until the largest relative coefficient change is below 1e-10.  Gradient and
    Hessian are accumulated over chunks of 65,536 rows.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=500)
    >>> t = rng.random(500) < 1 / (1 + np.exp(-(0.5 + x)))
    >>> X = np.column_stack([np.ones(500), x])
    >>> fit = fit_propensity(X, t, ["Intercept", "x"])
    >>> bool(np.allclose(fit.coef, fit.results.params))
    True
    """
    from statsmodels.discrete.discrete_model import Logit

    X = np.asarray(X, dtype=float)
    y = np.asarray(treat, dtype=float)
    names = list(names)
    if alias is None:
        with single_threaded_blas():
            alias = _aliased(X)
    else:
        alias = np.asarray(alias, dtype=bool)
    dropped = tuple(n for n, a in zip(names, alias) if a)
    if dropped:
        warnings.warn(
            f"propensity model: column(s) {list(dropped)} are collinear with other covariates and "
            "were left out (their coefficients are NaN, as in R's glm).",
            DataWarning, stacklevel=3,
        )
        Xf = np.ascontiguousarray(X[:, ~alias])
        fnames = [n for n, a in zip(names, alias) if not a]
    else:
        Xf, fnames = X, names
    with single_threaded_blas():
        beta0 = None
        if Xf.shape[0] > _WARM_START_ROWS:
            # Start from the fit on a systematic subsample: the full-data
            # Newton iterations then converge in 2-3 passes instead of ~8.
            sub = np.linspace(0, Xf.shape[0] - 1, _WARM_START_ROWS // 2).astype(np.int64)
            b_sub, _, _, _, ok = _newton(Xf[sub], y[sub], maxiter=25)
            if ok and np.all(np.isfinite(b_sub)):
                beta0 = b_sub
        beta, ll, H, iterations, converged = _newton(Xf, y, beta0=beta0)
    exog = pd.DataFrame(Xf, columns=fnames, copy=False)
    model = Logit(y, exog, check_rank=False)
    try:
        results = _statsmodels_results(model, beta, H, ll, iterations, converged)
    except Exception:  # pragma: no cover - only if statsmodels internals change
        from statsmodels.tools import sm_exceptions

        with warnings.catch_warnings():
            # non-convergence and separation are reported below, as the project's own warnings
            warnings.filterwarnings("ignore", category=sm_exceptions.ConvergenceWarning)
            warnings.filterwarnings("ignore", category=sm_exceptions.PerfectSeparationWarning)
            warnings.filterwarnings("ignore", category=sm_exceptions.HessianInversionWarning)
            results = model.fit(start_params=beta, method="newton", disp=False)
        beta = np.asarray(results.params)
    lin = np.empty(X.shape[0])
    with single_threaded_blas():
        for s in range(0, X.shape[0], _CHUNK):
            lin[s:s + _CHUNK] = Xf[s:s + _CHUNK] @ beta
    ps = expit(lin)
    if not converged:
        warnings.warn(
            f"propensity model did not converge in {iterations} Newton iterations; the covariates "
            "may separate the groups perfectly. Check the balance table before using the matches.",
            ConvergenceWarning, stacklevel=3,
        )
    elif np.any(ps <= 1e-12) or np.any(ps >= 1 - 1e-12):
        warnings.warn(
            "propensity scores of 0 or 1 occurred: some covariate pattern separates the groups "
            "perfectly. Consider coarser covariates or discard='both'.",
            ConvergenceWarning, stacklevel=3,
        )
    coef = pd.Series(np.nan, index=names, name="coef")
    coef[fnames] = beta
    return PropensityFit(results=results, coef=coef, ps=ps, linear_predictor=lin, dropped=dropped,
                         converged=converged, iterations=iterations)
