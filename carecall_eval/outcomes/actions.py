"""Actions after the index (limits, pauses, self-exclusion) and how answered calls were received.

:func:`actions` compares the share of customers who took a responsible-gambling
action within ``days`` after their index date, contact vs comparison group (with
the matched sample's weights), as risk differences.  :func:`reception`
summarises answered calls: what they led to (the outcome mix) and how the
customer received them.  Sentences come from :mod:`carecall_eval.narrative.actions`.
"""
from __future__ import annotations

import warnings
from typing import Mapping

import numpy as np
import pandas as pd

from .._validation import check_horizon, check_level, horizon_id
from ..errors import FollowupWarning
from ..narrative import actions as narrative
from ..results import Result, not_available, tidy
from .intervals import wilson_interval

__all__ = ["actions", "reception", "ACTION_EVENTS", "DEFAULT_DAYS"]

#: Which ``rg_events.event`` values count as each action.
ACTION_EVENTS: dict[str, tuple[str, ...]] = {
    "limit_set": ("limit_set", "limit_lowered"),
    "pause": ("pause",),
    "self_exclusion": ("self_exclusion",),
}
#: Default follow-up window (days); its ids (``actions.limit_set_28d`` ...) are the stable ones.
DEFAULT_DAYS = 28


def _bounded(p: float, lo: float, hi: float) -> tuple[float, float]:
    """An interval within [0, 1] that contains its estimate (Wilson's can miss 0 by 1e-18 in floating point)."""
    return float(np.clip(min(lo, p), 0.0, 1.0)), float(np.clip(max(hi, p), 0.0, 1.0))


def _weighted_share(y: np.ndarray, w: np.ndarray, level: float) -> tuple[float, float, float, float]:
    """Weighted share with a Wilson interval on the Kish effective sample size (NaN for an empty group)."""
    sw = w.sum()
    if len(w) == 0 or sw <= 0:
        return np.nan, np.nan, np.nan, 0.0
    p = float((w * y).sum() / sw)
    n_eff = float(sw ** 2 / (w ** 2).sum())
    lo, hi = _bounded(p, *wilson_interval(p * n_eff, n_eff, level))
    return p, lo, hi, n_eff


def _rows_table(sample) -> tuple[pd.DataFrame, str]:
    """The sample's rows with ``customer_id, index_date, contact, weights, subclass`` and how they are weighted.

    Without matching (``sample.matching`` None) every cohort row counts once; else
    the matched rows (weights > 0), with any column they lack taken from the cohort table.
    """
    need = ("customer_id", "index_date", "contact")
    cohort_table = sample.cohort.table
    missing = [c for c in need if c not in cohort_table.columns]
    if missing:
        raise ValueError(f"actions: the cohort table lacks columns {missing}; it needs {list(need)} "
                         "(build the cohort with carecall_eval.build_cohort)")
    if sample.matching is None:
        t = cohort_table[list(need)].copy()
        t["weights"] = 1.0
        t["subclass"] = pd.NA
        return t, "unweighted"
    matched = sample.table
    if "weights" not in matched.columns:
        raise ValueError("actions: the matched table lacks a 'weights' column; build the sample with "
                         "cohort.sample()")
    t = matched.copy()
    absent = [c for c in need if c not in t.columns]
    if absent:
        if not t.index.isin(cohort_table.index).all():
            raise ValueError("actions: matched rows are not all in the cohort table (their index must be "
                             "cohort row_ids)")
        t = t.join(cohort_table[absent])
    if "subclass" not in t.columns:
        t["subclass"] = pd.NA
    t = t[list(need) + ["weights", "subclass"]]
    t = t[t["weights"] > 0]
    return t, "matching weights"


