"""Actions after the index (limits, pauses, self-exclusion) and how answered calls were received.

:func:`actions` compares the share of customers who took a responsible-gambling
action within ``days`` after their index date, contact vs comparison group (with
matching weights when a matched table is given), as risk differences.
:func:`reception` summarises answered calls: what they led to (the outcome mix)
and how the customer received them.
"""
from __future__ import annotations

import warnings
from typing import Mapping

import numpy as np
import pandas as pd

from ..results import Result, tidy
from .reach import _check_level, _check_int, wilson_interval

__all__ = ["actions", "reception", "ACTION_EVENTS"]

#: Which ``rg_events.event`` values count as each action.
ACTION_EVENTS: dict[str, tuple[str, ...]] = {
    "limit_set": ("limit_set", "limit_lowered"),
    "pause": ("pause",),
    "self_exclusion": ("self_exclusion",),
}


def _weighted_share(y: np.ndarray, w: np.ndarray, level: float) -> tuple[float, float, float, float]:
    """Weighted share with a Wilson interval on the Kish effective sample size."""
    sw = w.sum()
    if sw <= 0:
        return np.nan, np.nan, np.nan, 0.0
    p = float((w * y).sum() / sw)
    n_eff = float(sw ** 2 / (w ** 2).sum())
    lo, hi = wilson_interval(p * n_eff, n_eff, level)
    return p, lo, hi, n_eff


def _rows_table(ds, cohort_table: pd.DataFrame, matched: pd.DataFrame | None) -> tuple[pd.DataFrame, str]:
    need = ("customer_id", "index_date", "contact")
    missing = [c for c in need if c not in cohort_table.columns]
    if missing:
        raise ValueError(f"cohort_table lacks columns {missing}; it needs {list(need)} (a Cohort.table)")
    if matched is None:
        t = cohort_table[list(need)].copy()
        t["weights"] = 1.0
        t["subclass"] = pd.NA
        return t, "unweighted"
    if "weights" not in matched.columns:
        raise ValueError("matched lacks a 'weights' column; pass MatchResult.matched_data()")
    t = matched.copy()
    absent = [c for c in need if c not in t.columns]
    if absent:
        if not t.index.isin(cohort_table.index).all():
            raise ValueError("matched rows are not all in cohort_table (their index must be cohort row_ids)")
        t = t.join(cohort_table[absent])
    if "subclass" not in t.columns:
        t["subclass"] = pd.NA
    t = t[list(need) + ["weights", "subclass"]]
    t = t[t["weights"] > 0]
    return t, "matching weights"


