"""Spending change after a care call: naive, matched (primary), post-only ratio, difference in differences.

Percent changes are ratios of means estimated by Poisson pseudo-likelihood
(PPML: a Poisson GLM with robust errors), never means of log(x + 1):

* **naive change** (what operators quote): contacts' post-window daily mean
  over their pre-window daily mean, minus one.  Regression to the mean is in it.
* **matched change** (primary): on the matched sample, with matching weights,
  PPML of the post-window outcome on the contact indicator plus baseline
  covariates (including pre-window spending in several windows); exp(beta) - 1
  with cluster-robust errors under the sample's one cluster rule (by matched
  set, or by customer when matching with replacement; see
  :meth:`~carecall_eval.cohorts.sample.MatchedSample.cluster_ids`).
* **matched difference** in mean post-window spending (currency), weighted
  least squares with the same clusters.
* **post-only ratio**: matched ratio of weighted post-window means, no covariates.
* **difference in differences**: group x period interaction of a PPML on
  stacked pre and post windows (ratio of ratios).  Biased under regression to
  the mean when raw pre-window means differ between matched groups, even
  though log-scale covariates balance; reported beside, never as the headline.
"""
from __future__ import annotations

import contextlib
import contextvars
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._validation import check_choice, check_horizon, check_int, check_level, z_quantile
from ..cohorts.build import Cohort, build_cohort, post_windows, recompute_covariates
from ..cohorts.sample import MatchedSample, as_sample
from ..cohorts.windows import (
    MEASURES,
    in_shared_pass,
    moments_from_series,
    weekly_moments,
    weekly_series,
    window_totals,
)
from ..contract.base import open_data
from ..errors import ConvergenceWarning, InputError, NotAvailableError
from ..narrative.spending import text as narrative_text
from ..results import Result, not_available, tidy
from .poisson import poisson_newton, two_group_wls

#: Outcome measures: column stem -> label.
OUTCOMES = {"tl": "theoretical loss", "net_loss": "net loss", "wagered": "amount wagered",
            "deposits": "deposits", "active_days": "active days"}

#: Matching-covariate names that are pre-window spending (also used as PPML regressors).
PPML_SPEND_COVARIATES = ("log_tl_28", "log_tl_84_29", "log_tl_365_85")


def add_outcomes(dataset, table: pd.DataFrame, windows=(28, 84, 365), pre_window: int = 84, *,
                 copy: bool = True) -> pd.DataFrame:
    """Pre- and post-window totals of every measure on a cohort (or matched) table.

    Returns a copy with ``{measure}_pre`` and ``{measure}_post{w}`` columns
    (``tl`` = theoretical loss); rows keep their index.  A cohort computes
    these in its covariate pass (see :func:`~carecall_eval.cohorts.build.outcome_windows`),
    so tables derived from it already have them and no query runs; other
    tables are summed now.  ``copy=False`` returns such a table itself (for a
    frame the caller has just made, e.g. by :func:`analysis_columns`).
    """
    wins = {"pre": (-pre_window, -1), **post_windows(windows)}
    cols = [f"{m}_{n}" for n in wins for m in MEASURES]
    if all(c in table.columns for c in cols):
        return table.copy() if copy else table
    keys = pd.DataFrame({"row_id": np.arange(len(table)), "customer_id": table["customer_id"].to_numpy(),
                         "index_date": table["index_date"].to_numpy()})
    tot = window_totals(dataset, keys, wins)
    out = table.drop(columns=[c for c in tot.columns if c in table.columns])
    # by position: a table of matched sets repeats index labels, and a join on them would multiply rows
    return pd.concat([out, tot.set_axis(out.index)], axis=1)


# ---------------------------------------------------------------------------
# the one PPML implementation
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RatioEstimate:
    """exp(coef) - 1 for one coefficient of a PPML fit."""

    estimate: float
    ci_low: float
    ci_high: float
    coef: float
    se: float
    n: int
    params: pd.Series
    converged: bool = True


def ppml(y, X: pd.DataFrame, *, term: str, weights=None, groups=None, exposure=None,
         level: float = 0.95, start=None) -> RatioEstimate:
    """Poisson pseudo-likelihood fit; return ``exp(beta_term) - 1`` with a robust interval.

    Parameters
    ----------
    y : array-like
        Non-negative outcome (need not be integer).
    X : pandas.DataFrame
        Regressors; a constant is added.
    term : str
        Column of ``X`` whose coefficient is reported.
    weights : array-like, optional
        Matching or sampling weights (statsmodels ``var_weights``: the score is
        the weighted sum of unit scores).
    groups : array-like, optional
        Cluster ids for cluster-robust errors; None gives heteroskedasticity-robust (HC0).
    exposure : array-like, optional
        Window lengths, so coefficients compare daily means.
    level : float
        Confidence level.
    start : mapping or Series, optional
        Starting coefficients by name (``const`` and columns of ``X``; others start at 0), e.g. a closed
        form or a larger sample's fit: Newton then needs fewer steps to the same maximum.  Default: the
        log of the weighted mean rate for the constant, 0 elsewhere.
    """
    y = _outcome(y)
    names = ["const", *(str(c) for c in X.columns)]
    Xa = np.empty((len(y), X.shape[1] + 1))
    Xa[:, 0] = 1.0
    Xa[:, 1:] = X.to_numpy(dtype=float)
    keep = [i for i, c in enumerate(names) if c in ("const", term) or np.std(Xa[:, i]) != 0]
    Xa, names = Xa[:, keep], [names[i] for i in keep]
    wt = np.ones(len(y)) if weights is None else np.asarray(weights, float)
    ex = None if exposure is None else np.asarray(exposure, float)
    codes = None if groups is None else _cluster_codes(groups)
    return _ppml_fit(y, Xa, names, term=term, weights=wt, codes=codes, exposure=ex, level=level, start=start)


def _outcome(y) -> np.ndarray:
    """``y`` as floats, refused unless finite and non-negative (PPML's outcome)."""
    y = np.asarray(y, dtype=float)
    if np.any(~np.isfinite(y)) or np.any(y < 0):
        raise ValueError("ppml: the outcome must be finite and non-negative")
    return y


def _cluster_codes(groups) -> np.ndarray:
    """Cluster codes 0..G-1 in order of first appearance (integer labels give the same codes as their labels)."""
    return pd.factorize(pd.Series(np.asarray(groups)))[0]


def _ppml_fit(y: np.ndarray, Xa: np.ndarray, names: list[str], *, term: str, weights: np.ndarray,
              codes: np.ndarray | None, exposure: np.ndarray | None, level: float, start) -> RatioEstimate:
    """:func:`ppml` on its final arrays: ``Xa`` the design with its constant (every column but ``const`` and
    ``term`` non-constant), ``names`` its column names, ``codes`` the cluster codes (or None)."""
    wt, ex = weights, exposure
    start0 = np.zeros(Xa.shape[1])
    rate = y / (1.0 if ex is None else ex)
    start0[names.index("const")] = np.log(max(np.average(rate, weights=wt), 1e-12))
    # the fast path: Newton on the analytic score and Hessian, statsmodels' sandwich (outcomes/poisson.py;
    # tests/test_poisson.py checks it against statsmodels); statsmodels itself for anything it cannot settle
    first = start
    if first is not None:
        given = {str(k): float(v) for k, v in dict(first).items()}
        first = np.array([given.get(n, v) for n, v in zip(names, start0)])
        if not np.all(np.isfinite(first)):
            first = None
    fast = poisson_newton(y, Xa, weights=wt, offset=None if ex is None else np.log(ex),
                          start=start0 if first is None else first, codes=codes)
    if fast is not None:
        params = pd.Series(fast[0], index=names)
        j = names.index(term)
        return _ratio(float(fast[0][j]), float(np.sqrt(fast[1][j, j])), len(y), params, True, level)
    fit, converged = _statsmodels_ppml(y, pd.DataFrame(Xa, columns=names), wt, ex, codes, start0)
    return _ratio(float(fit.params[term]), float(fit.bse[term]), len(y), fit.params.copy(), converged, level)


