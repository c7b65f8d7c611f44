"""The headline KPIs of a quarterly report, quarter by quarter.

Quarters themselves (:class:`Quarter`, :func:`parse_quarter`, :func:`quarter_of`)
live in :mod:`carecall_eval.calendar` and are re-exported here;
:func:`quarter_kpis` computes the headline figures of several quarters at once
(vectorised over the small tables) as tidy rows with stable metric ids
``kpi.*``; :func:`kpi_table` lays them out for people, with small cells
suppressed.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..calendar import Quarter, parse_quarter, quarter_of
from ..results import tidy

__all__ = ["Quarter", "parse_quarter", "quarter_of", "quarter_kpis", "kpi_table", "KPI_LABELS"]

#: Row labels of :func:`kpi_table`, in order (metric id -> label, kind).
KPI_LABELS: dict[str, tuple[str, str]] = {
    "kpi.cases_opened": ("Cases opened (all channels)", "count"),
    "kpi.phone_cases": ("Phone cases with at least one attempt", "count"),
    "kpi.attempts": ("Call attempts", "count"),
    "kpi.reach_rate": ("Reach rate (phone cases answered)", "share"),
    "kpi.sms_sent": ("Cases sent a missed-call SMS", "count"),
    "kpi.reach_after_sms": ("Reached within {hours:g} h of the SMS (of those sent one)", "share"),
    "kpi.answered_calls": ("Answered calls", "count"),
    "kpi.call_length_median_s": ("Median call length", "duration"),
    "kpi.call_length_mean_s": ("Mean call length", "duration"),
}


def quarter_kpis(ds, quarters: Sequence[Quarter | str], *, level: float = 0.95) -> pd.DataFrame:
    """Headline figures of each quarter, as tidy rows.

    Parameters
    ----------
    ds : carecall_eval.contract.Dataset
        Loaded data (``call_cases``, ``call_attempts``, ``sms``).
    quarters : sequence of Quarter or str
        Quarters to report (e.g. the report quarter and the four before it).
    level : float
        Confidence level of the Wilson intervals on shares.

    Returns
    -------
    pandas.DataFrame
        Tidy rows (``metric, group, estimate, ci_low, ci_high, n, method``)
        with ``group`` ``"quarter=2025Q3"`` and a ``quarter`` column; metrics
        ``kpi.cases_opened``, ``kpi.phone_cases``, ``kpi.attempts``,
        ``kpi.reach_rate``, ``kpi.sms_sent``, ``kpi.reach_after_sms``,
        ``kpi.answered_calls``, ``kpi.call_length_median_s``,
        ``kpi.call_length_mean_s``, ``kpi.outcome.{outcome}`` (share of
        answered calls) and ``kpi.reception.{reception}`` (share of answered
        calls with a recorded reception).  Every quarter gets every metric;
        an empty quarter has counts 0 and NaN shares.

    Notes
    -----
    Cases, reach and SMS count by the quarter the case was *opened*
    (reach as in :func:`carecall_eval.outcomes.reach.case_reach`: phone cases
    of ordinary and call-arm cases with at least one attempt); attempts, call
    length, outcomes and reception by the quarter of the call itself, as in
    :func:`carecall_eval.outcomes.calls.call_length`.
    """
    from ..contract.spec import OUTCOMES, RECEPTIONS
    from ..outcomes.intervals import wilson_interval
    from ..outcomes.reach import case_reach
    from ..outcomes.reach.cases import sms_rule

    labels = [parse_quarter(q).label for q in quarters]
    idx = pd.Index(labels, name="quarter")
    cases = ds.table("call_cases")
    att = ds.table("call_attempts")
    cr = case_reach(ds)
    ans = att[att["answered"].astype(bool)].copy()
    ans = ans[ans["duration_s"].notna() & (ans["duration_s"] > 0)]
    ans["quarter"] = quarter_of(ans["attempted_at"]).to_numpy()

    def count(s: pd.Series) -> pd.Series:
        return s.value_counts().reindex(idx, fill_value=0).astype(int)

    rows: list[dict] = []

    def add_counts(metric: str, n: pd.Series, method: str) -> None:
        for qt, v in n.items():
            rows.append({"metric": metric, "group": f"quarter={qt}", "quarter": qt, "estimate": float(v),
                         "n": int(v), "method": method})

    def add_shares(metric: str, k: pd.Series, n: pd.Series, method: str) -> None:
        k, n = k.reindex(idx, fill_value=0).astype(int), n.reindex(idx, fill_value=0).astype(int)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(n > 0, k / n.where(n > 0, 1), np.nan)
        lo, hi = wilson_interval(k.to_numpy(float), n.to_numpy(float), level)
        for j, qt in enumerate(idx):
            rows.append({"metric": metric, "group": f"quarter={qt}", "quarter": qt, "estimate": p[j],
                         "ci_low": lo[j], "ci_high": hi[j], "n": int(n.iloc[j]), "count": int(k.iloc[j]),
                         "method": method})

    add_counts("kpi.cases_opened", count(quarter_of(cases["opened_on"])), "care-call cases opened in the quarter")
    add_counts("kpi.phone_cases", count(cr["quarter"]), "phone cases opened in the quarter with at least one attempt")
    add_counts("kpi.attempts", count(quarter_of(att["attempted_at"])), "call attempts made in the quarter")
    add_shares("kpi.reach_rate", cr.groupby("quarter")["reached"].sum(), cr.groupby("quarter").size(),
               "share of phone cases opened in the quarter that were answered, Wilson interval")
    sent = cr[cr["sms_sent"]]
    add_counts("kpi.sms_sent", count(sent["quarter"]), "phone cases opened in the quarter sent a missed-call SMS")
    hours = sms_rule(ds)[1]                 # operator.toml's sms_window_hours, as case_reach counts it
    add_shares("kpi.reach_after_sms", sent.groupby("quarter")["reached_after_sms"].sum(),
               sent.groupby("quarter").size(),
               f"share of cases sent a missed-call SMS answered within {hours:g} hours of it, Wilson interval")
    add_counts("kpi.answered_calls", count(ans["quarter"]), "answered calls in the quarter")
    g = ans.groupby("quarter")["duration_s"]
    n_ans = g.size().reindex(idx, fill_value=0)
    for metric, stat, method in (("kpi.call_length_median_s", g.median(), "median length of answered calls (s)"),
                                 ("kpi.call_length_mean_s", g.mean(), "mean length of answered calls (s)")):
        stat = stat.reindex(idx)
        for qt in idx:
            rows.append({"metric": metric, "group": f"quarter={qt}", "quarter": qt, "estimate": stat[qt],
                         "n": int(n_ans[qt]), "method": method})
    outcome = pd.crosstab(ans["quarter"], ans["outcome"].fillna("(not recorded)"))
    for o in list(OUTCOMES) + sorted(set(outcome.columns) - set(OUTCOMES)):
        k = outcome[o] if o in outcome.columns else pd.Series(0, index=outcome.index)
        add_shares(f"kpi.outcome.{o}", k, n_ans, "share of answered calls with this outcome, Wilson interval")
    rec = ans[ans["reception"].notna()]
    rec_tab = pd.crosstab(rec["quarter"], rec["reception"])
    n_rec = rec.groupby("quarter").size()
    add_shares("kpi.reception.recorded", n_rec, n_ans, "share of answered calls with a recorded reception, Wilson")
    for r in list(RECEPTIONS) + sorted(set(rec_tab.columns) - set(RECEPTIONS)):
        k = rec_tab[r] if r in rec_tab.columns else pd.Series(0, index=rec_tab.index)
        add_shares(f"kpi.reception.{r}", k, n_rec, "share of answered calls with a recorded reception, Wilson")
    out = tidy(rows)
    cols = [c for c in out.columns if c not in ("quarter", "count")] + ["quarter", "count"]
    out["count"] = pd.to_numeric(out["count"], errors="coerce").astype("Int64")
    return out[cols]


def _fmt_duration(s: float) -> str:
    if not np.isfinite(s):
        return "-"
    s = int(round(s))
    return f"{s // 60}:{s % 60:02d}"


def kpi_table(kpis: pd.DataFrame, *, threshold: int = 10, metrics: Iterable[str] | None = None) -> pd.DataFrame:
    """Quarters as columns, KPIs as rows, formatted for people, small cells suppressed.

    Parameters
    ----------
    kpis : pandas.DataFrame
        From :func:`quarter_kpis`, or the same rows already passed through
        :func:`carecall_eval.compare.suppress.suppress_kpis` (a ``suppressed``
        column; :meth:`QuarterlyReport.for_people` does that).  Raw rows are
        suppressed here first: the bundle's rules (one implementation).
    threshold : int
        The operator's ``small_cell_threshold``: counts from 1 to
        ``threshold - 1``, and shares whose numerator, complement or
        denominator is such a count, are shown as ``"<threshold"``; cells
        withheld so that no small count can be recovered by subtraction as
        ``"withheld"``.
    metrics : iterable of str, optional
        Metric ids to show, in order (default: :data:`KPI_LABELS` then the
        outcome and reception shares).

    Returns
    -------
    pandas.DataFrame of str
        Index: readable KPI labels; columns: quarter labels, oldest first.
    """
    from ..compare.suppress import suppress_kpis

    if "suppressed" not in kpis.columns:
        kpis = suppress_kpis(kpis, threshold)
    if metrics is None:
        metrics = list(KPI_LABELS) + [m for m in dict.fromkeys(kpis["metric"])
                                      if m.startswith(("kpi.outcome.", "kpi.reception."))]
    small = f"<{threshold}"

    def withheld(r) -> str:
        why = str(getattr(r, "suppressed", "") or "")
        return small if why.startswith(("n<", "implied count<")) else "withheld"

    table = {}
    for m in metrics:
        d = kpis[kpis["metric"] == m]
        if d.empty:
            continue
        if m in KPI_LABELS:
            label, kind = KPI_LABELS[m]
            if "{hours" in label:           # the SMS window stated in the rows' method (operator.toml)
                found = re.search(r"within ([\d.]+) hours", str(d["method"].iloc[0]))
                label = label.format(hours=float(found.group(1)) if found else 48)
        elif m.startswith("kpi.outcome."):
            label, kind = f"Outcome: {m.split('.', 2)[2].replace('_', ' ')} (share of answered calls)", "share"
        elif m == "kpi.reception.recorded":
            label, kind = "Reception recorded (share of answered calls)", "share"
        else:
            label, kind = f"Reception: {m.split('.', 2)[2]} (share of recorded)", "share"
        cells = {}
        for r in d.itertuples(index=False):
            gone = bool(str(getattr(r, "suppressed", "") or ""))
            if kind == "count":
                cells[r.quarter] = withheld(r) if gone or pd.isna(r.n) else f"{int(r.n):,}"
            elif gone:
                cells[r.quarter] = withheld(r)
            elif pd.isna(r.n) or r.n == 0 or pd.isna(r.estimate):   # n is missing where nobody was counted
                cells[r.quarter] = "-"
            elif kind == "duration":
                cells[r.quarter] = _fmt_duration(r.estimate)
            else:
                cells[r.quarter] = f"{100 * r.estimate:.1f}%"
        table[label] = cells
    out = pd.DataFrame(table).T
    out.columns.name = None
    return out[sorted(out.columns)]
