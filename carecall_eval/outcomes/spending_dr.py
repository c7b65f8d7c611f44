"""Candidate spending estimators for issue 17: doubly robust (augmented) weighting with a PPML outcome model.

The estimand is the primary one of :mod:`carecall_eval.outcomes.spending`:
the ratio of the contacts' mean post-window spending to the mean they would
have had without the call (ATT ratio of means), minus one.

* :func:`dr_ratio` - augmented inverse-probability weighting for the ATT
  (the orthogonal score of DoubleML's ``IRM(score="ATTE")``, written for a
  ratio): the contacts' observed mean over

      mu0 = [sum_{contacts} g0(X) + sum_{comparisons} e/(1-e) (Y - g0(X))] / n1

  where ``g0`` is a PPML (Poisson, log link) outcome model fitted on the
  comparisons and ``e`` a logistic propensity score.  The estimate is
  consistent when either model is right, and its standard error comes from the
  influence function of ``log(mu1 / mu0)`` (cluster sums, by customer).  The
  contacts' own noise enters only as the residual ``Y - (1 + effect) g0(X)``,
  so a better baseline model narrows the interval without touching the
  estimand.
* :func:`add_history` - a richer baseline: spending and active days in each
  28-day block of the year before the index (13 blocks), with the share of
  each block that could be observed (after the data start and the
  registration), so a block outside the data is not read as "no play".
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._validation import z_quantile
from ..cohorts.windows import window_totals
from ..matching.propensity import _aliased, fit_propensity
from .spending import _ppml_covariates, ppml

__all__ = ["DRRatio", "HISTORY_BLOCKS", "HISTORY_BLOCK_DAYS", "history_windows", "add_history",
           "history_covariates", "baseline_design", "dr_ratio", "dr_change"]

#: Number and length (days) of the pre-index history blocks of :func:`add_history`.
HISTORY_BLOCKS = 13
HISTORY_BLOCK_DAYS = 28


def history_windows(blocks: int = HISTORY_BLOCKS, block_days: int = HISTORY_BLOCK_DAYS) -> dict:
    """``{"h1": (-28, -1), "h2": (-56, -29), ...}``: consecutive pre-index blocks, most recent first."""
    return {f"h{k}": (-block_days * k, -block_days * (k - 1) - 1) for k in range(1, blocks + 1)}


def add_history(dataset, table: pd.DataFrame, blocks: int = HISTORY_BLOCKS,
                block_days: int = HISTORY_BLOCK_DAYS) -> pd.DataFrame:
    """Per-block pre-index play on a cohort (or matched) table: a copy with history columns added.

    Adds ``tl_h{k}``, ``wagered_h{k}``, ``active_days_h{k}`` (block ``k`` =
    days ``-block_days*k .. -block_days*(k-1)-1``) and ``obs_h{k}``, the share
    of the block's days on or after both the data start and the customer's
    registration.  Rows keep their index and order.
    """
    wins = history_windows(blocks, block_days)
    keys = pd.DataFrame({"row_id": np.arange(len(table)), "customer_id": table["customer_id"].to_numpy(),
                         "index_date": table["index_date"].to_numpy()})
    tot = window_totals(dataset, keys, wins)
    out = table.copy()
    for name in wins:
        for m in ("tl", "wagered", "active_days"):
            out[f"{m}_{name}"] = tot[f"{m}_{name}"].to_numpy()
    first = pd.to_datetime(table["index_date"]).to_numpy()
    start = np.datetime64(pd.Timestamp(dataset.data_start).date(), "D").astype("datetime64[ns]")
    seen_from = np.maximum(start, pd.to_datetime(table["registered_on"]).to_numpy()) \
        if "registered_on" in table.columns else np.full(len(table), start)
    # days from the first observable day to the index
    avail = (first - seen_from).astype("timedelta64[D]").astype(float)
    for k, name in enumerate(wins, start=1):
        # block covers offsets -block_days*k .. -block_days*(k-1)-1; observable when offset >= -avail
        lo, hi = block_days * (k - 1), block_days * k
        out[f"obs_{name}"] = np.clip((avail - lo) / block_days, 0.0, 1.0) if hi > lo else 1.0
    return out


def history_covariates(table: pd.DataFrame, blocks: int = HISTORY_BLOCKS,
                       block_days: int = HISTORY_BLOCK_DAYS) -> pd.DataFrame:
    """Outcome-model regressors from :func:`add_history` columns.

    Per block: log(1 + theoretical loss per observed day), the share of observed
    days with play, and the observed share itself (so unobservable history
    is not read as no play); plus the same two for the last 7 days when the
    cohort has them (``tl_7``, ``active_days_7``).
    """
    cols = {}
    for k in range(1, blocks + 1):
        obs = table[f"obs_h{k}"].to_numpy(float)
        days = np.maximum(obs * block_days, 1.0)
        cols[f"log_tl_day_h{k}"] = np.log1p(table[f"tl_h{k}"].clip(lower=0).to_numpy(float) / days)
        cols[f"active_share_h{k}"] = table[f"active_days_h{k}"].to_numpy(float) / days
        if np.std(obs) > 0:
            cols[f"observed_h{k}"] = obs
    if "tl_7" in table.columns and "active_days_7" in table.columns:     # the cohort's last-week window
        cols["log_tl_day_7"] = np.log1p(table["tl_7"].clip(lower=0).to_numpy(float) / 7)
        cols["active_share_7"] = table["active_days_7"].to_numpy(float) / 7
    return pd.DataFrame(cols, index=table.index)


# ---------------------------------------------------------------------------
# the doubly robust ratio
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DRRatio:
    """An ATT ratio of means ``mu1 / mu0 - 1`` with an influence-function interval (log scale)."""

    estimate: float
    ci_low: float
    ci_high: float
    coef: float             # log(mu1 / mu0)
    se: float               # standard error of coef
    n: int
    n_contact: int
    n_comparison: int
    mean_contact: float     # mu1: contacts' observed mean
    mean_counterfactual: float  # mu0: their mean without the call (doubly robust)
    ess_comparison: float   # Kish effective size of the comparison weights
    max_weight_share: float  # largest single comparison weight / sum of comparison weights
    converged: bool = True


def baseline_design(table: pd.DataFrame, covariates, extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """Regressors of the baseline models: covariates (dummies for categoricals) plus ``extra``.

    Constant columns and columns that are linear combinations of earlier ones
    (and of the intercept) are left out, e.g. a history block that equals a
    design covariate's window, so Newton's Hessian stays invertible.
    """
    X = _ppml_covariates(table, list(covariates)) if len(covariates) else pd.DataFrame(index=table.index)
    if extra is not None:
        X = pd.concat([X, extra.set_axis(X.index)], axis=1)
    X = X.loc[:, X.std() > 0].astype(float)
    if X.shape[1] == 0:
        return X
    alias = _aliased(np.column_stack([np.ones(len(X)), X.to_numpy()]))[1:]
    return X.loc[:, ~alias]


def _ppml_predict(y, X: pd.DataFrame, fit_rows, weights=None, X_pred: pd.DataFrame | None = None):
    """Fit a PPML of ``y`` on ``X`` over ``fit_rows``; return exp(linear predictor) and convergence.

    Predictions are for every row of ``X_pred`` (default ``X``; same columns).
    """
    fit_rows = np.asarray(fit_rows)
    yf = np.asarray(y, float)[fit_rows]
    wf = None if weights is None else np.asarray(weights, float)[fit_rows]
    Xf = X.loc[fit_rows]
    keep = Xf.std() > 0 if Xf.shape[1] else pd.Series(dtype=bool)
    Xf, Xall = Xf.loc[:, keep], (X if X_pred is None else X_pred).loc[:, keep]
    if Xf.shape[1] == 0:        # intercept only: the (weighted) mean
        return np.full(len(Xall), np.average(yf, weights=wf)), True
    term = Xf.columns[0]        # ppml reports one coefficient; only the fitted values are used here
    r = ppml(yf, Xf, term=term, weights=wf)
    p = r.params
    eta = p["const"] + Xall[[c for c in p.index if c != "const"]].to_numpy() @ p.drop("const").to_numpy()
    return np.exp(np.clip(eta, -50, 50)), r.converged


def dr_ratio(table: pd.DataFrame, *, outcome: str = "tl", window: int = 84, covariates,
             outcome_extra: pd.DataFrame | None = None, propensity_extra: pd.DataFrame | None = None,
             level: float = 0.95, groups=None, weighted_outcome: bool = False, pooled_outcome: bool = False,
             folds: int = 0, seed: int = 0) -> DRRatio:
    """Doubly robust ATT ratio of mean post-window spending, contacts vs their counterfactual.

    Parameters
    ----------
    table : pandas.DataFrame
        Cohort rows with complete follow-up: ``contact`` (1/0), the outcome
        column ``{outcome}_post{window}`` and the covariates.
    outcome, window : str, int
        Outcome measure and post window (days).
    covariates : sequence of str
        Baseline covariates of both models (categoricals become dummies).
    outcome_extra, propensity_extra : pandas.DataFrame, optional
        Extra regressors (aligned with ``table``'s rows) for the outcome model
        and the propensity model, e.g. :func:`history_covariates`.
    level : float
        Confidence level.
    groups : array-like, optional
        Cluster ids of the rows (default: ``customer_id``).
    weighted_outcome : bool
        Fit the outcome model with the comparisons' odds weights (then the
        augmentation term is zero by the score equations: a regression
        estimator that is still doubly robust).
    pooled_outcome : bool
        Fit the outcome model on contacts and comparisons together with a
        contact indicator (common slopes) and predict with the indicator at 0:
        twice the rows for the baseline slopes.  Still doubly robust (the
        propensity model carries consistency if the common slopes are wrong).
    folds : int
        Cross-fitting folds for both models (0: fit on all rows).
    seed : int
        Fold assignment seed.

    Returns
    -------
    DRRatio

    Notes
    -----
    With ``e`` the propensity, ``w = e / (1 - e)``, ``g0`` the outcome model
    and ``n1`` contacts: ``mu1 = mean_{T=1} Y``, ``mu0 = [sum_{T=1} g0 +
    sum_{T=0} w (Y - g0)] / n1``.  The influence function of
    ``log(mu1/mu0)`` is ``phi1/mu1 - phi0/mu0`` with ``phi1 = T (Y - mu1) /
    p`` and ``phi0 = [T g0 + (1-T) w (Y - g0) - T mu0] / p``; the score is
    orthogonal to both nuisance models (Chernozhukov et al. 2018), so their
    estimation does not enter the first-order variance.
    """
    y = table[f"{outcome}_post{window}"].to_numpy(float)
    t = table["contact"].to_numpy().astype(bool)
    n, n1 = len(y), int(t.sum())
    if n1 == 0 or n1 == n:
        raise ValueError("dr_ratio: needs both contacts and comparisons")
    Xo = baseline_design(table, covariates, outcome_extra)
    Xp = baseline_design(table, covariates, propensity_extra)
    Xp_np = np.column_stack([np.ones(n), Xp.to_numpy()])
    names = ["Intercept", *Xp.columns]
    if folds and folds > 1:
        fold = np.random.default_rng(seed).integers(0, folds, n)
    else:
        fold = np.zeros(n, int)
        folds = 1
    e = np.empty(n)
    g0 = np.empty(n)
    converged = True
    Xo = Xo.reset_index(drop=True)
    for k in range(folds):
        test = fold == k
        train = ~test if folds > 1 else np.ones(n, bool)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="propensity model", category=UserWarning)
            warnings.filterwarnings("ignore", message="propensity scores of 0 or 1", category=UserWarning)
            pf = fit_propensity(Xp_np[train], t[train], names)
        b = pf.coef.fillna(0.0).to_numpy()
        e[test] = 1 / (1 + np.exp(-(Xp_np[test] @ b)))
        converged &= bool(pf.converged)
        odds = None
        if weighted_outcome:
            et = 1 / (1 + np.exp(-(Xp_np @ b)))
            odds = et / (1 - et)
        if pooled_outcome:
            Xc = Xo.assign(_contact=t.astype(float))
            pred, ok = _ppml_predict(y, Xc, train, weights=None if odds is None else np.where(t, 1.0, odds),
                                     X_pred=Xc.assign(_contact=0.0))
        else:
            pred, ok = _ppml_predict(y, Xo, train & ~t, weights=odds)
        g0[test] = pred[test]
        converged &= ok
    e = np.clip(e, 1e-6, 1 - 1e-6)
    w = np.where(t, 0.0, e / (1 - e))
    p = n1 / n
    mu1 = y[t].mean()
    psi0 = np.where(t, g0, w * (y - g0))
    mu0 = psi0.sum() / n1
    phi1 = t * (y - mu1) / p
    phi0 = (psi0 - t * mu0) / p
    infl = phi1 / mu1 - phi0 / mu0
    gid = table["customer_id"].to_numpy() if groups is None else np.asarray(groups)
    sums = pd.Series(infl).groupby(pd.factorize(pd.Series(gid))[0]).sum().to_numpy()
    g = len(sums)
    se = float(np.sqrt(np.sum(sums ** 2) * g / max(g - 1, 1)) / n)
    coef = float(np.log(mu1 / mu0)) if mu0 > 0 and mu1 > 0 else np.nan
    z = z_quantile(level)
    wc = w[~t]
    return DRRatio(float(np.expm1(coef)), float(np.expm1(coef - z * se)), float(np.expm1(coef + z * se)),
                   coef, se, n, n1, n - n1, float(mu1), float(mu0),
                   float(wc.sum() ** 2 / np.dot(wc, wc)), float(wc.max() / wc.sum()),
                   converged and bool(np.isfinite(coef)) and mu0 > 0)


def dr_change(dataset, table: pd.DataFrame, *, outcome: str = "tl", window: int = 84, covariates,
              level: float = 0.95, history: bool = True) -> DRRatio:
    """The candidate primary: doubly robust change in mean post-window spending over a cohort table.

    Rows without complete ``window``-day follow-up are left out; with
    ``history`` the outcome model also gets the monthly profile of the year
    before the index (:func:`add_history`, one more pass over activity unless
    the table already has the blocks).  Every eligible comparison is used (no
    matching); clusters are customers.
    """
    t = table[table[f"followup_{window}"]]
    extra = None
    if history:
        if not all(f"tl_h{k}" in t.columns for k in range(1, HISTORY_BLOCKS + 1)):
            t = add_history(dataset, t)
        extra = history_covariates(t)
    return dr_ratio(t, outcome=outcome, window=window, covariates=covariates, outcome_extra=extra, level=level)