def actions(data, sample=None, /, *, level: float = 0.95, days: int = DEFAULT_DAYS, via_call: bool | None = None,
            events: Mapping[str, tuple[str, ...]] | None = None) -> Result:
    """Share of customers who set a limit, paused or self-excluded within ``days`` after the index.

    Parameters
    ----------
    data : Dataset, IbisDataset or path
        The operator's data (table ``rg_events``; the data end comes from ``data_end``).
    sample : MatchedSample or Cohort, optional
        ``cohort.sample()`` (a Cohort is matched with its design's defaults);
        default: the default design's cohort, matched.  Its matched rows carry
        the matching weights, and its one cluster rule (``sample.cluster``)
        clusters the differences' standard errors.  A sample without matching
        (``MatchedSample(cohort, None)``) counts every cohort row once.
    level : float
        Confidence level, strictly between 0 and 1.
    days : int
        Follow-up window: events on days ``0 .. days - 1`` after the index.
    via_call : bool, optional
        Only events taken during a care call (True), only others (False), or
        both (None, the default).
    events : mapping, optional
        Action name -> ``rg_events.event`` values; default :data:`ACTION_EVENTS`
        (a limit counts when set or lowered).

    Returns
    -------
    Result
        For each action and ``any``: metric ``actions.{action}_{days}d`` (e.g.
        ``actions.limit_set_28d`` at the default 28 days, ``actions.limit_set_14d``
        at 14) with ``group`` ``contact``, ``comparison`` (weighted shares,
        Wilson intervals on the effective sample size) and ``difference``
        (contact - comparison risk difference).  A group with no row whose
        window is complete gets missing figures with a ``note``.  Plot data
        ``"shares"`` (intervals within [0, 1], containing the share).

    Notes
    -----
    Rows whose ``days``-day window is not complete by the data end are left
    out (with a :class:`~carecall_eval.errors.FollowupWarning`).  Differences:
    without matching, Newcombe's hybrid score interval for two independent
    proportions; with it, a weighted least-squares regression of the action
    indicator on ``contact`` (its coefficient is the difference of weighted
    shares) with standard errors clustered by the sample's cluster rule
    (matched subclass, or customer when controls are reused).

    Examples
    --------
    >>> ce.actions(ds, cohort.sample(), days=14, level=0.9)   # doctest: +SKIP
    """
    from ..cohorts import as_sample, build_cohort
    from ..contract.base import open_data

    ds = open_data(data, "actions")
    level = check_level(level)
    days = check_horizon("days", days)
    if via_call not in (None, True, False):
        raise ValueError(f"via_call must be None, True or False, got {via_call!r}")
    sample = as_sample(sample if sample is not None else build_cohort(ds), "actions", randomized=False)
    events = dict(ACTION_EVENTS if events is None else events)
    rows_t, weighting = _rows_table(sample)
    rows_t = rows_t.copy()
    rows_t["index_date"] = pd.to_datetime(rows_t["index_date"]).astype("datetime64[ns]")
    rows_t["contact"] = pd.to_numeric(rows_t["contact"]).astype(int)
    if not rows_t["contact"].isin([0, 1]).all():
        raise ValueError("actions: cohort contact must be 1 (contact) or 0 (comparison)")
    data_end = pd.Timestamp(ds.data_end)
    complete = rows_t["index_date"] + pd.Timedelta(days=days - 1) <= data_end
    if not complete.all():
        warnings.warn(f"{int((~complete).sum())} rows have less than {days} days of follow-up before the data end "
                      f"({data_end.date()}) and are left out", FollowupWarning, stacklevel=2)
        rows_t = rows_t[complete]

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
    both = (c == 1).any() and (c == 0).any()
    if weighting != "unweighted":
        clusters = pd.factorize(pd.Series(sample.cluster_ids(rows_t)).astype("string"))[0]
        cluster_label = ("matched subclass" if sample.cluster == "subclass" and rows_t["subclass"].notna().all()
                         else "customer")
    rows, shares = [], []
    import statsmodels.api as sm
    from statsmodels.stats.proportion import confint_proportions_2indep

    suffix = horizon_id(days, DEFAULT_DAYS, f"{DEFAULT_DAYS}d")
    share_method = "share with the action" + (", Wilson interval" if weighting == "unweighted"
                                              else ", weighted, Wilson interval on the effective sample size")
    for name in list(events) + ["any"]:
        y = Y[name].to_numpy(float)
        metric = f"actions.{name}_{suffix}"
        est = {}
        for g, label in ((1, "contact"), (0, "comparison")):
            m = c == g
            p, lo, hi, n_eff = _weighted_share(y[m], w[m], level)
            est[g] = p
            row = {"metric": metric, "group": label, "estimate": p, "ci_low": lo, "ci_high": hi,
                   "n": int(m.sum()), "method": share_method, "n_effective": n_eff}
            if not m.any():
                row = not_available(row, f"no {label} customer has {days} days of follow-up before the data end")
            rows.append(row)
            shares.append({"action": name, "group": label, "share": p, "ci_low": lo, "ci_high": hi})
        diff_row = {"metric": metric, "group": "difference", "n": len(y)}
        if not both:
            rows.append(not_available({**diff_row, "method": "risk difference"}, "needs both groups' shares"))
            continue
        if weighting == "unweighted":
            x1, n1 = int(y[c == 1].sum()), int((c == 1).sum())
            x0, n0 = int(y[c == 0].sum()), int((c == 0).sum())
            lo, hi = confint_proportions_2indep(x1, n1, x0, n0, method="newcomb", compare="diff", alpha=1 - level)
            method = "risk difference, Newcombe hybrid score interval"
            diff, se = est[1] - est[0], np.nan
        else:
            fit = sm.WLS(y, sm.add_constant(c.astype(float)), weights=w).fit(
                cov_type="cluster", cov_kwds={"groups": clusters})
            diff, se = float(fit.params[1]), float(fit.bse[1])
            lo, hi = fit.conf_int(alpha=1 - level)[1]
            method = f"risk difference, weighted least squares, clustered by {cluster_label}"
        rows.append({**diff_row, "estimate": diff, "se": se, "ci_low": float(lo), "ci_high": float(hi),
                     "method": method})

    summary = tidy(rows)
    settings = {"days": days, "via_call": via_call, "level": level, "weighting": weighting,
                "events": {k: list(v) for k, v in events.items()}, "data_end": str(data_end.date()),
                "rows_used": int(len(rows_t)), "n_contact": int((c == 1).sum()), "n_comparison": int((c == 0).sum()),
                "cluster": None if weighting == "unweighted" else sample.cluster}
    return Result(name="actions", summary=summary, text=narrative.actions_text(summary, settings), settings=settings,
                  plot_data={"shares": pd.DataFrame(shares)}, details={"indicators": Y.set_index(rows_t.index)})