def actions(ds, cohort_table: pd.DataFrame, matched: pd.DataFrame | None = None, days: int = 28, *,
            via_call: bool | None = None, level: float = 0.95,
            events: Mapping[str, tuple[str, ...]] | None = None) -> Result:
    """Share of customers who set a limit, paused or self-excluded within ``days`` after the index.

    Parameters
    ----------
    ds : carecall_eval.contract.Dataset
        Loaded data (table ``rg_events``; the data end comes from ``ds.data_end``).
    cohort_table : pandas.DataFrame
        One row per (customer, index): columns ``customer_id``, ``index_date``,
        ``contact`` (1 contact / 0 comparison), indexed by ``row_id`` (e.g.
        ``Cohort.table``).
    matched : pandas.DataFrame, optional
        Matched sample (``MatchResult.matched_data()``): cohort rows, or rows
        indexed by cohort ``row_id``, with ``weights`` and, when matching
        without replacement, ``subclass``.  Without it every cohort row counts
        once.
    days : int
        Follow-up window: events on days ``0 .. days - 1`` after the index.
    via_call : bool, optional
        Only events taken during a care call (True), only others (False), or
        both (None, the default).
    level : float
        Confidence level.
    events : mapping, optional
        Action name -> ``rg_events.event`` values; default :data:`ACTION_EVENTS`
        (a limit counts when set or lowered).

    Returns
    -------
    Result
        For each action and ``any``: metric ``actions.{action}_{days}d`` (e.g.
        ``actions.limit_set_28d``) with ``group`` ``contact``, ``comparison``
        (weighted shares, Wilson intervals on the effective sample size) and
        ``difference`` (contact - comparison risk difference).  Plot data
        ``"shares"``.

    Notes
    -----
    Rows whose ``days``-day window is not complete by the data end are left
    out (with a warning).  Differences: without a matched table, Newcombe's
    hybrid score interval for two independent proportions; with one, a
    weighted least-squares regression of the action indicator on ``contact``
    (its coefficient is the difference of weighted shares) with standard
    errors clustered by matched subclass, or by customer when there is no
    subclass (matching with replacement, weighting).
    """
    level = _check_level(level)
    days = _check_int("days", days, 1)
    if via_call not in (None, True, False):
        raise ValueError(f"via_call must be None, True or False, got {via_call!r}")
    events = dict(ACTION_EVENTS if events is None else events)
    rows_t, weighting = _rows_table(ds, cohort_table, matched)
    rows_t = rows_t.copy()
    rows_t["index_date"] = pd.to_datetime(rows_t["index_date"]).astype("datetime64[ns]")
    rows_t["contact"] = pd.to_numeric(rows_t["contact"]).astype(int)
    if not rows_t["contact"].isin([0, 1]).all():
        raise ValueError("cohort contact must be 1 (contact) or 0 (comparison)")
    data_end = pd.Timestamp(ds.data_end)
    complete = rows_t["index_date"] + pd.Timedelta(days=days - 1) <= data_end
    if not complete.all():
        warnings.warn(f"{int((~complete).sum())} rows have less than {days} days of follow-up before the data end "
                      f"({data_end.date()}) and are left out", stacklevel=2)
        rows_t = rows_t[complete]
    if rows_t["contact"].nunique() < 2:
        raise ValueError("need both contact and comparison rows with complete follow-up")

    rg = ds.table("rg_events")
    if via_call is not None:
        rg = rg[rg["via_call"].astype(bool) == via_call]
    rg = rg[["customer_id", "occurred_on", "event"]]
    rg = rg.assign(occurred_on=pd.to_datetime(rg["occurred_on"]).astype("datetime64[ns]"))
    key = pd.DataFrame({"_row": np.arange(len(rows_t)), "customer_id": rows_t["customer_id"].to_numpy(),
                        "index_date": rows_t["index_date"].to_numpy()})
    hits = key.merge(rg, on="customer_id", how="inner")
    off = (hits["occurred_on"] - hits["index_date"]).dt.days
    hits = hits[(off >= 0) & (off <= days - 1)]
    Y = pd.DataFrame(index=np.arange(len(rows_t)))
    for name, evs in events.items():
        Y[name] = np.isin(np.arange(len(rows_t)), hits.loc[hits["event"].isin(evs), "_row"].to_numpy())
    Y["any"] = Y.any(axis=1)

    w = rows_t["weights"].to_numpy(float)
    c = rows_t["contact"].to_numpy(int)
    sub = rows_t["subclass"]
    if weighting != "unweighted":
        clusters = (pd.factorize(sub.astype("string"))[0] if sub.notna().all()
                    else pd.factorize(rows_t["customer_id"])[0])
        cluster_label = "matched subclass" if sub.notna().all() else "customer"
    rows, shares = [], []
    import statsmodels.api as sm
    from statsmodels.stats.proportion import confint_proportions_2indep

    for name in list(events) + ["any"]:
        y = Y[name].to_numpy(float)
        metric = f"actions.{name}_{days}d"
        est = {}
        for g, label in ((1, "contact"), (0, "comparison")):
            m = c == g
            p, lo, hi, n_eff = _weighted_share(y[m], w[m], level)
            est[g] = p
            rows.append({"metric": metric, "group": label, "estimate": p, "ci_low": lo, "ci_high": hi,
                         "n": int(m.sum()), "method": "share with the action" + (
                             ", Wilson interval" if weighting == "unweighted"
                             else ", weighted, Wilson interval on the effective sample size"),
                         "n_effective": n_eff})
            shares.append({"action": name, "group": label, "share": p, "ci_low": lo, "ci_high": hi})
        if weighting == "unweighted":
            x1, n1 = int(y[c == 1].sum()), int((c == 1).sum())
            x0, n0 = int(y[c == 0].sum()), int((c == 0).sum())
            lo, hi = confint_proportions_2indep(x1, n1, x0, n0, method="newcomb", compare="diff", alpha=1 - level)
            method = "risk difference, Newcombe hybrid score interval"
            diff = est[1] - est[0]
        else:
            fit = sm.WLS(y, sm.add_constant(c.astype(float)), weights=w).fit(
                cov_type="cluster", cov_kwds={"groups": clusters})
            diff = float(fit.params[1])
            lo, hi = fit.conf_int(alpha=1 - level)[1]
            method = f"risk difference, weighted least squares, clustered by {cluster_label}"
        rows.append({"metric": metric, "group": "difference", "estimate": diff, "ci_low": float(lo),
                     "ci_high": float(hi), "n": len(y), "method": method})

    summary = tidy(rows)
    src = {None: "", True: " during a care call", False: " outside care calls"}[via_call]
    parts = []
    for name, label in (("limit_set", "set or lowered a limit"), ("pause", "paused"),
                        ("self_exclusion", "self-excluded")):
        if name not in events:
            continue
        t = summary[summary["metric"] == f"actions.{name}_{days}d"].set_index("group")
        parts.append(f"{t.loc['contact', 'estimate']:.0%} {label} (comparison {t.loc['comparison', 'estimate']:.0%}; "
                     f"difference {100 * t.loc['difference', 'estimate']:+.1f} points, {level:.0%} CI "
                     f"{100 * t.loc['difference', 'ci_low']:+.1f} to {100 * t.loc['difference', 'ci_high']:+.1f})")
    n1, n0 = int((c == 1).sum()), int((c == 0).sum())
    text = (f"Within {days} days of the index{src}, of {n1:,} contacted customers " + "; ".join(parts)
            + f". The comparison group has {n0:,} customers"
            + (" weighted to resemble the contacted ones." if weighting != "unweighted" else
               " (not matched: differences may reflect who was contacted, not only the contact).")
            ) if parts else f"Actions within {days} days for {n1:,} contacted and {n0:,} comparison customers."
    params = {"days": days, "via_call": via_call, "level": level, "weighting": weighting,
              "events": {k: list(v) for k, v in events.items()}, "data_end": str(data_end.date()),
              "rows_used": int(len(rows_t))}
    return Result(name="actions", summary=summary, text=text, settings=params,
                  plot_data={"shares": pd.DataFrame(shares)}, details={"indicators": Y.set_index(rows_t.index)})