def _ratio(b: float, se: float, n: int, params: pd.Series, converged: bool, level: float) -> RatioEstimate:
    z = z_quantile(level)
    converged = converged and np.isfinite(se) and abs(b) < 20
    with np.errstate(over="ignore"):
        return RatioEstimate(np.expm1(b), np.expm1(b - z * se), np.expm1(b + z * se), b, se, n, params, converged)


def _statsmodels_ppml(y, Xc: pd.DataFrame, wt, exposure, codes, start):
    """statsmodels' GLM Poisson with robust errors: Newton from ``start``, IRLS if Newton fails."""
    # imported when needed: reading a saved result does not import statsmodels
    import statsmodels.api as sm
    from statsmodels.tools import sm_exceptions

    model = sm.GLM(y, Xc, family=sm.families.Poisson(), var_weights=wt, exposure=exposure)
    cov = {"cov_type": "cluster", "cov_kwds": {"groups": codes}} if codes is not None else {"cov_type": "HC0"}
    with warnings.catch_warnings():
        # statsmodels flags every robust covariance with var_weights as "not fully supported"; the weighted
        # cluster sandwich used here is checked against a hand-written one in tests/test_spending.py
        warnings.filterwarnings("ignore", message="cov_type not fully supported with var_weights",
                                category=sm_exceptions.SpecificationWarning)
        # a failed Newton run falls back to IRLS below, and convergence is returned (callers warn with the
        # project's ConvergenceWarning for a figure they publish)
        warnings.filterwarnings("ignore", category=sm_exceptions.ConvergenceWarning)
        warnings.filterwarnings("ignore", category=sm_exceptions.PerfectSeparationWarning)
        warnings.filterwarnings("ignore", message="overflow encountered in exp", category=RuntimeWarning)
        fit = model.fit(method="newton", start_params=start, maxiter=100, disp=False, **cov)
        converged = bool(fit.mle_retvals.get("converged")) and bool(np.all(np.isfinite(fit.params)))
        if not converged:
            fit = model.fit(maxiter=100, wls_method="qr", **cov)
            converged = bool(getattr(fit, "converged", False))
    return fit, converged


def _cell_log_rates(y, w, exposure, cells) -> np.ndarray:
    """log of the weighted rate sum(w y) / sum(w exposure) in each cell (NaN where it is not positive)."""
    out = []
    for c in cells:
        num, den = np.sum(w[c] * y[c]), np.sum(w[c] * exposure[c])
        out.append(np.log(num / den) if num > 0 and den > 0 else np.nan)
    return np.array(out)


def saturated_start(y, contact, post=None, weights=None, exposure=None) -> dict:
    """Closed-form PPML coefficients of a saturated design: contact (and post, contact x post).

    With only indicators and all their interactions, the Poisson fitted means are the cells' weighted
    rates, so these are the maximum itself (NaN when a cell has no outcome; ``ppml`` then starts as usual).
    """
    y = np.asarray(y, float)
    t = np.asarray(contact, float) == 1
    w = np.ones(len(y)) if weights is None else np.asarray(weights, float)
    e = np.ones(len(y)) if exposure is None else np.asarray(exposure, float)
    if post is None:
        r0, r1 = _cell_log_rates(y, w, e, [~t, t])
        return {"const": r0, "contact": r1 - r0}
    p = np.asarray(post, float) == 1
    r00, r10, r01, r11 = _cell_log_rates(y, w, e, [~t & ~p, t & ~p, ~t & p, t & p])
    return {"const": r00, "contact": r10 - r00, "post": r01 - r00, "contact_x_post": r11 - r10 - r01 + r00}


def weighted_diff(y, treat, weights=None, groups=None, level: float = 0.95):
    """Difference in weighted means (treated - control) with a cluster-robust interval (WLS).

    Closed form with statsmodels' WLS sandwich (:func:`~carecall_eval.outcomes.poisson.two_group_wls`);
    statsmodels itself when a group is empty.
    """
    y = np.asarray(y, float)
    t = np.asarray(treat, float)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, float)
    codes = None if groups is None else pd.factorize(pd.Series(np.asarray(groups)))[0]
    z = z_quantile(level)
    if (t == 1).any() and (t == 0).any() and np.all((t == 0) | (t == 1)) and len(y) > 2 and \
            (codes is None or codes.max() >= 1):
        b, se = two_group_wls(y, t, w, codes)
        return b, b - z * se, b + z * se, se
    import statsmodels.api as sm

    X = sm.add_constant(pd.DataFrame({"contact": t}))
    model = sm.WLS(y, X, weights=w)
    fit = model.fit(cov_type="cluster", cov_kwds={"groups": codes}) if codes is not None else model.fit(cov_type="HC1")
    b, se = float(fit.params["contact"]), float(fit.bse["contact"])
    return b, b - z * se, b + z * se, se


def evalue(rr: float, ci_low: float | None = None, ci_high: float | None = None) -> tuple[float, float]:
    """E-value (VanderWeele & Ding 2017) of a ratio and of its confidence limit closest to 1.

    Returns ``(e_point, e_ci)``; ``e_ci`` is 1 when the interval contains 1.
    """
    def _e(r):
        r = 1.0 / r if r < 1 else r
        return r + np.sqrt(r * (r - 1.0))

    e_point = _e(rr)
    if ci_low is None or ci_high is None or (ci_low <= 1 <= ci_high):
        return float(e_point), 1.0
    return float(e_point), float(_e(ci_high if rr < 1 else ci_low))


# ---------------------------------------------------------------------------
# the estimator
# ---------------------------------------------------------------------------

def _ppml_covariates(m: pd.DataFrame, covariates: list[str]) -> pd.DataFrame:
    """Design matrix of baseline covariates (categoricals as dummies, first level dropped)."""
    cov = [c for c in covariates if c in m.columns]
    X = pd.get_dummies(m[cov], drop_first=True, dtype=float)
    return X.loc[:, X.std() > 0]