def reception(data, sample=None, /, *, level: float = 0.95) -> Result:
    """What answered calls led to (outcome mix) and how customers received them (reception shares).

    Parameters
    ----------
    data : Dataset, IbisDataset or path
        The operator's data (table ``call_attempts``).
    sample : None
        Reception reads the call tables directly and takes no sample.
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
    from ..contract.base import open_data
    from ..contract.spec import OUTCOMES, RECEPTIONS

    ds = open_data(data, "reception")
    if sample is not None:
        raise TypeError(f"reception reads the call tables directly and takes no sample; call reception(data), "
                        f"got a {type(sample).__name__}")
    level = check_level(level)
    att = ds.table("call_attempts")
    ans = att[att["answered"].astype(bool)]
    n = len(ans)
    if n == 0:
        raise ValueError("call_attempts has no answered attempts; nothing to summarise")
    rows = []
    rec = ans["reception"].dropna()
    n_rec = len(rec)
    lo, hi = _bounded(n_rec / n, *wilson_interval(n_rec, n, level))
    rows.append({"metric": "reception.recorded", "group": "answered_calls", "estimate": n_rec / n, "ci_low": lo,
                 "ci_high": hi, "n": n, "method": "share of answered calls with a recorded reception, Wilson"})
    counts = rec.value_counts()
    levels = list(RECEPTIONS) + sorted(set(counts.index) - set(RECEPTIONS))
    rec_tab = []
    for r in levels:
        k = int(counts.get(r, 0))
        est = k / n_rec if n_rec else np.nan
        lo, hi = _bounded(est, *wilson_interval(k, n_rec, level)) if n_rec else (np.nan, np.nan)
        row = {"metric": f"reception.{r}", "group": "answered_calls", "estimate": est, "ci_low": lo,
               "ci_high": hi, "n": n_rec, "method": "share of answered calls with recorded reception, Wilson"}
        rows.append(row if n_rec else not_available(row, "no answered call has a recorded reception"))
        rec_tab.append({"reception": r, "count": k, "share": est, "ci_low": lo, "ci_high": hi})
    oc = ans["outcome"].fillna("(not recorded)").value_counts()
    out_levels = list(OUTCOMES) + sorted(set(oc.index) - set(OUTCOMES))
    out_tab = []
    for o in out_levels:
        k = int(oc.get(o, 0))
        lo, hi = _bounded(k / n, *wilson_interval(k, n, level))
        rows.append({"metric": f"call_outcome.{o}", "group": "answered_calls", "estimate": k / n, "ci_low": lo,
                     "ci_high": hi, "n": n, "method": "share of answered calls, Wilson interval"})
        out_tab.append({"outcome": o, "count": k, "share": k / n, "ci_low": lo, "ci_high": hi})
    summary = tidy(rows)
    settings = {"level": level, "n_answered": n, "n_reception_recorded": n_rec}
    return Result(name="reception", summary=summary, text=narrative.reception_text(summary, settings),
                  settings=settings,
                  plot_data={"reception": pd.DataFrame(rec_tab), "outcomes": pd.DataFrame(out_tab)})