def reception(ds, *, level: float = 0.95) -> Result:
    """What answered calls led to (outcome mix) and how customers received them (reception shares).

    Parameters
    ----------
    ds : carecall_eval.contract.Dataset
        Loaded data (table ``call_attempts``).
    level : float
        Confidence level of the Wilson intervals.

    Returns
    -------
    Result
        Rows ``reception.{positive,neutral,negative}`` / ``answered_calls``:
        share among answered calls whose reception was recorded;
        ``reception.recorded`` / ``answered_calls``: share of answered calls
        with a recorded reception; ``call_outcome.{outcome}`` /
        ``answered_calls``: share of answered calls by outcome (every outcome
        of the contract vocabulary, zeros included).  Wilson intervals.  Plot
        data ``"reception"`` and ``"outcomes"``.

    Notes
    -----
    Every answered attempt counts once (ordinary cases and study arms alike).
    Reception shares leave out calls with no recorded reception, so they
    describe the calls where staff recorded it; ``reception.recorded`` says how
    many that is.
    """
    from ..contract.spec import OUTCOMES, RECEPTIONS

    level = _check_level(level)
    att = ds.table("call_attempts")
    ans = att[att["answered"].astype(bool)]
    n = len(ans)
    if n == 0:
        raise ValueError("call_attempts has no answered attempts; nothing to summarise")
    rows = []
    rec = ans["reception"].dropna()
    n_rec = len(rec)
    lo, hi = wilson_interval(n_rec, n, level)
    rows.append({"metric": "reception.recorded", "group": "answered_calls", "estimate": n_rec / n, "ci_low": lo,
                 "ci_high": hi, "n": n, "method": "share of answered calls with a recorded reception, Wilson"})
    counts = rec.value_counts()
    levels = list(RECEPTIONS) + sorted(set(counts.index) - set(RECEPTIONS))
    rec_tab = []
    for r in levels:
        k = int(counts.get(r, 0))
        lo, hi = wilson_interval(k, n_rec, level) if n_rec else (np.nan, np.nan)
        est = k / n_rec if n_rec else np.nan
        rows.append({"metric": f"reception.{r}", "group": "answered_calls", "estimate": est, "ci_low": lo,
                     "ci_high": hi, "n": n_rec, "method": "share of answered calls with recorded reception, Wilson"})
        rec_tab.append({"reception": r, "count": k, "share": est, "ci_low": lo, "ci_high": hi})
    oc = ans["outcome"].fillna("(not recorded)").value_counts()
    out_levels = list(OUTCOMES) + sorted(set(oc.index) - set(OUTCOMES))
    out_tab = []
    for o in out_levels:
        k = int(oc.get(o, 0))
        lo, hi = wilson_interval(k, n, level)
        rows.append({"metric": f"call_outcome.{o}", "group": "answered_calls", "estimate": k / n, "ci_low": lo,
                     "ci_high": hi, "n": n, "method": "share of answered calls, Wilson interval"})
        out_tab.append({"outcome": o, "count": k, "share": k / n, "ci_low": lo, "ci_high": hi})
    summary = tidy(rows)
    s = summary.set_index("metric")
    top = sorted(((o["share"], o["outcome"]) for o in out_tab
                  if o["outcome"] in ("limit_set", "pause", "self_exclusion", "helpline_referral")), reverse=True)
    text = (f"Of {n:,} answered calls, {s.loc['reception.positive', 'estimate']:.0%} were received positively "
            f"({level:.0%} CI {s.loc['reception.positive', 'ci_low']:.0%} to "
            f"{s.loc['reception.positive', 'ci_high']:.0%}) and {s.loc['reception.negative', 'estimate']:.0%} "
            f"negatively (reception recorded for {n_rec / n:.0%} of calls). "
            f"{s.loc['call_outcome.no_action', 'estimate']:.0%} ended without an action and "
            f"{s.loc['call_outcome.declined', 'estimate']:.0%} with the customer declining; the actions agreed were "
            + ", ".join(f"{o.replace('_', ' ')} ({p:.0%})" for p, o in top) + ".") if n_rec else \
        f"Of {n:,} answered calls, none had a recorded reception."
    return Result(name="reception", summary=summary, text=text, settings={"level": level, "n_answered": n,
                                                                       "n_reception_recorded": n_rec},
                  plot_data={"reception": pd.DataFrame(rec_tab), "outcomes": pd.DataFrame(out_tab)})
