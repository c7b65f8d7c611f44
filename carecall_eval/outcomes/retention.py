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
    Any play in the last 90 days of the horizon (days ``horizon - 90`` to
    ``horizon - 1`` after the index); only rows whose follow-up covers the
    horizon count.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from ..results import Result, tidy
from ..cohorts import windows
from .reach import wilson_interval

DEFINITIONS = ("account", "active")


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
    t = table[["customer_id", "index_date"]].merge(cust, on="customer_id", how="left") \
        .merge(for_good, left_on="customer_id", right_index=True, how="left")
    t.index = table.index
    after = lambda s: s.where(s >= t["index_date"])  # noqa: E731 - exits before index do not count
    exit_on = pd.concat([after(t["closed_on"]), after(t["self_excluded_on"])], axis=1).min(axis=1)
    event = exit_on.notna() & (exit_on <= end)
    stop = exit_on.where(event, end)
    return pd.DataFrame({"duration": (stop - t["index_date"]).dt.days.clip(lower=0).astype(float),
                         "event": event.astype(int)}, index=table.index)


def active_at_horizon(dataset, table: pd.DataFrame, horizon: int = 365, last_days: int = 90) -> pd.Series:
    """1 if the customer played in the last ``last_days`` days of the horizon, NaN if not observable.

    A cohort table carries the default window (``active_days_last90_365``, summed
    in the cohort's pass); other horizons are summed now.
    """
    col = f"active_days_last{last_days}_{horizon}"
    if col in table.columns:
        days = table[col].to_numpy()
    else:
        keys = pd.DataFrame({"row_id": np.arange(len(table)), "customer_id": table["customer_id"].to_numpy(),
                             "index_date": table["index_date"].to_numpy()})
        days = windows.window_totals(dataset, keys, {"end": (horizon - last_days, horizon - 1)})[
            "active_days_end"].to_numpy()
    active = (days > 0).astype(float)
    complete = (pd.to_datetime(table["index_date"]) + pd.Timedelta(days=horizon - 1)) <= pd.Timestamp(dataset.data_end)
    return pd.Series(np.where(complete.to_numpy(), active, np.nan), index=table.index, name="active")


def retention(dataset, table: pd.DataFrame, *, horizon: int = 365, level: float = 0.95,
              label: str | None = None, cluster: str | None = "subclass") -> Result:
    """Retention of contacts vs (matched) comparisons.

    Parameters
    ----------
    dataset : carecall_eval.contract.Dataset
    table : pandas.DataFrame
        A cohort or matched table: ``customer_id``, ``index_date``, ``contact``
        (1/0), optionally ``weights`` and ``subclass``.
    horizon : int
        Days (default 365).
    level : float
        Confidence level.
    label : str, optional
        Who the contacts are, for the sentence (e.g. "reached in 2025Q1").
    cluster : str or None
        Column for cluster-robust Cox errors (default ``subclass``; falls back
        to customer when absent or when units are reused).

    Returns
    -------
    Result
        Metric ids ``retention.account_12m`` and ``retention.active_12m``
        (groups contact / comparison / difference), ``retention.hazard_ratio``
        and ``retention.ph_test_p``; plot data ``km`` (survival curves with
        bands by group).
    """
    t = table.copy()
    if "weights" not in t.columns:
        t["weights"] = 1.0
    t = t.join(exit_times(dataset, t))
    t["active"] = active_at_horizon(dataset, t, horizon)
    return retention_from_times(t, horizon=horizon, level=level, label=label, cluster=cluster)