class _Design:
    """The design of :func:`matched_ppml` for any row subset of one table, from arrays built once.

    :func:`matched_ppml` regresses on ``contact`` and :func:`_ppml_covariates` (numeric covariates as they
    are, then each text or categorical covariate as dummies with its first level dropped, keeping the
    columns whose standard deviation is positive), and :func:`ppml` adds the constant and keeps the
    columns that vary.  For a subgroup those columns follow from its rows alone: a level's dummy is kept
    when the subgroup has it and it is neither the first level (text: the first level present, as
    ``get_dummies`` sorts the subgroup's own values; categorical: the first category) nor the only one;
    a numeric column when it varies.  :meth:`take` builds that matrix directly, with the values, column
    order and memory layout (Fortran order, as ``ppml``'s column selection leaves it) of the pandas path,
    so the fit does the same arithmetic, without a DataFrame, ``get_dummies`` or a standard deviation
    per column per fit.

    :meth:`take` returns None where that cannot be promised and the caller takes the pandas path:
    a covariate of another dtype, text levels that are not all strings (their sort), a numeric covariate
    that is not finite, fewer than two rows, or a subgroup in which a numeric covariate is constant at a
    value whose mean over the rows may not be exact (its standard deviation is then a rounding residue).
    """

    def __init__(self, m: pd.DataFrame, covariates):
        self.ok = False
        cov = [c for c in covariates if c in m.columns]
        if len(set(cov)) < len(cov) or not m.columns.is_unique or {"const", "contact"} & set(cov):
            return                       # pandas' own path decides (or refuses) such a table
        numeric, encoded = [], []
        for c in cov:
            dt = m[c].dtype
            if isinstance(dt, pd.CategoricalDtype) or (isinstance(dt, np.dtype) and dt.kind == "O"):
                encoded.append(c)
            elif dt.kind in "iuf":
                numeric.append(c)
            else:
                return
        self.contact = m["contact"].to_numpy(float)
        # get_dummies' order: the columns it leaves as they are, then each encoded column's dummies
        self.numeric = {c: m[c].to_numpy(float) for c in numeric}
        if not all(np.all(np.isfinite(v)) for v in self.numeric.values()):
            return
        self.levels: dict[str, tuple[list[str], np.ndarray, bool]] = {}
        for c in encoded:
            s = m[c]
            if isinstance(s.dtype, pd.CategoricalDtype):
                cat, is_cat = s.array, True
            else:
                vals = s.to_numpy()
                if not all(isinstance(v, str) for v in pd.unique(vals[pd.notna(vals)])):
                    return
                cat, is_cat = pd.Categorical(vals), False
            names = [f"{c}_{lev}" for lev in cat.categories]
            if {"const", "contact"} & set(names):
                return
            self.levels[c] = (names, np.asarray(cat.codes, dtype=np.intp), is_cat)
        self.ok = True

    def take(self, rows: np.ndarray | None, covariates, lead=None) -> tuple[np.ndarray, list[str]] | None:
        """``(Xa, names)`` of the rows ``rows`` (positions, in order; None = all) with ``covariates``.

        ``lead`` replaces the ``contact`` column by other leading columns, as ``(name, values of the rows,
        always kept)`` (the fitted term is always kept; ``ppml`` keeps the others when they vary).
        """
        if not self.ok:
            return None

        def at(v):
            return v if rows is None else v[rows]
        n = len(self.contact) if rows is None else len(rows)
        if n < 2:
            return None
        names, cols = ["const"], [None]

        def add(name, v, always=False) -> bool:
            """Append a column unless constant (False: the pandas path must decide)."""
            lo, hi = v.min(), v.max()
            if lo == hi and not always:
                # constant: dropped when its standard deviation is exactly 0, i.e. when n copies of it sum
                # exactly (an integer small enough); otherwise the pandas path decides
                return float(lo).is_integer() and abs(lo) * n < 2.0 ** 52
            names.append(name)
            cols.append(v)
            return True
        for name, v, always in (lead if lead is not None else [("contact", at(self.contact), True)]):
            if len(v) != n or not add(name, np.asarray(v, float), always):
                return None
        wanted = set(covariates)
        for c, v in self.numeric.items():
            if c in wanted and not add(c, at(v)):
                return None
        for c, (lev_names, codes, is_cat) in self.levels.items():
            if c not in wanted:
                continue
            codes = at(codes)
            counts = np.bincount(codes[codes >= 0], minlength=len(lev_names))
            if is_cat:
                first = 1                                   # the first category, present or not
            else:
                present = np.flatnonzero(counts > 0)        # the subset's own (sorted) levels
                if len(present) == 0:
                    continue
                first = present[0] + 1
            for i in range(first, len(lev_names)):          # over the levels, not the rows
                if 0 < counts[i] < n:
                    names.append(lev_names[i])
                    cols.append(codes == i)
        Xa = np.empty((n, len(cols)), order="F")
        Xa[:, 0] = 1.0
        for j in range(1, len(cols)):                       # over the columns, not the rows
            Xa[:, j] = cols[j]
        return Xa, names


def analysis_columns(table: pd.DataFrame, windows, covariates, extra=()) -> pd.DataFrame:
    """The columns of a cohort or matched table the spending estimators read, as a new frame.

    A matched table carries every measure in every covariate and outcome window (well over a hundred
    columns); the fits below take row subsets of it many times, and copying the unused columns each time
    dominated at operator scale.  Kept: the row's identity, group, weights and set; the covariates and the
    subgroup variables (and any ``extra`` column); follow-up flags; every measure's pre and post-window
    totals for ``windows``.
    """
    return table[_analysis_names(table.columns, windows, covariates, extra)]


def analysis_sets(sample: MatchedSample, windows, covariates, extra=()) -> pd.DataFrame | None:
    """``sample.sets`` (one row per unit and matched set) with only the :func:`analysis_columns`; None
    without sets.  The whole table of sets is never built (it repeats every reused control once per set)."""
    if not sample.has_sets:
        return None
    return sample.sets_of(_analysis_names(sample.cohort.table.columns, windows, covariates, extra))


def _analysis_names(columns, windows, covariates, extra=()) -> list[str]:
    keep = {*extra, "customer_id", "case_id", "index_date", "contact", "group", "reached", "trigger", "gender", "age",
            "weights", "subclass", "index_quarter", *covariates,
            *(f"followup_{w}" for w in windows),
            *(f"{m}_{n}" for m in MEASURES for n in ("pre", *post_windows(windows)))}
    return [c for c in columns if c in keep or c.startswith("share_")]


def naive_change(table: pd.DataFrame, outcome: str = "tl", window: int = 84, pre_window: int = 84,
                 level: float = 0.95) -> RatioEstimate:
    """Contacts' post/pre ratio of daily means minus one (PPML on stacked windows, clustered by customer)."""
    c = table.loc[(table["contact"] == 1).to_numpy(), ["customer_id", f"{outcome}_pre", f"{outcome}_post{window}"]]
    ids = c["customer_id"].to_numpy()
    codes = _cluster_codes(ids)
    if len(codes) and codes.min() >= 0:
        ids = codes         # the customers as integers once: ppml factorizes them again to the same codes
    long = pd.DataFrame({
        "y": np.r_[c[f"{outcome}_pre"].to_numpy(), c[f"{outcome}_post{window}"].to_numpy()],
        "post": np.r_[np.zeros(len(c)), np.ones(len(c))],
        "days": np.r_[np.full(len(c), pre_window), np.full(len(c), window)],
        "g": np.r_[ids, ids],
    })
    pre_post = saturated_start(long["y"], long["post"], exposure=long["days"])   # "contact" here is post
    return ppml(long["y"], long[["post"]], term="post", groups=long["g"], exposure=long["days"], level=level,
                start={"const": pre_post["const"], "post": pre_post["contact"]})


def matched_ppml(m: pd.DataFrame, outcome: str, window: int, covariates: list[str], *, groups,
                 level: float = 0.95, start=None) -> RatioEstimate:
    """The primary estimate: weighted PPML of the post-window outcome on contact plus baseline covariates.

    ``groups`` are the cluster ids of ``m``'s rows (``sample.cluster_ids(m)``: the one cluster rule);
    ``start`` optional starting coefficients by name (see :func:`ppml`).
    """
    got = _Design(m, covariates).take(None, covariates)
    if got is None:
        X = _ppml_covariates(m, covariates)
        X.insert(0, "contact", m["contact"].to_numpy(float))
        return ppml(m[f"{outcome}_post{window}"].to_numpy(float), X, term="contact",
                    weights=m["weights"].to_numpy(float), groups=groups, level=level, start=start)
    # the same design as a numpy matrix (see _Design), then ppml's own fit
    y = _outcome(m[f"{outcome}_post{window}"].to_numpy(float))
    return _ppml_fit(y, *got, term="contact", weights=m["weights"].to_numpy(float),
                     codes=None if groups is None else _cluster_codes(groups), exposure=None, level=level, start=start)


