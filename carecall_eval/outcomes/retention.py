"""Retention after a care call: Kaplan-Meier by group, retention at a horizon, Cox hazard ratio.

Definitions
-----------
``account``
    The customer is still a customer: the account is not closed, and they have
    not self-excluded *for good* (a self-exclusion after which they never play
    again within the data).  Exit time is the earlier of the closure and that
    self-exclusion; customers are censored at the data end.  A self-exclusion
    counts as "for good" only when the data run at least a year past it with
    no play (before that, nobody can tell).
``active``
    Any play in the last 90 days of the horizon (days ``max(0, horizon - 90)``
    to ``horizon - 1`` after the index); only rows whose follow-up covers the
    horizon count.

A share nobody could be observed for (no one at risk at the horizon in a
group, an empty group) is missing with a ``note`` saying why, never a number.
Sentences come from :mod:`carecall_eval.narrative.retention`.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from .._validation import check_horizon, check_level, horizon_id, horizon_phrase, z_quantile
from ..cohorts import windows
from ..errors import ConvergenceWarning
from ..narrative import retention as narrative
from ..results import Result, not_available, tidy
from ._dates import as_datetime
from .intervals import wilson_interval

__all__ = ["retention", "exit_times", "active_at_horizon", "DEFINITIONS", "DEFAULT_HORIZON"]

DEFINITIONS = ("account", "active")
#: The default horizon (days); its metric ids are the stable ``*_12m`` ids.
DEFAULT_HORIZON = 365
#: "Active": any play in this many last days of the horizon.
ACTIVE_LAST_DAYS = 90


def exit_times(dataset, table: pd.DataFrame) -> pd.DataFrame:
    """Days from index to leaving (account definition) and an event flag, censored at the data end.

    Returns a frame with ``duration`` (days, >= 0) and ``event`` (1 = left), index as ``table``.
    """
    cust = dataset.table("customers")[["customer_id", "closed_on"]]
    rg = dataset.table("rg_events")
    se = rg.loc[rg["event"] == "self_exclusion", ["customer_id", "occurred_on"]]
    last_play = windows.last_play(dataset, se["customer_id"])   # only customers who self-excluded
    # self-exclusion 'for good': the customer's last self-exclusion with no play afterwards
    se = se.merge(last_play, on="customer_id", how="left")
    end = pd.Timestamp(dataset.data_end)
    # 'for good' is only knowable when the data run a full year past the self-exclusion
    se = se[(se["last_play"].isna() | (se["last_play"] < se["occurred_on"]))
            & (se["occurred_on"] + pd.Timedelta(days=365) <= end)]
    for_good = se.groupby("customer_id")["occurred_on"].min().rename("self_excluded_on")
    # each row's closure and lasting self-exclusion looked up by customer (as left merges on customer_id,
    # without joining whole frames)
    who = table["customer_id"].to_numpy()
    t = pd.DataFrame({"index_date": table["index_date"].to_numpy(),
                      "closed_on": cust.set_index("customer_id")["closed_on"].reindex(who).to_numpy(),
                      "self_excluded_on": for_good.reindex(who).to_numpy()}, index=table.index)
    after = lambda s: s.where(s >= t["index_date"])  # noqa: E731 - exits before index do not count
    exit_on = pd.concat([after(t["closed_on"]), after(t["self_excluded_on"])], axis=1).min(axis=1)
    event = exit_on.notna() & (exit_on <= end)
    stop = exit_on.where(event, end)
    return pd.DataFrame({"duration": (stop - t["index_date"]).dt.days.clip(lower=0).astype(float),
                         "event": event.astype(int)}, index=table.index)


def active_at_horizon(dataset, table: pd.DataFrame, horizon: int = 365,
                      last_days: int = ACTIVE_LAST_DAYS) -> pd.Series:
    """1 if the customer played in the last ``last_days`` days of the horizon, NaN if not observable.

    The window is days ``max(0, horizon - last_days) .. horizon - 1`` after the index.

    A cohort table carries the default window (``active_days_last90_365``, summed
    in the cohort's pass); other horizons are summed now.
    """
    col = f"active_days_last{last_days}_{horizon}"
    if col in table.columns:
        days = table[col].to_numpy()
    else:
        keys = pd.DataFrame({"row_id": np.arange(len(table)), "customer_id": table["customer_id"].to_numpy(),
                             "index_date": table["index_date"].to_numpy()})
        days = windows.window_totals(dataset, keys, {"end": (max(0, horizon - last_days), horizon - 1)})[
            "active_days_end"].to_numpy()
    active = (days > 0).astype(float)
    complete = (as_datetime(table["index_date"]) + pd.Timedelta(days=horizon - 1)) <= pd.Timestamp(dataset.data_end)
    return pd.Series(np.where(complete.to_numpy(), active, np.nan), index=table.index, name="active")


def retention(data, sample=None, /, *, level: float = 0.95, horizon: int = 365,
              label: str | None = None) -> Result:
    """Retention of contacts vs their matched comparisons: Kaplan-Meier, share still active, Cox hazard ratio.

    Parameters
    ----------
    data : Dataset, IbisDataset or path
        The operator's data (tables ``customers``, ``rg_events``, ``activity``).
    sample : MatchedSample or Cohort, optional
        ``cohort.sample()`` (a Cohort is matched with its design's defaults);
        default: the default design's cohort, matched.  Matched rows carry
        their matching weights; standard errors are clustered by the sample's
        one cluster rule (``sample.cluster``: matched subclass, or customer
        when controls are reused).
    level : float
        Confidence level of every interval, strictly between 0 and 1.
    horizon : int
        Days after the index (default 365).
    label : str, optional
        Who the contacts are, for the sentence (e.g. "reached in 2025Q1").

    Returns
    -------
    Result
        Metric ids ``retention.account_12m`` and ``retention.active_12m`` at
        the default horizon (``retention.account_<h>d`` / ``retention.active_<h>d``
        at another), groups contact / comparison / difference;
        ``retention.hazard_ratio`` and ``retention.ph_test_p``.  A share that
        nobody could be observed for (no one at risk at the horizon, an empty
        group) is missing with a ``note``.  Plot data ``km`` (survival curves
        with bands by group).

    Examples
    --------
    >>> ce.retention(ds, cohort.sample(), horizon=180, level=0.9)   # doctest: +SKIP
    """
    from ..cohorts import as_sample, build_cohort
    from ..contract.base import open_data

    ds = open_data(data, "retention")
    level = check_level(level)
    horizon = check_horizon("horizon", horizon)
    sample = as_sample(sample if sample is not None else build_cohort(ds), "retention", randomized=False)
    t = sample.table.join(exit_times(ds, sample.table))       # a new frame: the sample's table is not touched
    t["active"] = active_at_horizon(ds, t, horizon)
    return _retention_from_times(t, horizon=horizon, level=level, label=label, cluster=sample.cluster)


def _cox_fitter(alpha: float):
    """lifelines' CoxPHFitter with its robust-variance score residuals computed in O(n).

    lifelines (0.30) computes the score residuals behind ``robust=True`` with a
    Python loop whose step i sums over rows 0..i, O(n^2): minutes at 200k
    rows.  The same quantity is two cumulative sums:
    ``r_i = w_i * (E_i (x_i - a_i) - phi_i (x_i C_i - A_i))`` with ``a_j`` the
    risk-set mean of x at row j, ``C_i = sum_{j<=i} E_j w_j / R_j`` and
    ``A_i = sum_{j<=i} E_j w_j a_j / R_j`` (rows sorted by time, as lifelines
    sorts them).  The Schoenfeld residuals behind the proportional-hazards test
    are also a loop in lifelines that grows its output with ``np.append`` row by
    row (O(n^2)); :func:`_schoenfeld` computes the same Efron-tie residuals from
    reverse cumulative sums.  Everything else is lifelines' own; the test suite
    checks the results equal lifelines' loops and R's survival.
    """
    from lifelines import CoxPHFitter, utils
    from lifelines.fitters.coxph_fitter import SemiParametricPHFitter

    class _SemiParametricPHFitter(SemiParametricPHFitter):   # what CoxPHFitter fits with the Breslow baseline
        def _compute_score_within_strata(self, X, _T, E, weights, entries):
            X, E, w = X.values, E.values.astype(int), weights.values
            beta = self.params_.values * self._norm_std
            phi = np.exp(X @ beta)
            risk_x = (X * (w * phi)[:, None])[::-1].cumsum(0)[::-1]
            risk = (w * phi)[::-1].cumsum()[::-1]
            a = risk_x / risk[:, None]
            c = E * w / risk
            C = np.cumsum(c)
            A = np.cumsum(c[:, None] * a, axis=0)
            score = E[:, None] * (X - a) - phi[:, None] * (X * C[:, None] - A)
            return score * w[:, None]

        def _compute_schoenfeld_within_strata(self, X, T, E, weights, entries):
            return _schoenfeld(X.values, T.values, E.values, weights.values, np.asarray(self.params_, float))

    class _CoxPHFitter(CoxPHFitter):
        def _fit_model_breslow(self, *args, **kwargs):
            model = _SemiParametricPHFitter(penalizer=self.penalizer, l1_ratio=self.l1_ratio, strata=self.strata,
                                            alpha=self.alpha, label=self._label)
            if not utils.CensoringType.is_right_censoring(self):   # pragma: no cover - as lifelines
                raise ValueError("the Cox model here takes right-censored data only")
            model.fit(*args, **kwargs)
            return model

    return _CoxPHFitter(alpha=alpha)


def _schoenfeld(X: np.ndarray, T: np.ndarray, E: np.ndarray, w: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Schoenfeld residuals with Efron ties, as lifelines' ``_compute_schoenfeld_within_strata`` (rows sorted by time).

    At a time with ``m`` events, the expected covariate is
    ``sum_{l<m} (S_x - l/m D_x) / (m (S - l/m D))`` with ``S``, ``S_x`` the risk-set sums
    of ``w exp(x b)`` and ``w exp(x b) x`` (rows at or after the time) and ``D``, ``D_x`` the same over the
    time's events; an event's residual is its covariate minus that, every other row's zero.
    """
    n, d = X.shape
    E = E.astype(bool)
    if not E.any():
        return np.zeros((n, d))
    phi = w * np.exp(X @ beta)
    phi_x = phi[:, None] * X
    risk = np.cumsum(phi[::-1])[::-1]                        # sums over rows i..n-1, added as lifelines adds them
    risk_x = np.cumsum(phi_x[::-1], axis=0)[::-1]
    start = np.r_[True, T[1:] != T[:-1]]                     # first row of each distinct time
    gid = np.cumsum(start) - 1
    first = np.flatnonzero(start)
    m = np.bincount(gid, weights=E, minlength=len(first))   # events at the time
    tie = np.bincount(gid, weights=phi * E, minlength=len(first))
    tie_x = np.column_stack([np.bincount(gid, weights=phi_x[:, j] * E, minlength=len(first)) for j in range(d)])
    g = np.repeat(np.flatnonzero(m > 0), m[m > 0].astype(int))     # one entry per (time, l)
    l_ = np.arange(len(g)) - np.repeat(np.cumsum(m[m > 0]) - m[m > 0], m[m > 0].astype(int))
    mg = m[g]
    num = risk_x[first[g]] - (l_ * 1.0)[:, None] * tie_x[g] / mg[:, None]
    den = (risk[first[g]] - l_ * tie[g] / mg) * mg
    mean = np.zeros((len(first), d))
    np.add.at(mean, g, num / den[:, None])
    return np.where(E[:, None], X - mean[gid], 0.0)


def _not_observed(group: str, horizon: int) -> str:
    return f"no one in the {group} group was followed for {horizon_phrase(horizon)} (all censored earlier)"


def _km_at(km, horizon: int) -> tuple[float, float, float, float]:
    """Survival at ``horizon`` with its Greenwood se (survival scale) and lifelines' log-log interval."""
    sf = float(km.survival_function_at_times(horizon).iloc[0])
    ci = km.confidence_interval_survival_function_
    before = ci.index <= horizon
    ci_at = ci[before].iloc[-1] if before.any() else ci.iloc[0]
    # the Greenwood sum lifelines' interval is built from (exp(-exp(log(-log S) +- z sqrt(V) / log S)))
    cum = km._cumulative_sq_
    v = float(cum[cum.index <= horizon].iloc[-1]) if (cum.index <= horizon).any() else 0.0
    return sf, sf * np.sqrt(v), float(ci_at.iloc[0]), float(ci_at.iloc[1])


def _retention_from_times(t: pd.DataFrame, *, horizon: int = 365, level: float = 0.95, label: str | None = None,
                          cluster: str | None = "subclass") -> Result:
    """Retention estimates from prepared survival data (the engine behind :func:`retention`; internal).

    ``t`` has ``duration`` (days), ``event`` (1 = left), ``contact`` (1/0),
    ``weights``, optionally ``active`` (1/0/NaN), ``customer_id`` and the
    ``cluster`` column (Cox errors are clustered by it when it is present and
    complete, else robust by row).
    """
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import proportional_hazard_test

    level = check_level(level)
    horizon = check_horizon("horizon", horizon)
    hid = horizon_id(horizon, DEFAULT_HORIZON, "12m")
    account_id, active_id = f"retention.account_{hid}", f"retention.active_{hid}"
    if "weights" not in t.columns:
        t = t.assign(weights=1.0)          # t itself is only read below
    z = z_quantile(level)
    rows, curves = [], []
    surv = {}
    for grp, lab in ((1, "contact"), (0, "comparison")):
        g = t[t["contact"] == grp]
        base = {"metric": account_id, "group": lab, "n": len(g),
                "method": f"Kaplan-Meier (weighted), still a customer at day {horizon}; se: Greenwood "
                          "(survival scale, weights as frequencies); interval: exponential Greenwood (log-log)"}
        if len(g) == 0:
            rows.append(not_available({**base, "at_risk": 0}, f"the {lab} group is empty"))
            continue
        km = KaplanMeierFitter(alpha=1 - level)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_WEIGHTS_WARNING)   # KM is weighted by design
            km.fit(g["duration"], g["event"], weights=g["weights"], label=lab)
        sf, se, lo, hi = _km_at(km, horizon)
        at_risk = float((g["duration"] >= horizon).sum())
        if at_risk == 0 and sf > 0:
            # the curve ends before the horizon with customers still in it: S(horizon) is unobserved
            rows.append(not_available({**base, "at_risk": 0}, _not_observed(lab, horizon)))
        else:
            surv[lab] = sf
            rows.append({**base, "estimate": sf, "se": se, "ci_low": lo, "ci_high": hi, "at_risk": at_risk})
        c = km.survival_function_.join(km.confidence_interval_survival_function_).reset_index()
        c.columns = ["day", "survival", "ci_low", "ci_high"]
        c["at_risk"] = km.event_table["at_risk"].reindex(c["day"]).to_numpy()
        c["group"] = lab
        curves.append(c)
    diff = {"metric": account_id, "group": "difference", "n": len(t),
            "method": "difference of Kaplan-Meier estimates"}
    rows.append({**diff, "estimate": surv["contact"] - surv["comparison"]} if len(surv) == 2
                else not_available(diff, "needs both groups' estimates"))

    # active at the horizon
    share = {}
    first = max(0, horizon - ACTIVE_LAST_DAYS)
    if "active" in t.columns:
        for grp, lab in ((1, "contact"), (0, "comparison")):
            g = t[(t["contact"] == grp) & t["active"].notna()]
            base = {"metric": active_id, "group": lab, "n": len(g),
                    "method": f"weighted share with play in days {first}..{horizon - 1} "
                              "(Wilson interval on the effective sample size)"}
            w = g["weights"]
            if len(g) == 0 or w.sum() <= 0:
                rows.append(not_available(base, _not_observed(lab, horizon)))
                continue
            p = float(np.sum(w * g["active"]) / np.sum(w))
            neff = float(w.sum() ** 2 / (w ** 2).sum())
            lo, hi = wilson_interval(p * neff, neff, level)
            share[lab] = (p, neff)
            rows.append({**base, "estimate": p, "ci_low": min(lo, p), "ci_high": max(hi, p)})
        diff = {"metric": active_id, "group": "difference", "n": len(t),
                "method": "difference of weighted shares (Wald, effective sample sizes)"}
        if len(share) == 2:
            (p1, n1), (p0, n0) = share["contact"], share["comparison"]
            se = float(np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0))
            rows.append({**diff, "estimate": p1 - p0, "se": se, "ci_low": p1 - p0 - z * se,
                         "ci_high": p1 - p0 + z * se})
        else:
            rows.append(not_available(diff, "needs both groups' shares"))

    # Cox proportional hazards, weighted, cluster-robust
    hr_method = ("Cox PH, matching weights, robust (clustered) errors; hazard of leaving; "
                 "se of the log hazard ratio")
    ph_method = "proportional-hazards test (rank-transformed time); small p = PH doubtful"
    n_events = int(t["event"].sum())
    if n_events >= 2 and t["contact"].nunique() == 2:
        cdf = t[["duration", "event", "contact", "weights"]].copy()
        cdf["duration"] = cdf["duration"].clip(lower=0.5)
        cl = cluster if (cluster and cluster in t.columns and t[cluster].notna().all()) else None
        if cl:
            cdf["cluster"] = pd.factorize(t[cl])[0]
        cph = _cox_fitter(alpha=1 - level)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # batch mode: the Efron sums by distinct time (durations are whole days, so few); lifelines'
            # heuristic picks its row-by-row Python loop from about a million rows, seconds per Newton step
            cph.fit(cdf, duration_col="duration", event_col="event", weights_col="weights",
                    cluster_col="cluster" if cl else None, robust=True, batch_mode=True)
            try:
                ph_p = float(proportional_hazard_test(cph, cdf, time_transform="rank").summary["p"].iloc[0])
            except (ValueError, np.linalg.LinAlgError, ZeroDivisionError):  # pragma: no cover - too few events
                ph_p = np.nan
        _pass_on(caught)
        s = cph.summary.loc["contact"]
        lower = next(c for c in cph.summary.columns if c.startswith("exp(coef) lower"))
        upper = next(c for c in cph.summary.columns if c.startswith("exp(coef) upper"))
        rows.append({"metric": "retention.hazard_ratio", "group": "difference", "estimate": float(s["exp(coef)"]),
                     "se": float(s["se(coef)"]), "ci_low": float(s[lower]), "ci_high": float(s[upper]),
                     "n": len(t), "events": n_events, "method": hr_method})
        rows.append({"metric": "retention.ph_test_p", "group": "difference", "estimate": ph_p, "n": len(t),
                     "method": ph_method})
    else:
        why = ("fewer than two customers left during follow-up" if n_events < 2
               else "needs both contact and comparison customers")
        rows.append(not_available({"metric": "retention.hazard_ratio", "group": "difference", "n": len(t),
                                   "events": n_events, "method": hr_method}, why))
        rows.append(not_available({"metric": "retention.ph_test_p", "group": "difference", "n": len(t),
                                   "method": ph_method}, why))
    summary = tidy(rows)
    settings = {"horizon": horizon, "level": level, "definitions": list(DEFINITIONS), "label": label,
                "cluster": cluster, "active_days": [first, horizon - 1]}
    plot = {"km": pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(), "horizon": horizon}
    return Result("retention", summary, narrative.text(summary, settings), settings, plot, {"table": t})


#: lifelines' note that weights are not integers (matching weights are not, on purpose)
_WEIGHTS_WARNING = r"It looks like your weights are not integers"


def _pass_on(caught) -> None:
    """Re-issue what lifelines said during a Cox fit: non-convergence as the project's ConvergenceWarning."""
    from lifelines.exceptions import ConvergenceWarning as LifelinesConvergence

    for w in caught:
        if issubclass(w.category, LifelinesConvergence):
            warnings.warn(f"retention: the Cox model: {w.message}", ConvergenceWarning, stacklevel=3)
        elif not issubclass(w.category, (DeprecationWarning, FutureWarning)) \
                and not re.search(_WEIGHTS_WARNING, str(w.message)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