def _cox_fitter(alpha: float):
    """lifelines' CoxPHFitter with its robust-variance score residuals computed in O(n).

    lifelines (0.30) computes the score residuals behind ``robust=True`` with a
    Python loop whose step i sums over rows 0..i, O(n^2): minutes at 200k
    rows.  The same quantity is two cumulative sums:
    ``r_i = w_i * (E_i (x_i - a_i) - phi_i (x_i C_i - A_i))`` with ``a_j`` the
    risk-set mean of x at row j, ``C_i = sum_{j<=i} E_j w_j / R_j`` and
    ``A_i = sum_{j<=i} E_j w_j a_j / R_j`` (rows sorted by time, as lifelines
    sorts them).  Everything else is lifelines' own; the test suite checks the
    result equals lifelines' loop and R's survival.
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

    class _CoxPHFitter(CoxPHFitter):
        def _fit_model_breslow(self, *args, **kwargs):
            model = _SemiParametricPHFitter(penalizer=self.penalizer, l1_ratio=self.l1_ratio, strata=self.strata,
                                            alpha=self.alpha, label=self._label)
            if not utils.CensoringType.is_right_censoring(self):   # pragma: no cover - as lifelines
                raise ValueError("the Cox model here takes right-censored data only")
            model.fit(*args, **kwargs)
            return model

    return _CoxPHFitter(alpha=alpha)


def retention_from_times(t: pd.DataFrame, *, horizon: int = 365, level: float = 0.95, label: str | None = None,
                         cluster: str | None = "subclass") -> Result:
    """Retention estimates from prepared survival data (see :func:`retention`).

    ``t`` has ``duration`` (days), ``event`` (1 = left), ``contact`` (1/0),
    ``weights``, optionally ``active`` (1/0/NaN), ``customer_id`` and a cluster column.
    """
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import proportional_hazard_test

    t = t.copy()
    if "weights" not in t.columns:
        t["weights"] = 1.0
    z = stats.norm.ppf(0.5 + level / 2)
    rows, curves = [], []
    surv = {}
    for grp, lab in ((1, "contact"), (0, "comparison")):
        g = t[t["contact"] == grp]
        if len(g) == 0:
            continue
        km = KaplanMeierFitter(alpha=1 - level)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            km.fit(g["duration"], g["event"], weights=g["weights"], label=lab)
        sf = km.survival_function_at_times(horizon).iloc[0]
        ci = km.confidence_interval_survival_function_
        ci_at = ci[ci.index <= horizon].iloc[-1] if (ci.index <= horizon).any() else ci.iloc[0]
        at_risk = float((g["duration"] >= horizon).sum())
        surv[lab] = float(sf)
        rows.append({"metric": "retention.account_12m", "group": lab, "estimate": float(sf),
                     "ci_low": float(ci_at.iloc[0]), "ci_high": float(ci_at.iloc[1]), "n": len(g),
                     "method": f"Kaplan-Meier (weighted), still a customer at day {horizon}",
                     "at_risk": at_risk})
        c = km.survival_function_.join(ci).reset_index()
        c.columns = ["day", "survival", "ci_low", "ci_high"]
        c["at_risk"] = km.event_table["at_risk"].reindex(c["day"]).to_numpy()
        c["group"] = lab
        curves.append(c)
    if len(surv) == 2:
        rows.append({"metric": "retention.account_12m", "group": "difference",
                     "estimate": surv["contact"] - surv["comparison"], "n": len(t),
                     "method": "difference of Kaplan-Meier estimates"})

    # active at the horizon
    share = {}
    for grp, lab in ((1, "contact"), (0, "comparison")):
        if "active" not in t.columns:
            break
        g = t[(t["contact"] == grp) & t["active"].notna()]
        if len(g) == 0:
            continue
        w = g["weights"]
        p = float(np.sum(w * g["active"]) / np.sum(w))
        neff = float(w.sum() ** 2 / (w ** 2).sum())
        lo, hi = wilson_interval(p * neff, neff, level)
        share[lab] = (p, neff)
        rows.append({"metric": "retention.active_12m", "group": lab, "estimate": p, "ci_low": lo, "ci_high": hi,
                     "n": len(g), "method": f"weighted share with play in days {horizon - 90}..{horizon - 1} "
                                            "(Wilson interval on the effective sample size)"})
    if len(share) == 2:
        (p1, n1), (p0, n0) = share["contact"], share["comparison"]
        se = np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
        rows.append({"metric": "retention.active_12m", "group": "difference", "estimate": p1 - p0,
                     "ci_low": p1 - p0 - z * se, "ci_high": p1 - p0 + z * se, "n": len(t),
                     "method": "difference of weighted shares (Wald)"})

    # Cox proportional hazards, weighted, cluster-robust
    hr = None
    ph_p = np.nan
    if t["event"].sum() >= 2 and t["contact"].nunique() == 2:
        cdf = t[["duration", "event", "contact", "weights"]].copy()
        cdf["duration"] = cdf["duration"].clip(lower=0.5)
        cl = cluster if (cluster and cluster in t.columns and t[cluster].notna().all()) else None
        if cl:
            cdf["cluster"] = pd.factorize(t[cl])[0]
        cph = _cox_fitter(alpha=1 - level)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cph.fit(cdf, duration_col="duration", event_col="event", weights_col="weights",
                    cluster_col="cluster" if cl else None, robust=True)
            s = cph.summary.loc["contact"]
            hr = (float(s["exp(coef)"]), float(s[f"exp(coef) lower {int(level * 100)}%"]),
                  float(s[f"exp(coef) upper {int(level * 100)}%"]))
            try:
                ph_p = float(proportional_hazard_test(cph, cdf, time_transform="rank").summary["p"].iloc[0])
            except Exception:  # pragma: no cover - too few events
                ph_p = np.nan
        rows.append({"metric": "retention.hazard_ratio", "group": "difference", "estimate": hr[0],
                     "ci_low": hr[1], "ci_high": hr[2], "n": len(t), "events": int(t["event"].sum()),
                     "method": "Cox PH, matching weights, robust (clustered) errors; hazard of leaving"})
        rows.append({"metric": "retention.ph_test_p", "group": "difference", "estimate": ph_p, "n": len(t),
                     "method": "proportional-hazards test (rank-transformed time); small p = PH doubtful"})
    summary = tidy(rows)
    who = f"customers {label}" if label else "reached customers"
    if "contact" in surv:
        text = f"{surv['contact']:.0%} of {who} were still customers after {horizon // 30} months"
        text += f" (comparison: {surv['comparison']:.0%})." if "comparison" in surv else "."
        if hr is not None:
            text += (f" Hazard ratio of leaving, reached vs comparison: {hr[0]:.2f} "
                     f"(95% CI {hr[1]:.2f} to {hr[2]:.2f}); "
                     f"based on {int(t['event'].sum())} customers who left.")
    else:
        text = "No contacts to report retention for."
    params = {"horizon": horizon, "level": level, "definitions": list(DEFINITIONS)}
    plot = {"km": pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(), "horizon": horizon}
    return Result("retention", summary, text, params, plot, {"table": t})