def matched_did(m: pd.DataFrame, outcome: str, window: int, *, groups, pre_window: int = 84,
                level: float = 0.95) -> RatioEstimate:
    """Matched difference in differences: group x period interaction of a weighted PPML on stacked windows.

    Pre and post windows of ``m`` are stacked as daily means (exposure = window length); ``groups`` are the
    cluster ids of ``m``'s rows (``sample.cluster_ids(m)``).
    """
    y = m[f"{outcome}_post{window}"].to_numpy(float)
    w = m["weights"].to_numpy(float)
    g = np.asarray(groups)
    n = len(m)
    long = pd.DataFrame({
        "contact": np.r_[m["contact"].to_numpy(float), m["contact"].to_numpy(float)],
        "post": np.r_[np.zeros(n), np.ones(n)],
    })
    long["contact_x_post"] = long["contact"] * long["post"]
    ly = np.r_[m[f"{outcome}_pre"].to_numpy(float), y]
    ex = np.r_[np.full(n, pre_window), np.full(n, window)]
    return ppml(ly, long, term="contact_x_post", weights=np.r_[w, w], groups=np.r_[g, g], exposure=ex, level=level,
                start=saturated_start(ly, long["contact"], long["post"], np.r_[w, w], ex))


def matched_estimates(m: pd.DataFrame, outcome: str, window: int, covariates: list[str], *, groups,
                      pre_window: int = 84, level: float = 0.95) -> dict:
    """Every matched estimator for one outcome and window on a matched table with ``weights``.

    ``groups`` are the cluster ids of ``m``'s rows (``sample.cluster_ids(m)``).
    """
    y = m[f"{outcome}_post{window}"].to_numpy(float)
    w = m["weights"].to_numpy(float)
    g = np.asarray(groups)
    codes = _cluster_codes(g)
    if len(codes) and codes.min() >= 0:
        g = codes       # the labels as integers once: every fit below factorizes them again to the same codes
    out: dict[str, Any] = {"matched": matched_ppml(m, outcome, window, covariates, groups=g, level=level),
           "post_only": ppml(y, m[["contact"]], term="contact", weights=w, groups=g, level=level,
                             start=saturated_start(y, m["contact"], weights=w))}
    out["diff"] = weighted_diff(y, m["contact"], w, g, level=level)
    out["did"] = matched_did(m, outcome, window, groups=g, pre_window=pre_window, level=level)
    # comparison group's own post/pre change (weighted): "would have happened anyway"
    cm = m[m["contact"] == 0]
    cw = cm["weights"].to_numpy(float)
    pre_c = np.sum(cw * cm[f"{outcome}_pre"]) / pre_window
    post_c = np.sum(cw * cm[f"{outcome}_post{window}"]) / window
    out["comparison_change"] = post_c / pre_c - 1 if pre_c > 0 else np.nan
    return out


def key_figures(m: pd.DataFrame, outcome: str, window: int, pre_window: int = 84) -> pd.DataFrame:
    """Operator-style key figures by group: share who reduced, mean change among reducers.

    Per-day rates are compared, so windows of different length are comparable.
    """
    pre = m[f"{outcome}_pre"] / pre_window
    post = m[f"{outcome}_post{window}"] / window
    reduced = (post < pre) & (pre > 0)
    change = np.where(pre > 0, post / pre.where(pre > 0) - 1, np.nan)
    w = m["weights"] if "weights" in m.columns else pd.Series(1.0, index=m.index)
    rows = []
    for grp, lab in ((1, "contact"), (0, "comparison")):
        s = (m["contact"] == grp) & (pre > 0)
        ww = w[s]
        share = float(np.sum(ww * reduced[s]) / np.sum(ww)) if ww.sum() > 0 else np.nan
        r = s & reduced
        mean_red = float(np.sum(w[r] * change[r.to_numpy()]) / np.sum(w[r])) if w[r].sum() > 0 else np.nan
        rows.append({"group": lab, "share_reduced": share, "mean_change_among_reducers": mean_red,
                     "n": int(s.sum())})
    return pd.DataFrame(rows)


def event_study(dataset, m: pd.DataFrame, first_week: int = -26, last_week: int = 52,
                level: float = 0.95, universe: pd.DataFrame | None = None) -> pd.DataFrame:
    """Weekly mean theoretical loss by event-time week for contact and matched comparison, with bands.

    With `universe` (a frame of ``customer_id`` and ``index_date`` holding every row of `m`, such as the
    cohort's table) the weekly series is computed for the universe's keys (:func:`weekly_series`, cached
    with the other aggregates) and `m`'s moments taken from it: another matched set of the same cohort
    (a matching option changed in a notebook) runs no query.  The figures are the same floats either way.
    """
    w = m["weights"].to_numpy(dtype=float)
    keys = pd.DataFrame({"row_id": np.arange(len(m)), "customer_id": m["customer_id"].to_numpy(),
                         "index_date": m["index_date"].to_numpy(), "contact": m["contact"].to_numpy().astype(int),
                         "weight": w})
    keys = keys[w > 0]
    weeks = np.arange(first_week, last_week + 1)
    # weight totals need no activity: a key counts in every week up to the data end (later weeks are
    # unobserved, not zero)
    end_week = ((pd.Timestamp(dataset.data_end) - pd.to_datetime(keys["index_date"])).dt.days // 7).to_numpy()
    # position 0 = ends before first_week; key seen in week i (0-based) iff its position > i
    pos = np.clip(end_week, first_week - 1, last_week) - (first_week - 1)
    rows = []
    for c in (0, 1):
        g = keys["contact"].to_numpy() == c

        def seen_sum(v, g=g):
            by_end = np.bincount(pos[g], weights=v, minlength=len(weeks) + 1)
            return by_end[::-1].cumsum()[::-1][1:]
        wg = keys["weight"].to_numpy()[g]
        rows.append(pd.DataFrame({"contact": c, "week": weeks, "sw": seen_sum(wg), "sw2": seen_sum(wg ** 2),
                                  "n": seen_sum(np.ones(len(wg))).round().astype(int)}))
    agg = pd.concat(rows, ignore_index=True)
    agg = agg[agg["n"] > 0]
    mom = _weekly_moments(dataset, keys, first_week, last_week, universe)
    # play dated after the data end cannot exist, so the moments need no end-of-data filter
    agg = agg.merge(mom, on=["contact", "week"], how="left").fillna({"swy": 0.0, "swy2": 0.0})
    z = z_quantile(level)
    agg["mean"] = agg["swy"] / agg["sw"]
    var = (agg["swy2"] / agg["sw"] - agg["mean"] ** 2).clip(lower=0)
    neff = agg["sw"] ** 2 / agg["sw2"]
    agg["se"] = np.sqrt(var / neff)
    # Wald band on the natural scale with the lower limit clipped at 0: a weekly mean of non-negative spending
    # cannot be negative, and clipping only moves limits that lay below 0 (coverage is unchanged)
    agg["ci_low"] = (agg["mean"] - z * agg["se"]).clip(lower=0.0)
    agg["ci_high"] = agg["mean"] + z * agg["se"]
    agg["group"] = np.where(agg["contact"] == 1, "contact", "comparison")
    return agg[["group", "week", "mean", "se", "ci_low", "ci_high", "n"]]


def _weekly_moments(dataset, keys: pd.DataFrame, first_week: int, last_week: int,
                    universe: pd.DataFrame | None) -> pd.DataFrame:
    """The contact/comparison weekly moments of `keys`: from the universe's weekly series when every key is
    in `universe`, else by their own query."""
    if universe is not None:
        u = universe[["customer_id", "index_date"]].drop_duplicates(ignore_index=True)
        u["row_id"] = np.arange(len(u), dtype=np.int64)
        at = keys[["customer_id", "index_date"]].merge(u, on=["customer_id", "index_date"], how="left")["row_id"]
        if at.notna().all():
            series = weekly_series(dataset, u, first_week, last_week)
            k = pd.DataFrame({"series_row": at.to_numpy(np.int64), "contact": keys["contact"].to_numpy(),
                              "weight": keys["weight"].to_numpy()})
            return moments_from_series(series, k, by="contact", weight="weight")
    return weekly_moments(dataset, keys, first_week, last_week, by="contact", weight="weight")


#: The minimum detectable effect's test: two-sided at 5% with 80% power (a fixed convention, not the result's level).
MDE_ALPHA, MDE_POWER = 0.05, 0.80

#: Per-window metrics (id, group) and their methods; ``{cl}`` is the cluster rule in words, ``{unit}`` the
#: outcome's unit.
_WINDOW_METHODS = (
    ("spending.naive_change", "contact",
     "post/pre ratio of daily means among contacts (PPML, clustered by customer; se of the log ratio)"),
    ("spending.matched_change", "difference",
     "matched PPML with baseline covariates, cluster-robust by {cl} (se of the log ratio)"),
    ("spending.matched_diff", "difference",
     "difference in weighted mean post-window {label} ({unit}), WLS cluster-robust by {cl} (se in {unit})"),
    ("spending.post_only_change", "difference",
     "matched ratio of post-window means (PPML without covariates, cluster-robust by {cl}; se of the log ratio)"),
    ("spending.did_change", "difference",
     "matched difference in differences (ratio of ratios, PPML, cluster-robust by {cl}; se of the log ratio)"),
    ("spending.comparison_change", "comparison", "matched comparison group's weighted post/pre ratio of daily means"),
    ("spending.share_reduced", "contact",
     "share whose daily post-window spending is below their pre-window level"),
    ("spending.mean_change_reducers", "contact", "mean per-customer change among those who reduced"),
    ("spending.share_reduced", "comparison",
     "share whose daily post-window spending is below their pre-window level"),
    ("spending.mean_change_reducers", "comparison", "mean per-customer change among those who reduced"),
    ("spending.evalue", "difference", "E-value of the matched ratio (ci_low: E-value of the interval limit)"),
)


def _kept(table: pd.DataFrame, keep) -> pd.DataFrame:
    """The rows of ``table`` where ``keep`` (positions kept in order): ``table`` itself when every row is kept.

    For tables the caller owns and reads only: a boolean selection copies (and consolidates) the whole
    wide table even when it keeps every row.
    """
    keep = np.asarray(keep, dtype=bool)
    return table if keep.all() else table.take(np.flatnonzero(keep))


def _followup(table: pd.DataFrame, window: int, data_end) -> pd.Series:
    """Rows whose ``window``-day post window is complete (the cohort's ``followup_{w}``, else from the data end)."""
    col = f"followup_{window}"
    if col in table.columns:
        return table[col].astype(bool)
    return (pd.to_datetime(table["index_date"]) + pd.Timedelta(days=window - 1)) <= pd.Timestamp(data_end)


def _ratio_row(base: dict, metric: str, group: str, e: RatioEstimate, n: int, method: str) -> dict:
    """A summary row of a PPML ratio (``se`` on the log scale), or not available when the fit failed."""
    row = {**base, "metric": metric, "group": group, "estimate": e.estimate, "se": e.se, "ci_low": e.ci_low,
           "ci_high": e.ci_high, "n": n, "method": method}
    if not e.converged:
        warnings.warn(f"spending_effect: the PPML fit for {metric} (window {base.get('window')} days) did not "
                      "converge to a finite estimate (separation: one group spent nothing?); the figure is left out",
                      ConvergenceWarning, stacklevel=3)
        return not_available(row, "the PPML fit did not converge to a finite estimate")
    return row


def _window_rows(base: dict, nv, est, kf, n_naive: int, n_c: int, n_k: int,
                 methods: list[tuple[str, str, str]]) -> list[dict]:
    """Every per-window row of one window's estimates."""
    meth = {(k, g): m for k, g, m in methods}
    n = n_c + n_k
    diff_b, diff_lo, diff_hi, diff_se = est["diff"]
    rows = [
        _ratio_row(base, "spending.naive_change", "contact", nv, n_naive, meth["spending.naive_change", "contact"]),
        _ratio_row(base, "spending.matched_change", "difference", est["matched"], n,
                   meth["spending.matched_change", "difference"]),
        {**base, "metric": "spending.matched_diff", "group": "difference", "estimate": diff_b, "se": diff_se,
         "ci_low": diff_lo, "ci_high": diff_hi, "n": n, "method": meth["spending.matched_diff", "difference"]},
        _ratio_row(base, "spending.post_only_change", "difference", est["post_only"], n,
                   meth["spending.post_only_change", "difference"]),
        _ratio_row(base, "spending.did_change", "difference", est["did"], n, meth["spending.did_change", "difference"]),
    ]
    cc = {**base, "metric": "spending.comparison_change", "group": "comparison", "estimate": est["comparison_change"],
          "n": n_k, "method": meth["spending.comparison_change", "comparison"]}
    rows.append(cc if np.isfinite(cc["estimate"]) else
                not_available(cc, "the matched comparison group spent nothing in the pre-window"))
    for _, r in kf.iterrows():
        for metric, col, reason in (
                ("spending.share_reduced", "share_reduced", "no one in the group spent in the pre-window"),
                ("spending.mean_change_reducers", "mean_change_among_reducers", "no one in the group reduced")):
            row = {**base, "metric": metric, "group": r["group"], "estimate": r[col], "n": r["n"],
                   "method": meth[metric, r["group"]]}
            rows.append(row if np.isfinite(row["estimate"]) else not_available(row, reason))
    m = est["matched"]
    row = {**base, "metric": "spending.evalue", "group": "difference", "n": n,
           "method": meth["spending.evalue", "difference"]}
    if m.converged:
        e_pt, e_ci = evalue(1 + m.estimate, 1 + m.ci_low, 1 + m.ci_high)
        rows.append({**row, "estimate": e_pt, "ci_low": e_ci, "ci_high": np.nan})
    else:
        rows.append(not_available(row, "the matched PPML fit did not converge"))
    return rows


def spending_effect(data, sample=None, /, *, level: float = 0.95, window: int = 84, outcome: str = "tl",
                    windows=None, placebo: bool = True, subgroups: bool = True,
                    event_weeks: tuple[int, int] | None = (-26, 52),
                    quarter_n: tuple[int, int] | None = None) -> Result:
    """Estimate the effect of a care call on spending: naive beside matched, with diagnostics.

    Parameters
    ----------
    data : Dataset, IbisDataset or path
        The operator data (:func:`carecall_eval.load`, :func:`carecall_eval.contract.connect` or a directory).
    sample : MatchedSample or Cohort, optional
        ``cohort.sample()`` (or a Cohort, matched with its design's defaults) of an
        observational design; None builds the default cohort of ``data``.
        Standard errors are clustered by the sample's one cluster rule (matched
        set, or customer when matching with replacement).
    level : float
        Confidence level of every interval, strictly between 0 and 1.
    window : int
        Headline post window in days (one of ``windows``).
    outcome : {"tl", "net_loss", "wagered", "deposits", "active_days"}
        Headline measure (default theoretical loss).
    windows : tuple of int, optional
        Windows estimated (default: the design's post windows).
    placebo : bool
        Also run the analysis at a pseudo-index ``pre_window`` days before the real one.
    subgroups : bool
        Estimate by trigger type, age band, gender and main product.
    event_weeks : (int, int) or None
        Event-study range in weeks (None: skip the event study).
    quarter_n : (int, int), optional
        Expected numbers of (contacts, comparisons) in one quarter for the
        minimum detectable effect; default: the cohort's per-quarter average.

    Returns
    -------
    Result
        Metric ids ``spending.naive_change``, ``spending.matched_change``
        (primary), ``spending.matched_diff``, ``spending.post_only_change``,
        ``spending.did_change``, ``spending.comparison_change``,
        ``spending.placebo_change``, ``spending.share_reduced``,
        ``spending.mean_change_reducers``, ``spending.evalue``,
        ``spending.mde``, ``spending.subgroup_change``; a ``window`` column
        gives the post window in days and ``outcome`` the measure.  Ratios
        carry ``se`` on the log scale, ``spending.matched_diff`` in the
        outcome's unit.  A window other than the headline one in which no
        matched contact or comparison has complete follow-up gets rows that
        are not available (``note`` says why).

    Raises
    ------
    NotAvailableError
        When no matched contact or no matched comparison has complete
        follow-up in the headline ``window``, or the outcome needs a table the
        data lack.
    """
    ds = open_data(data, "spending_effect")
    level = check_level(level)
    window = check_horizon("window", window)
    check_choice("outcome", outcome, OUTCOMES)
    if event_weeks is not None:
        if len(tuple(event_weeks)) != 2:
            raise InputError(f"spending_effect: event_weeks must be (first_week, last_week) or None, "
                             f"got {event_weeks!r}")
        first_week = check_int("event_weeks[0]", event_weeks[0])
        last_week = check_int("event_weeks[1]", event_weeks[1])
        if first_week >= last_week:
            raise InputError(f"spending_effect: event_weeks must run forwards, got {event_weeks!r}")
        event_weeks = (first_week, last_week)
    if quarter_n is not None:
        if len(tuple(quarter_n)) != 2:
            raise InputError(f"spending_effect: quarter_n must be (contacts, comparisons), got {quarter_n!r}")
        quarter_n = (check_int("quarter_n[0]", quarter_n[0], 1), check_int("quarter_n[1]", quarter_n[1], 1))
    if outcome == "deposits" and not ds.has("deposits"):
        raise NotAvailableError("spending_effect: outcome='deposits' needs the optional deposits table, which "
                                f"{ds.path} does not have")
    sample = as_sample(sample if sample is not None else build_cohort(ds), "spending_effect", randomized=False)
    cohort, design = sample.cohort, sample.design
    windows = tuple(check_horizon("windows", w) for w in (windows or design.post_windows))
    if window not in windows:
        raise InputError(f"spending_effect: window={window} is not among the estimated windows {windows}")
    covariates = list(cohort.covariates)
    cl = "matched set" if sample.cluster == "subclass" else "customer"
    unit = "days" if outcome == "active_days" else (getattr(ds.config, "currency", "") or "currency")
    methods = [(k, g, m.format(cl=cl, unit=unit, label=OUTCOMES[outcome])) for k, g, m in _WINDOW_METHODS]
    full = add_outcomes(ds, analysis_columns(cohort.table, windows, covariates), windows, design.pre_window,
                        copy=False)
    # the naive change reads the contacts' outcome and follow-up only: taken once, not per window
    naive_cols = {"customer_id", "contact", "index_date", f"{outcome}_pre",
                  *(f"{outcome}_post{w}" for w in windows), *(f"followup_{w}" for w in windows)}
    full = full.loc[(full["contact"] == 1).to_numpy(), [c for c in full.columns if c in naive_cols]]
    m_all = add_outcomes(ds, analysis_columns(sample.table, windows, covariates), windows, design.pre_window,
                         copy=False)
    negative = [c for c in (f"{outcome}_pre", *(f"{outcome}_post{w}" for w in windows)) if (m_all[c] < 0).any()]
    if negative:
        raise InputError(f"spending_effect: outcome={outcome!r} is negative for some matched customers ({negative[0]}; "
                         "wins can exceed stakes); the ratios of means are estimated by Poisson pseudo-likelihood, "
                         "which needs a non-negative outcome: use 'tl', 'wagered', 'deposits' or 'active_days'")
    rows, per_window = [], {}
    for w in windows:
        full_w = _kept(full, _followup(full, w, ds.data_end))      # read only below
        m = _kept(m_all, _followup(m_all, w, ds.data_end))
        n_c, n_k = int((m["contact"] == 1).sum()), int((m["contact"] == 0).sum())
        base = {"window": w, "outcome": outcome}
        if n_c == 0 or n_k == 0:
            reason = (f"no matched {'contact' if n_c == 0 else 'comparison'} has complete {w}-day follow-up "
                      f"before the data end ({pd.Timestamp(ds.data_end).date()})")
            if w == window:
                raise NotAvailableError(f"spending_effect: {reason}; choose a shorter window or later data")
            rows += [not_available({**base, "metric": k, "group": g, "n": n_c if g == "contact" else
                                    (n_k if g == "comparison" else n_c + n_k), "method": meth}, reason)
                     for k, g, meth in methods]
            continue
        # rows whose window is cut by the data end are left out of this window's estimates; the matching
        # weights are kept as matched (a set can lose a member whose own index is later than its partner's)
        nv = naive_change(full_w, outcome, w, design.pre_window, level)
        est = matched_estimates(m, outcome, w, covariates, groups=sample.cluster_ids(m),
                                pre_window=design.pre_window, level=level)
        per_window[w] = (nv, est, m)
        kf = key_figures(m, outcome, w, design.pre_window)
        rows += _window_rows(base, nv, est, kf, int((full_w["contact"] == 1).sum()), n_c, n_k, methods)
    nv, est, m = per_window[window]

    # minimum detectable effect for one quarter's numbers (documented approximation), at a fixed
    # 5% two-sided test with 80% power: a planning convention, not the result's confidence level
    q = cohort.table["index_quarter"].nunique() or 1
    nq_c, nq_k = quarter_n or (max(1, int((m["contact"] == 1).sum() / q)), max(1, int((m["contact"] == 0).sum() / q)))
    se_full = est["matched"].se
    n_c, n_k = int((m["contact"] == 1).sum()), int((m["contact"] == 0).sum())
    se_q = se_full * np.sqrt((1 / nq_c + 1 / nq_k) / (1 / n_c + 1 / max(n_k, 1)))
    z_a, z_b = z_quantile(1 - MDE_ALPHA), z_quantile(2 * MDE_POWER - 1)   # Phi^-1(0.975), Phi^-1(0.80)
    mde = -np.expm1(-(z_a + z_b) * se_q)
    quarters_needed = int(np.ceil(((z_a + z_b) * se_q / abs(np.log1p(est["matched"].estimate))) ** 2)) \
        if est["matched"].converged and est["matched"].estimate not in (0, -1) else None
    mde_row = {"window": window, "outcome": outcome, "metric": "spending.mde", "group": "difference",
               "estimate": -mde, "n": nq_c + nq_k,
               "method": f"smallest reduction detectable in one quarter, 5% two-sided, 80% power "
                         f"({nq_c} contacts, {nq_k} comparisons; SE scaled from the matched estimate)"}
    rows.append(mde_row if np.isfinite(mde) else not_available(mde_row, "the matched PPML fit did not converge"))

    placebo_est = None
    if placebo:
        placebo_est, n_pl, pcl = _placebo_once(ds, sample, outcome, window, covariates, level)
        if placebo_est is not None:
            rows.append(_ratio_row({"window": window, "outcome": outcome}, "spending.placebo_change", "difference",
                                   placebo_est, n_pl,
                                   f"matched PPML at a pseudo-index {design.pre_window} days before the real one "
                                   f"(design's matching, cluster-robust by {pcl}; se of the log ratio)"))
    sub = pd.DataFrame()
    sets = None
    if subgroups and sample.has_sets:
        sets = add_outcomes(ds, analysis_sets(sample, (window,), covariates), (window,), design.pre_window,
                            copy=False)
        sets = _kept(sets, _followup(sets, window, ds.data_end))
    # interactively, the event study's weekly series is kept for the whole cohort, so another matching of it
    # needs no query; in a batch run (a report, evaluate: one shared pass open) the set is not matched again,
    # and the matched set's own moments query is cheaper than fetching and caching the cohort's series
    universe = None if in_shared_pass() else sample.cohort.table
    # the event study's query runs beside the subgroup fits (which query nothing)
    ev_args = (ds, m_all, *event_weeks) if event_weeks else ()
    stop = getattr(getattr(ds, "con", None), "interrupt", None)      # DuckDB's; Spark's queries run out
    with _beside(event_study if event_weeks else None, *ev_args, level=level, universe=universe,
                 interrupt=stop) as ev_job:
        if subgroups:
            # each subgroup's Newton starts at the whole sample's fit (the same maximum, fewer steps)
            sub = _subgroups(m, outcome, window, covariates, level, sample.cluster_ids, sets,
                             start=est["matched"].params if est["matched"].converged else None)
    ev = ev_job.result() if ev_job is not None else pd.DataFrame()
    for _, r in sub.iterrows():
        rows.append({"window": window, "outcome": outcome, "metric": "spending.subgroup_change",
                     "group": f"{r['by']}={r['level']}", "estimate": r["estimate"], "se": r["se"],
                     "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n": r["n"],
                     "method": f"matched PPML within subgroup, cluster-robust by {cl} (se of the log ratio)"})

    summary = tidy(rows)
    decomp = decomposition(nv.estimate, est["matched"].estimate)
    settings = {"outcome": outcome, "outcome_label": OUTCOMES[outcome], "window": window, "windows": list(windows),
                "level": level, "estimand": "ATT", "index": design.index_rule, "design": design.to_dict(),
                "replace": sample.replace, "cluster": sample.cluster, "covariates": covariates,
                "placebo": bool(placebo), "subgroups": bool(subgroups),
                "event_weeks": list(event_weeks) if event_weeks else None,
                "mde_test": {"alpha": MDE_ALPHA, "two_sided": True, "power": MDE_POWER},
                "quarter_n": list(quarter_n) if quarter_n else None}
    text = narrative_text(summary, settings, decomp)
    plot = {"event_study": ev, "decomposition": decomp, "estimates": summary[summary["metric"].isin(
        ["spending.naive_change", "spending.matched_change", "spending.post_only_change", "spending.did_change",
         "spending.placebo_change"])], "subgroups": sub,
            "key_figures": key_figures(m, outcome, window, design.pre_window)}
    details = {"matched_table": m_all, "fits": {w: v[1] for w, v in per_window.items()},
               "quarters_to_pool": quarters_needed}
    return Result("spending", summary, text, settings, plot, details)


@contextlib.contextmanager
def _beside(fn, *args, interrupt=None, **kwargs):
    """Run ``fn(*args, **kwargs)`` in a second thread while the block runs; yields its future (None: nothing).

    For the event study's query beside the subgroup fits: DuckDB and numpy's arithmetic release the
    interpreter, so on two cores the two overlap.  The block must not query the data itself (one query at a
    time on the dataset's connection); the thread sees the caller's context (the cache switch) and is
    waited for on leaving the block, also when the block raises.  The result does not depend on timing.
    When the block is stopped (Ctrl-C, or SIGTERM turned into ``SystemExit``), ``interrupt()`` (the
    connection's, for DuckDB) is called first, so that the wait is not for a long query to end.
    """
    if fn is None:
        yield None
        return
    with ThreadPoolExecutor(1, thread_name_prefix="carecall-beside") as pool:
        job = pool.submit(contextvars.copy_context().run, fn, *args, **kwargs)
        try:
            yield job
        except (KeyboardInterrupt, SystemExit):
            if interrupt is not None and not job.done():
                with contextlib.suppress(Exception):
                    interrupt()
            raise


def decomposition(naive: float, matched: float) -> pd.DataFrame:
    """Split the naive change into 'would have happened anyway' and 'what the call added'.

    With pre-window level 100, the contacts' post level is ``100 * (1 + naive)``;
    without the call it would have been ``100 * (1 + naive) / (1 + matched)``.
    """
    post = 100 * (1 + naive)
    cf = post / (1 + matched)
    return pd.DataFrame({
        "step": ["before (index = 100)", "would have happened anyway", "added by the call", "after"],
        "value": [100.0, cf - 100.0, post - cf, post],
        "kind": ["level", "change", "change", "level"],
    })


#: The placebo results of each cohort still alive: ``id(cohort) -> {entry: result}`` (see :func:`_placebo_once`).
_PLACEBO_MEMO: dict[int, dict] = {}


def _placebo_once(dataset, sample: MatchedSample, outcome, window, covariates, level):
    """:func:`_placebo`, computed once per cohort, data and settings while the cohort lives.

    The placebo rematches the shifted cohort with the design's own matching, so it does not depend on the
    matching options of `sample`: a notebook that changes the caliper and re-estimates gets it back
    without a pass over activity.  The entry is keyed by the data's fingerprint, the settings and the
    content of the cohort's table (a table edited in place is computed again); without a fingerprint
    nothing is kept, nor in a batch run (a shared pass open: a report or evaluate estimates each cohort once).
    """
    from ..cohorts import cache

    if in_shared_pass():    # a batch run estimates each cohort once: no memo (its key hashes the whole table)
        return _placebo(dataset, sample, outcome, window, covariates, level)
    cohort = sample.cohort
    entry = cache.key(dataset, "spending._placebo", {"outcome": outcome, "window": window,
                                                     "covariates": list(covariates), "level": level,
                                                     "design": cohort.design.to_dict()}, cohort.table)
    memo = _PLACEBO_MEMO.get(id(cohort))
    if entry is not None and memo is not None and entry in memo:
        return memo[entry]
    got = _placebo(dataset, sample, outcome, window, covariates, level)
    if entry is not None:
        if memo is None:
            memo = _PLACEBO_MEMO[id(cohort)] = {}
            weakref.finalize(cohort, _PLACEBO_MEMO.pop, id(cohort), None)
        memo[entry] = got
    return got


def _placebo(dataset, sample: MatchedSample, outcome, window, covariates, level):
    """Same analysis at index - pre_window: no call can have acted yet.

    The pseudo cohort is matched with the design's matching settings and clustered by its own sample's
    cluster rule.  Returns ``(estimate, n, cluster words)``, or ``(None, 0, "")`` without two groups.
    """
    cohort, design = sample.cohort, sample.design
    shift = design.pre_window
    table = cohort.table.copy()
    table["index_date"] = table["index_date"] - pd.Timedelta(days=shift)
    table = table[table["index_date"] - pd.Timedelta(days=design.pre_window) >= pd.Timestamp(dataset.data_start)]
    if table["contact"].nunique() < 2:
        return None, 0, ""
    # the pseudo post window must end before the real index: at most `shift` days
    w = min(window, shift)
    # no pass beyond the pseudo window; the days asked relative to the real index (the same sums)
    table = recompute_covariates(dataset, table, design, post=(w,), moved=shift)
    pseudo = Cohort(table=table, flow=cohort.flow, design=design, data_end=cohort.data_end).sample()
    m = add_outcomes(dataset, pseudo.table, (w,), design.pre_window)
    est = matched_ppml(m, outcome, w, covariates, groups=pseudo.cluster_ids(m), level=level)
    return est, len(m), "matched set" if pseudo.cluster == "subclass" else "customer"


#: The subgroups of ``spending.subgroup_change``.
SUBGROUP_BY = ("trigger", "age_band", "gender", "main_product")


def subgroup_columns(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` with the derived subgroup columns ``age_band`` and ``main_product`` (largest share)."""
    return _derive_subgroups(table.copy())


def subgroup_frame(table: pd.DataFrame, keep) -> pd.DataFrame:
    """:func:`subgroup_columns` of ``table``'s columns in ``keep`` (and every ``share_`` column), as a new frame.

    The few columns are taken (in ``table``'s order) into a frame of their own and the derived columns
    set on it: the wide table is neither copied whole nor consolidated, and the result is not a view.
    """
    keep = set(keep)
    pos = [i for i, c in enumerate(table.columns) if c in keep or str(c).startswith("share_")]
    return _derive_subgroups(table.take(pos, axis=1))


def _derive_subgroups(d: pd.DataFrame) -> pd.DataFrame:
    """Set ``age_band`` and ``main_product`` on ``d`` itself; return it."""
    d["age_band"] = pd.cut(d["age"], [0, 25, 35, 50, 65, 200], right=False,
                           labels=["18-24", "25-34", "35-49", "50-64", "65+"]).astype(str)
    share_cols = [c for c in d.columns if c.startswith("share_")]
    if share_cols:
        shares = d[share_cols].to_numpy(float)
        if np.isnan(shares).any():          # idxmax skips missing shares
            top = d[share_cols].idxmax(axis=1).str.replace("share_", "", regex=False)
            biggest = d[share_cols].max(axis=1)
        else:                               # the first largest share, as idxmax, by position
            top = np.array([c.replace("share_", "") for c in share_cols], dtype=object)[shares.argmax(axis=1)]
            biggest = shares.max(axis=1)
        d["main_product"] = np.where(biggest > 0, top, "none")
    return d


def _subgroups(m: pd.DataFrame, outcome, window, covariates, level, cluster_ids,
               sets: pd.DataFrame | None = None, by: tuple = SUBGROUP_BY, start=None) -> pd.DataFrame:
    """Matched PPML within subgroups.

    With nearest-neighbour matching (``sets`` = one row per unit and matched
    set), a subgroup is defined by the contact of each set and its controls
    follow it, so a control matched to a 30-year-old counts among the 25-34s.
    Otherwise each unit's own value is used.  Errors are clustered by
    ``cluster_ids`` (the sample's one rule); ``start`` gives every fit its starting coefficients (see
    :func:`ppml`).  Subgroups with fewer than 20 contacts or comparisons, or without a finite estimate,
    are skipped.  ``by`` names the columns
    (``age_band`` and ``main_product`` are derived here; others must be columns of the table).
    """
    src = sets if sets is not None else m
    # only the columns a subgroup fit reads: every group below is a row subset, and copying the whole
    # matched table once per subgroup dominated at operator scale
    d = subgroup_frame(src, {"contact", "weights", "customer_id", "subclass", f"{outcome}_post{window}", "age",
                             *covariates, *by})
    unit = pd.factorize(d["customer_id"])[0]       # customers counted as integers
    by_cols = [b for b in by if b in d.columns]
    if sets is not None:
        treated = d.loc[(d["contact"] == 1).to_numpy(), ["subclass", *by_cols]].drop_duplicates(
            "subclass").set_index("subclass")[by_cols]
        for b in by_cols:
            d[b] = d["subclass"].map(treated[b]).to_numpy()
    # each fit is a row subset of arrays built once: the design of the whole table (see _Design), the
    # outcome, weights and the cluster labels as integers (the same codes in each subgroup as its own labels)
    design = _Design(d, covariates)
    y_col, w_col = f"{outcome}_post{window}", "weights"
    y_all = d[y_col].to_numpy(float) if y_col in d.columns else None
    w_all = d[w_col].to_numpy(float) if w_col in d.columns else None
    contact = d["contact"].to_numpy()
    keys = pd.DataFrame({c: _label_codes(d[c]) for c in ("subclass", "customer_id") if c in d.columns})
    rows_out = []
    for by in by_cols:
        pos = d[[by]].assign(_pos=np.arange(len(d)))
        for lvl, g in pos.groupby(by):
            rows = g["_pos"].to_numpy()
            c = pd.Series(contact[rows])
            if c.sum() < 20 or (c == 0).sum() < 20:
                continue
            covs = [c for c in covariates if c != by]
            try:
                got = design.take(rows, covs) if y_all is not None and w_all is not None else None
                if got is None or y_all is None or w_all is None:       # pandas' path (see _Design)
                    sub = d.iloc[rows]
                    e = matched_ppml(sub, outcome, window, covs, groups=cluster_ids(sub), level=level, start=start)
                else:
                    y = _outcome(y_all[rows])
                    e = _ppml_fit(y, *got, term="contact", weights=w_all[rows],
                                  codes=_cluster_codes(cluster_ids(keys.iloc[rows])), exposure=None, level=level,
                                  start=start)
            except Exception:  # pragma: no cover - tiny or separated subgroup
                continue
            if not e.converged:      # separation in a small subgroup: no finite estimate
                continue
            rows_out.append({"by": by, "level": lvl, "estimate": e.estimate, "se": e.se, "ci_low": e.ci_low,
                             "ci_high": e.ci_high, "n": int(np.count_nonzero(np.bincount(unit[rows] + 1)))})
    return pd.DataFrame(rows_out, columns=["by", "level", "estimate", "se", "ci_low", "ci_high", "n"])


def _label_codes(s: pd.Series) -> np.ndarray:
    """Integer codes of a label column, missing labels kept missing (NaN), for ``cluster_ids`` on row subsets:
    a sample's cluster rule reads ``subclass`` and ``customer_id`` (and whether a subclass is missing), and
    the codes of a subset, factorized again, are those of its own labels."""
    codes = pd.factorize(s)[0]
    if (codes < 0).any():
        return np.where(codes < 0, np.nan, codes.astype(float))
    return codes
